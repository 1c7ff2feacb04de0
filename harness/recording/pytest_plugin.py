"""pytest plugin (entry point `pytest11`): fake servers as fixtures.

Fixtures `fake_vllm` and `fake_dynamo` yield a running fake server's base URL (".../v1"); the
servers start once per session (in a thread, so sync and async tests both use them) and their
faults are cleared after every test. `fake_vllm_server` / `fake_dynamo_server` yield the
`RunningServer` itself, for tests that set faults (`server.set_faults(["http_503*2"])`).
"""

from __future__ import annotations

import pytest


def _server(request, kind: str):
    from fake_servers.server import FakeConfig, RunningServer

    key = f"_tito_fake_{kind}"
    srv = getattr(request.config, key, None)
    if srv is None:
        srv = RunningServer(FakeConfig(kind=kind)).start()
        setattr(request.config, key, srv)
        request.config.add_cleanup(srv.stop)
    return srv


@pytest.fixture
def fake_vllm_server(request):
    srv = _server(request, "vllm")
    yield srv
    srv.set_faults([])


@pytest.fixture
def fake_dynamo_server(request):
    srv = _server(request, "dynamo")
    yield srv
    srv.set_faults([])


@pytest.fixture
def fake_vllm(fake_vllm_server) -> str:
    """Base URL of a running fake vLLM (model `tiny-qwen`)."""
    return fake_vllm_server.base_url


@pytest.fixture
def fake_dynamo(fake_dynamo_server) -> str:
    """Base URL of a running fake Dynamo frontend with a vLLM-like backend (model `tiny-qwen`)."""
    return fake_dynamo_server.base_url
