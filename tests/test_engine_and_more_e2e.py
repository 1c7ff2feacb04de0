"""The fake engine's contract, and the fallback reasons and faults not covered elsewhere, end to end."""

import json
import time

import httpx
import pytest

from fake_servers.engine import EngineConfig, FakeEngine, MoEShape, SamplingParams
from fake_servers.server import FakeConfig, RunningServer
from harness.client import ClientConfig, TitoClient
from harness.recording.proxy import Recorder, create_proxy_app
from harness.serve import AppThread

from .conftest import MODEL, tool_msg

PROMPT = [151644, 872, 198, 9707, 151645, 198, 151644, 77091, 198]


@pytest.fixture(scope="module")
def engine(tokenizer):
    return FakeEngine(tokenizer, EngineConfig(max_model_len=256, moe=MoEShape(3, 2, 300)))


def test_engine_is_deterministic_per_request_and_seed(engine):
    a = engine.generate(PROMPT, SamplingParams(seed=1, top_logprobs=3))
    b = FakeEngine(engine.tokenizer, engine.config).generate(PROMPT, SamplingParams(seed=1, top_logprobs=3))
    c = engine.generate(PROMPT, SamplingParams(seed=2, top_logprobs=3))
    assert a.token_ids == b.token_ids and a.logprobs == b.logprobs and a.token_ids != c.token_ids
    assert a.token_ids[-1] == engine.eos_id and a.finish_reason == "stop"
    assert engine.tokenizer.decode(a.token_ids[:-1]) == a.text and " " in a.text  # natural-looking prose
    assert all(lp < 0 for lp in a.logprobs)
    assert all(len(alts) == 3 and alts[0] == (t, lp) and all(v < lp for _, v in alts[1:])
               for t, lp, alts in zip(a.token_ids, a.logprobs, a.top_logprobs))


def test_engine_max_tokens_stop_strings_and_context(engine):
    cut = engine.generate(PROMPT, SamplingParams(seed=1, max_tokens=3))
    assert len(cut.token_ids) == 3 and cut.finish_reason == "length" and engine.eos_id not in cut.token_ids
    full = engine.generate(PROMPT, SamplingParams(seed=1))
    word = full.text.split()[2]
    stopped = engine.generate(PROMPT, SamplingParams(seed=1, stop=[word]))
    assert stopped.finish_reason == "stop" and stopped.stop_reason == word and word not in stopped.text
    long = engine.generate(PROMPT, SamplingParams(seed=1, ignore_eos=True))
    assert len(PROMPT) + len(long.token_ids) == 256 and long.finish_reason == "length"
    from fake_servers.engine import ContextLengthExceeded
    with pytest.raises(ContextLengthExceeded):
        engine.generate([9707] * 256, SamplingParams())


def test_engine_moe_dtype_follows_expert_count(engine):
    g = engine.generate(PROMPT, SamplingParams(seed=3))
    re = g.routed_experts
    assert re.dtype.name == "uint16" and re.shape == (len(PROMPT) + len(g.token_ids), 3, 2)
    assert MoEShape(2, 2, 128).dtype == "uint8" and MoEShape(2, 2, 70000).dtype == "int32"
    with pytest.raises(ValueError):
        MoEShape.parse("4,9,8")


async def test_latency_model(tokenizer):
    with RunningServer(FakeConfig(kind="vllm", ttft=0.2, per_token=0.01)) as srv:
        async with httpx.AsyncClient() as c:
            t0 = time.perf_counter()
            r = await c.post(f"{srv.base_url}/chat/completions", json={"messages": [{"role": "user", "content": "q"}],
                                                                      "max_tokens": 10, "return_token_ids": True})
            took = time.perf_counter() - t0
    n = len(r.json()["choices"][0]["token_ids"])
    assert took >= 0.2 + 0.01 * n - 0.02


def cfg(url, transport="vllm_generate", **kw):
    return ClientConfig(base_url=url, model=MODEL, renderer_transport=transport, **kw)


