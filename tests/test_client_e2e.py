"""The client against the fake servers, end to end over HTTP."""

import httpx
import pytest

from fake_servers.server import FakeConfig, RunningServer
from harness.client import (BadRequestError, ClientConfig, ContextLengthError, LogprobMismatchError, ModelNotFoundError,
                            TitoClient)
from harness.rollout import run_rollout

from .conftest import MODEL, TOOLS, tool_msg


def cfg(url, transport="vllm_generate", **kw):
    return ClientConfig(base_url=url, model=MODEL, renderer_transport=transport, backoff=0.01, **kw)


@pytest.mark.parametrize("kind,transport,route,server_kw,expected_route", [
    ("vllm", "vllm_generate", "auto", {"profile": "prime-rl"}, "/v1/chat/completions/tokens"),
    ("vllm", "vllm_generate", "auto", {}, "/inference/v1/generate"),
    ("vllm", "vllm_generate", "chat_tokens", {"profile": "prime-rl"}, "/v1/chat/completions/tokens"),
    ("vllm", "vllm_generate", "generate", {"profile": "vllm-0.31"}, "/inference/v1/generate"),
    ("dynamo", "dynamo_generate", "auto", {"native_generate": True}, "/inference/v1/generate"),
    ("dynamo", "dynamo_generate", "auto", {}, "/v1/chat/completions+token_data"),
    ("vllm", "vllm_generate", "generate", {}, "/inference/v1/generate"),
    ("vllm", "vllm_generate", "auto", {"chat_tokens_route": False}, "/inference/v1/generate"),
    ("dynamo", "dynamo_chat", "auto", {}, "/v1/chat/completions+token_data"),
])
async def test_four_turn_rollout_is_tito_from_turn_two(kind, transport, route, server_kw, expected_route):
    with RunningServer(FakeConfig(kind=kind, **server_kw)) as srv:
        report = await run_rollout(cfg(srv.base_url, transport, tito_route=route), turns=4, max_tokens=96)
    modes = [t.mode for t in report.turns]
    assert modes == ["mito", "tito", "tito", "tito"], [(t.mode, t.fallback_reason, t.fallback_detail) for t in report.turns]
    assert report.turns[0].fallback_reason == "no_prior_turn"
    for prev, cur in zip(report.turns, report.turns[1:]):
        head = prev.prompt_ids + prev.completion_ids
        assert cur.prompt_ids[: len(head)] == head  # previous tokens byte-exact
        assert cur.route == expected_route
        assert len(cur.completion_logprobs) == len(cur.completion_ids)
    assert report.continuity_ok() and report.summary == {"tito_turns": 3, "mito_turns": 1}
    assert report.turns[0].parity == "ok"


async def test_stitched_prompt_equals_full_rerender_on_plain_chatml(fake_vllm, tokenizer):
    async with TitoClient(cfg(fake_vllm)) as c:
        convo = c.conversation()
        msgs = [{"role": "user", "content": "hello"}]
        r1 = await convo.turn(msgs, TOOLS, max_tokens=64)
        msgs = [*msgs, r1.message, tool_msg("42")]
        r2 = await convo.turn(msgs, TOOLS, max_tokens=64)
    from harness.tokenizer import render_ids
    assert r2.mode == "tito" and r2.prompt_ids == render_ids(tokenizer, msgs, TOOLS, True)


async def test_thinking_history_differs_from_rerender_but_tito_keeps_sampled_tokens():
    from harness.tokenizer import load_tokenizer, render_ids
    tok = load_tokenizer(template="thinking")
    with RunningServer(FakeConfig(kind="dynamo", template="thinking")) as srv:
        async with TitoClient(cfg(srv.base_url, "dynamo_chat", template="thinking")) as c:
            convo = c.conversation()
            msgs = [{"role": "user", "content": "think first"}]
            r1 = await convo.turn(msgs, max_tokens=96)
            assert r1.text.startswith("<think>") and r1.finish_reason == "stop"
            msgs2 = [*msgs, r1.message, {"role": "user", "content": "next"}]
            r2 = await convo.turn(msgs2, max_tokens=32)
    head = r1.prompt_ids + r1.completion_ids
    assert r2.mode == "tito" and r2.prompt_ids[: len(head)] == head  # the sampled think block is kept
    rerender = render_ids(tok, msgs2, None, True)  # the classic failure: history drops <think>
    assert rerender[: len(head)] != head and "<think>" not in tok.decode(rerender)


