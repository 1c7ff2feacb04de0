"""The fakes check a body they have seen before once: a group of rollouts sends one prompt's body many times, and
every copy gets the answer the first got (counted: the request models run once per distinct body)."""

from __future__ import annotations

import httpx
import orjson
import pytest

from fake_servers.server import FakeConfig, RunningServer
from harness.wire import dynamo_requests, vllm_requests

BODY = {"model": "tiny-qwen", "messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 8,
        "logprobs": True, "seed": 5}


@pytest.fixture(scope="module", params=["vllm", "dynamo"])
def server(request):
    with RunningServer(FakeConfig(kind=request.param)) as srv:
        yield srv


def stable(answer: dict) -> dict:
    return {k: v for k, v in answer.items() if k not in ("id", "created")}


def test_an_identical_body_is_checked_once_and_answered_alike(server, monkeypatch):
    module, name = (vllm_requests, "validate") if server.state.kind == "vllm" else (dynamo_requests, "validate_chat")
    real, calls = getattr(module, name), []

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    raw = orjson.dumps(BODY)
    url = server.base_url + "/chat/completions"
    with httpx.Client(timeout=30) as c:
        answers = [c.post(url, content=raw, headers={"content-type": "application/json"}) for _ in range(5)]
        other = c.post(url, json={**BODY, "seed": 6})
        bad = [c.post(url, json={**BODY, "max_tokens": "x"}) for _ in range(2)]
    assert [a.status_code for a in answers] == [200] * 5 and other.status_code == 200
    assert all(stable(a.json()) == stable(answers[0].json()) for a in answers)
    assert stable(other.json()) != stable(answers[0].json())
    assert [b.status_code for b in bad] == [400, 400] and bad[0].content == bad[1].content
    assert len(calls) == 1 + 1 + (2 if server.state.kind == "vllm" else 0)  # (Dynamo's serde refuses "x" first)