Q = [{"role": "user", "content": "q"}]


@pytest.mark.parametrize("kind,transport", [("vllm", "vllm_generate"), ("dynamo", "dynamo_chat")])
@pytest.mark.parametrize("case,reason", [("edited", "no_prefix_match"), ("assistant_tail", "invalid_env_tail"),
                                         ("image", "multimodal"), ("stop_string", "no_stop_token")])
async def test_more_fallback_reasons_end_to_end(request, kind, transport, case, reason):
    url = request.getfixturevalue(f"fake_{kind}")
    async with TitoClient(cfg(url, transport)) as c:
        convo = c.conversation()
        r1 = await convo.turn(Q, max_tokens=64, **({"stop": ["e"]} if case == "stop_string" else {}))
        nxt = {"edited": [{"role": "user", "content": "q (edited)"}, r1.message, tool_msg("r")],
               "assistant_tail": [*Q, r1.message, {"role": "assistant", "content": "injected"}],
               "image": [*Q, r1.message, {"role": "user", "content": [
                   {"type": "text", "text": "see"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]}],
               "stop_string": [*Q, r1.message, tool_msg("r")]}[case]
        r2 = await convo.turn(nxt, max_tokens=16)
    assert r2.mode == "mito" and r2.fallback_reason == reason and r2.fallback_detail


async def test_missing_prompt_token_ids(fake_vllm_server, fake_dynamo_server):
    # vLLM, messages-in turn: no prompt ids, nothing to stitch on
    fake_vllm_server.set_faults(["missing_prompt_token_ids*1"])
    async with TitoClient(cfg(fake_vllm_server.base_url, parity_policy="off")) as c:
        convo = c.conversation()
        r1 = await convo.turn(Q, max_tokens=32)
        r2 = await convo.turn([*Q, r1.message, tool_msg("r")], max_tokens=32)
        # a stitched turn without prompt ids keeps the ids it sent
        fake_vllm_server.set_faults(["missing_prompt_token_ids*1"])
        r3 = await convo.turn([*Q, r1.message, tool_msg("r"), r2.message, tool_msg("s", 1)], max_tokens=32)
    assert r1.tokens_dropped == "the answer carried no prompt ids" and r2.fallback_reason == "no_engine_tokens"
    assert r3.mode == "tito" and r3.prompt_ids[: len(r2.prompt_ids)] == r2.prompt_ids
    # Dynamo, messages-in turn: the local rendering stands in (and says so)
    fake_dynamo_server.set_faults(["missing_prompt_token_ids*1"])
    async with TitoClient(cfg(fake_dynamo_server.base_url, "dynamo_chat")) as c:
        convo = c.conversation()
        d1 = await convo.turn(Q, max_tokens=32)
        d2 = await convo.turn([*Q, d1.message, tool_msg("r")], max_tokens=32)
    assert any("local rendering" in n for n in d1.notes) and d2.mode == "tito"


async def test_proxy_streams_sse_live(tmp_path):
    """The first chunk reaches the client long before the last token is generated."""
    with RunningServer(FakeConfig(kind="vllm", per_token=0.1)) as srv:
        rec = Recorder(tmp_path / "live.yaml", "all")
        with AppThread(create_proxy_app(srv.root_url, rec)) as p:
            async with httpx.AsyncClient(timeout=30) as c:
                t0 = time.perf_counter()
                async with c.stream("POST", f"http://127.0.0.1:{p.port}/v1/chat/completions",
                                    json={"messages": Q, "max_tokens": 12, "stream": True, "ignore_eos": True}) as r:
                    stamps = []
                    async for line in r.aiter_lines():
                        if line.startswith("data:"):
                            stamps.append(time.perf_counter() - t0)
    # ~1.2 s of tokens: the first event arrives while most are still to come (a machine that is slow only
    # stretches the gap; a proxy that buffered the answer would send every event at once)
    assert stamps[-1] - stamps[0] > 0.8


def test_streamed_completions_carry_the_same_choices_as_the_whole_answer():
    """vLLM streams /v1/completions a chunk per token of each choice, the choices interleaved step by step, the
    last chunk of a choice with its finish_reason, then the usage chunk (recorded from vLLM 0.30 and 0.32); no
    model, or "", is the served one. Folded back, the stream is the answer the same request gets whole."""
    import httpx

    from fake_servers.server import FakeConfig, RunningServer

    body = {"model": "", "prompt": "Hi", "max_tokens": 5, "n": 3, "seed": 11, "logprobs": 1, "return_token_ids": True}
    with RunningServer(FakeConfig(kind="vllm")) as srv:
        whole = httpx.post(srv.root_url + "/v1/completions", json=body).json()
        r = httpx.post(srv.root_url + "/v1/completions",
                       json={**body, "stream": True, "stream_options": {"include_usage": True}})
    assert r.headers["content-type"].startswith("text/event-stream")
    frames = [line[6:] for line in r.text.split("\n\n") if line.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    chunks = [json.loads(f) for f in frames[:-1]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == {
        k: whole["usage"][k] for k in ("prompt_tokens", "total_tokens", "completion_tokens")}
    folded: dict[int, dict] = {}
    for chunk in chunks[:-1]:
        (c,) = chunk["choices"]
        f = folded.setdefault(c["index"], {"text": "", "token_ids": [], "finish_reason": None, "logprobs": []})
        f["text"] += c["text"]
        f["token_ids"] += c["token_ids"]
        f["logprobs"] += c["logprobs"]["token_logprobs"]
        f["finish_reason"] = c["finish_reason"] or f["finish_reason"]
    assert [chunks[i]["choices"][0]["index"] for i in range(3)] == [0, 1, 2]  # interleaved, step by step
    assert sorted(folded) == [0, 1, 2]
    for c in whole["choices"]:
        f = folded[c["index"]]
        assert (f["text"], f["token_ids"], f["finish_reason"]) == (c["text"], c["token_ids"], c["finish_reason"])
        assert f["logprobs"] == c["logprobs"]["token_logprobs"]


def _fold_chat_stream(text: str) -> tuple[dict[int, str], dict]:
    frames = [line[6:] for line in text.split("\n\n") if line.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    folded: dict[int, str] = {}
    usage = {}
    for chunk in (json.loads(f) for f in frames[:-1]):
        usage = chunk.get("usage") or usage
        for c in chunk["choices"]:
            folded[c["index"]] = folded.get(c["index"], "") + (c["delta"].get("content") or "")
    return folded, usage


@pytest.mark.parametrize("label, choices", [("vllm-0.32", 3), ("dynamo-1.6.1+vllm", 3), ("dynamo-1.6.1+mocker", 1)])
def test_chat_answers_n_choices_whole_and_streamed_where_the_real_server_does(label, choices):
    """vLLM and Dynamo with a vLLM worker answer `n` chat choices, streamed interleaved step by step (recorded);
    Dynamo's mocker answers one whatever n is (recorded): a Backend row, `n_choices`."""
    from harness.wire.profiles import parse_label

    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "n": 3,
            "temperature": 0.7, "seed": 2}
    with RunningServer(FakeConfig.for_profile(parse_label(label))) as srv:
        whole = httpx.post(srv.root_url + "/v1/chat/completions", json=body).json()
        r = httpx.post(srv.root_url + "/v1/chat/completions",
                       json={**body, "stream": True, "stream_options": {"include_usage": True}})
    assert [c["index"] for c in whole["choices"]] == list(range(choices))
    folded, usage = _fold_chat_stream(r.text)
    assert folded == {c["index"]: c["message"]["content"] or "" for c in whole["choices"]}
    assert usage["completion_tokens"] == whole["usage"]["completion_tokens"]