@pytest.mark.parametrize("fault,reason_or_flag", [
    ("missing_token_ids", "no_engine_tokens"),
    ("logprobs_one_less", "no_engine_tokens"),
    ("logprobs_one_more", "no_engine_tokens"),
])
@pytest.mark.parametrize("kind,transport", [("vllm", "vllm_generate"), ("dynamo", "dynamo_chat")])
async def test_faults_on_turn_one_make_turn_two_mito(request, kind, transport, fault, reason_or_flag):
    srv = request.getfixturevalue(f"fake_{kind}_server")
    async with TitoClient(cfg(srv.base_url, transport)) as c:
        convo = c.conversation()
        msgs = [{"role": "user", "content": "q"}]
        srv.set_faults([f"{fault}*1"])
        r1 = await convo.turn(msgs, max_tokens=48)
        assert r1.tokens_dropped
        assert r1.completion_ids is None
        r2 = await convo.turn([*msgs, r1.message, tool_msg("r")], max_tokens=48)
    assert r2.mode == "mito" and r2.fallback_reason == reason_or_flag


async def test_mismatch_policy_raise(fake_dynamo_server):
    fake_dynamo_server.set_faults(["logprobs_one_less"])
    async with TitoClient(cfg(fake_dynamo_server.base_url, "dynamo_chat", mismatch_policy="raise")) as c:
        with pytest.raises(LogprobMismatchError) as ei:
            await c.chat([{"role": "user", "content": "q"}], max_tokens=32)
    assert ei.value.n_logprobs == ei.value.n_ids - 1


async def test_truncated_turn_falls_back(fake_vllm):
    async with TitoClient(cfg(fake_vllm)) as c:
        convo = c.conversation()
        msgs = [{"role": "user", "content": "q"}]
        r1 = await convo.turn(msgs, max_tokens=2)
        r2 = await convo.turn([*msgs, r1.message, tool_msg("r")], max_tokens=32)
    assert r1.finish_reason == "length" and r2.mode == "mito" and r2.fallback_reason == "truncated"


async def test_tokenize_down_gives_bridge_tokenize_failed(fake_vllm_server):
    async with TitoClient(cfg(fake_vllm_server.base_url, max_retries=1)) as c:
        convo = c.conversation()
        msgs = [{"role": "user", "content": "q"}]
        r1 = await convo.turn(msgs, max_tokens=32)
        await c.max_model_len()  # read before the outage
        fake_vllm_server.set_faults(["http_500*2"])  # both attempts of /tokenize fail, then healthy
        r2 = await convo.turn([*msgs, r1.message, tool_msg("r")], max_tokens=32)
    assert r2.mode == "mito" and r2.fallback_reason == "bridge_tokenize_failed" and "500" in r2.fallback_detail


async def test_engine_data_without_logprobs_keeps_ids(fake_dynamo_server):
    fake_dynamo_server.set_faults(["engine_data_no_logprobs"])
    async with TitoClient(cfg(fake_dynamo_server.base_url, "dynamo_chat")) as c:
        convo = c.conversation()
        msgs = [{"role": "user", "content": "q"}]
        r1 = await convo.turn(msgs, max_tokens=32)
        r2 = await convo.turn([*msgs, r1.message, tool_msg("r")], max_tokens=32)
    assert r1.completion_ids and r1.completion_logprobs is None and r1.logprobs_missing
    assert r2.mode == "tito"


@pytest.mark.parametrize("fault,source", [("logprobs_no_content", "engine_data"), ("missing_engine_data", "nvext"),
                                          ("echo_ids", "engine_data")])
