"""Each fault of the catalogue, injected by a fake server, and the client's reaction."""

import time

import httpx
import numpy as np
import pytest

from harness.wire.faults import CATALOGUE, FaultPlan, FaultRule, FaultSpecError
from fake_servers.server import FakeConfig, RunningServer
from harness.client import (ClientConfig, IncompleteStreamError, MalformedResponseError, ServerError, TitoClient,
                            TransportError)

from .conftest import MODEL, tool_msg

Q = [{"role": "user", "content": "q"}]


def cfg(url, transport="vllm_generate", **kw):
    kw.setdefault("backoff", 0.01)
    return ClientConfig(base_url=url, model=MODEL, renderer_transport=transport, **kw)


KINDS = [("vllm", "vllm_generate"), ("dynamo", "dynamo_chat")]


@pytest.fixture(params=KINDS, ids=["vllm", "dynamo"])
def server(request):
    kind, transport = request.param
    srv = request.getfixturevalue(f"fake_{kind}_server")
    return srv, transport


@pytest.mark.parametrize("fault", ["http_429", "http_500", "http_503"])
async def test_retryable_statuses_are_retried_then_succeed(server, fault):
    srv, transport = server
    srv.set_faults([f"{fault}*2"])  # first two attempts fail
    async with TitoClient(cfg(srv.base_url, transport, max_retries=3, parity_policy="off")) as c:
        r = await c.chat(Q, max_tokens=16)
        assert r.completion_ids and c.http.requests == 3


@pytest.mark.parametrize("fault,status", [("http_503", 503), ("http_500", 500), ("http_429", 429)])
async def test_retries_are_bounded(server, fault, status):
    srv, transport = server
    srv.set_faults([fault])
    async with TitoClient(cfg(srv.base_url, transport, max_retries=2)) as c:
        with pytest.raises(ServerError) as ei:
            await c.chat(Q)
    assert ei.value.status == status and ei.value.attempts == 3


async def test_retry_after_is_honoured(fake_vllm_server):
    fake_vllm_server.set_faults(["http_503=1*1"])  # Retry-After: 1
    async with TitoClient(cfg(fake_vllm_server.base_url, backoff=0.0)) as c:
        t0 = time.perf_counter()
        await c.chat(Q, max_tokens=8)
        assert time.perf_counter() - t0 >= 0.9


async def test_connection_reset_is_retried_then_typed(server):
    srv, transport = server
    srv.set_faults(["reset*1"])
    async with TitoClient(cfg(srv.base_url, transport)) as c:
        assert (await c.chat(Q, max_tokens=8)).completion_ids
    srv.set_faults(["reset"])
    async with TitoClient(cfg(srv.base_url, transport, max_retries=1)) as c:
        with pytest.raises(TransportError) as ei:
            await c.chat(Q, max_tokens=8)
    assert ei.value.attempts == 2


@pytest.mark.parametrize("fault,match", [("invalid_json", "not valid JSON"), ("empty_choices", "empty 'choices'")])
async def test_malformed_answers(server, fault, match):
    srv, transport = server
    srv.set_faults([fault])
    async with TitoClient(cfg(srv.base_url, transport)) as c:
        with pytest.raises(MalformedResponseError, match=match):
            await c.chat(Q, max_tokens=8)


async def test_truncated_stream(server):
    srv, transport = server
    srv.set_faults(["truncated_stream*1"])
    async with TitoClient(cfg(srv.base_url, transport, stream=True)) as c:
        r = await c.chat(Q, max_tokens=16)  # retried once, then whole
        assert r.completion_ids and len(r.completion_logprobs) == len(r.completion_ids)
    srv.set_faults(["truncated_stream"])
    async with TitoClient(cfg(srv.base_url, transport, stream=True, max_retries=1)) as c:
        with pytest.raises(IncompleteStreamError):
            await c.chat(Q, max_tokens=16)


async def test_streamed_rollout_stitches(server):
    srv, transport = server
    from harness.rollout import run_rollout
    report = await run_rollout(cfg(srv.base_url, transport, stream=True), turns=3, max_tokens=64)
    assert [t.mode for t in report.turns] == ["mito", "tito", "tito"] and report.continuity_ok()


async def test_slow_fault_meets_client_timeout(fake_vllm_server):
    fake_vllm_server.set_faults(["slow=2"])
    async with TitoClient(cfg(fake_vllm_server.base_url, timeout=0.3, max_retries=0)) as c:
        with pytest.raises(TransportError):
            await c.chat(Q, max_tokens=8)


async def test_per_request_header_selects_faults(fake_dynamo):
    async with httpx.AsyncClient() as http:
        body = {"model": MODEL, "messages": Q, "max_tokens": 4}
        r = await http.post(f"{fake_dynamo}/chat/completions", json=body, headers={"x-fake-fault": "http_503"})
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and r.json()["type"] == "Service Unavailable"
        r = await http.post(f"{fake_dynamo}/chat/completions", json=body)
        assert r.status_code == 200
        r = await http.post(f"{fake_dynamo}/chat/completions", json=body, headers={"x-fake-fault": "nonsense"})
        assert r.status_code == 400 and "unknown fault" in r.json()["message"]