async def test_dynamo_shape_faults(fake_dynamo_server, fault, source):
    fake_dynamo_server.set_faults([fault])
    async with TitoClient(cfg(fake_dynamo_server.base_url, "dynamo_chat")) as c:
        r = await c.chat([{"role": "user", "content": "q"}], max_tokens=32)
    assert r.token_source == source and r.completion_ids
    if fault == "logprobs_no_content":
        assert len(r.completion_logprobs) == len(r.completion_ids)  # synthesized from engine_data
    if fault == "echo_ids":
        assert r.completion_ids[-1] == 151645  # the engine's ids, not the re-tokenized echo
        assert any("echo" in n for n in r.notes)


async def test_dynamo_mocker_mode_is_honest_about_missing_logprobs():
    with RunningServer(FakeConfig(kind="dynamo", dynamo_backend="mocker")) as srv:
        report = await run_rollout(cfg(srv.base_url, "dynamo_chat"), turns=2, max_tokens=16)
    t1, t2 = report.turns
    assert t1.completion_logprobs is None and t1.finish_reason == "length"
    assert t2.mode == "mito" and t2.fallback_reason == "truncated"


async def test_dynamo_request_body_scrubs_vllm_keys_and_merges_nvext(fake_dynamo_server):
    seen = []

    async def hook(request):
        seen.append(request)

    async with httpx.AsyncClient(event_hooks={"request": [hook]}) as http:
        config = cfg(fake_dynamo_server.base_url, "dynamo_chat",
                     extra_body={"return_token_ids": True, "spaces_between_special_tokens": False,
                                 "nvext": {"extra_fields": ["worker_id"], "agent_hints": {"latency_sensitivity": 1}}})
        async with TitoClient(config, http_client=http) as c:
            r = await c.chat([{"role": "user", "content": "q"}], max_tokens=8, priority=5,
                             nvext={"cache_salt": "abc"})
    import json
    body = json.loads(seen[-1].content)
    assert "return_token_ids" not in body and "priority" not in body and "spaces_between_special_tokens" not in body
    nv = body["nvext"]
    assert set(nv["extra_fields"]) == {"engine_data", "completion_token_ids", "worker_id"}
    assert nv["agent_hints"] == {"latency_sensitivity": 1, "priority": 5} and nv["cache_salt"] == "abc"
    assert r.completion_ids


async def test_stitched_prompt_over_context_is_refused_before_sending():
    with RunningServer(FakeConfig(kind="vllm", max_model_len=200)) as srv:
        async with TitoClient(cfg(srv.base_url)) as c:
            convo = c.conversation()
            msgs = [{"role": "user", "content": "q"}]
            r1 = await convo.turn(msgs, TOOLS, max_tokens=32)
            before = srv.state.requests
            with pytest.raises(ContextLengthError) as ei:
                await convo.turn([*msgs, r1.message, tool_msg("x " * 100)], TOOLS, max_tokens=32)
            assert ei.value.max_model_len == 200 and ei.value.prompt_tokens > 200
            assert srv.state.requests == before + 3  # two /tokenize + /v1/models; nothing generated


@pytest.mark.parametrize("kind,transport", [("vllm", "vllm_generate"), ("dynamo", "dynamo_chat")])
async def test_server_side_context_error(kind, transport):
    with RunningServer(FakeConfig(kind=kind, max_model_len=64)) as srv:
        async with TitoClient(cfg(srv.base_url, transport)) as c:
            with pytest.raises(ContextLengthError) as ei:
                await c.chat([{"role": "user", "content": "word " * 200}], max_tokens=8)
    assert ei.value.status == 400 and ei.value.max_model_len == 64


@pytest.mark.parametrize("kind,transport", [("vllm", "vllm_generate"), ("dynamo", "dynamo_chat")])
async def test_unknown_model_and_bad_request(request, kind, transport):
    url = request.getfixturevalue(f"fake_{kind}")
    async with TitoClient(ClientConfig(base_url=url, model="nope", renderer_transport=transport)) as c:
        with pytest.raises(ModelNotFoundError):
            await c.chat([{"role": "user", "content": "q"}])
    async with TitoClient(cfg(url, transport)) as c:
        with pytest.raises(BadRequestError) as ei:
            await c.chat([{"role": "user", "content": "q"}], temperature="hot")
    assert "hot" in ei.value.message or "number" in ei.value.message