async def test_admin_route_sets_and_clears_faults(fake_vllm):
    root = fake_vllm[:-3]
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{root}/_fake/faults", json={"faults": ["empty_choices@0.5"], "seed": 3})
        assert r.status_code == 200 and r.json()["faults"][0]["probability"] == 0.5
        codes = [len((await http.post(f"{fake_vllm}/chat/completions", json={"messages": Q, "max_tokens": 2})).json()["choices"])
                 for _ in range(40)]
        assert 5 < codes.count(0) < 35  # about half answer an empty choices list
        assert (await http.post(f"{root}/_fake/faults", json={"faults": ["bogus"]})).status_code == 400
        assert (await http.delete(f"{root}/_fake/faults")).json()["faults"] == []


def test_fault_plan_probability_is_seeded_and_times_bounded():
    a = FaultPlan(["http_500@0.3"], seed=7)
    b = FaultPlan(["http_500@0.3"], seed=7)
    seq_a = ["http_500" in a.draw(None) for _ in range(200)]
    seq_b = ["http_500" in b.draw(None) for _ in range(200)]
    assert seq_a == seq_b and 30 < sum(seq_a) < 90
    seq_c = ["http_500" in FaultPlan(["http_500@0.3"], seed=8).draw(None) for _ in range(200)]
    assert seq_c != seq_a  # another seed, another sequence
    p = FaultPlan(["reset*2"])
    assert ["reset" in p.draw(None) for _ in range(4)] == [True, True, False, False]
    assert FaultRule.parse("slow=0.5@0.25*3").__dict__ | {} == {"name": "slow", "value": 0.5, "probability": 0.25,
                                                              "times": 3, "fired": 0}
    for bad in ["nope", "slow=x", "http_500@2", "reset*x"]:
        with pytest.raises(FaultSpecError):
            FaultRule.parse(bad)


MOE = "4,2,16"
# (fake config, transport, client extras, stitched turn needed): one per routed-experts wire format
FORMATS = {
    "npy": (dict(kind="vllm"), "vllm_generate", {}, False),
    "object": (dict(kind="vllm", profile="prime-rl"), "vllm_generate", {}, True),
    "nvext_object": (dict(kind="dynamo"), "dynamo_chat", {"nvext": {"extra_fields": ["routed_experts"]}}, False),
    "b64_string": (dict(kind="dynamo", dynamo_backend="sglang"), "dynamo_chat",
                   {"nvext": {"extra_fields": ["routed_experts"]}}, False),
}


@pytest.fixture(scope="module")
def moe_servers():
    servers = {fmt: RunningServer(FakeConfig(moe=MOE, **kw)).start() for fmt, (kw, *_) in FORMATS.items()}
    yield servers
    for s in servers.values():
        s.stop()


async def _experts_turn(srv, fmt):
    _, transport, extra, stitched = FORMATS[fmt]
    async with TitoClient(cfg(srv.base_url, transport, extra_body=extra)) as c:
        convo = c.conversation()
        r = await convo.turn(Q, max_tokens=16)
        if stitched:  # prime-rl strips routed experts from plain chat: they ride the tokens route
            r = await convo.turn([*Q, r.message, tool_msg("42")], max_tokens=16)
            assert r.mode == "tito" and r.route == "/v1/chat/completions/tokens"
    return r


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("fault", [None, "experts_key_order", "experts_sibling_data", "experts_string_mention",
                                   "experts_missing_dtype"])
async def test_routed_experts_decoded_in_every_format_through_every_layout(moe_servers, fmt, fault):
    srv = moe_servers[fmt]
    srv.set_faults([fault] if fault else [])
    try:
        r = await _experts_turn(srv, fmt)
    finally:
        srv.set_faults([])
    assert r.routed_experts_error is None, r.routed_experts_error
    re = r.routed_experts
    rows = len(r.prompt_ids) + len(r.completion_ids) - 1  # the last sampled token was never forwarded
    if fmt == "b64_string":  # SGLang's raw int32 bytes carry no shape
        assert re.array.dtype == np.int32 and re.shape == (rows * 4 * 2,)
    else:
        assert re.array.dtype == np.uint8 and re.shape == (rows, 4, 2)
    assert 0 <= int(re.array.min()) and int(re.array.max()) < 16


@pytest.mark.parametrize("fmt", list(FORMATS))
async def test_routed_experts_wrong_dtype_is_reported_in_every_format(moe_servers, fmt):
    srv = moe_servers[fmt]
    srv.set_faults(["experts_wrong_dtype"])
    try:
        r = await _experts_turn(srv, fmt)
    finally:
        srv.set_faults([])
    assert r.routed_experts is None and r.completion_ids
    assert "needs" in r.routed_experts_error or "whole number of int32" in r.routed_experts_error


def test_the_docs_carry_the_catalogue_table():
    from harness.wire.faults import catalogue_markdown
    from scripts.docs_reference import faults_page  # the reference page, generated when the site is built

    page = faults_page()
    assert catalogue_markdown() in page
    assert all(f"| `{name}` |" in page for name in CATALOGUE)  # every fault, however many the catalogue grows to
