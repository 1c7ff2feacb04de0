"""Real models often answer with just the stop token. The fake engine does so at a configurable
rate, deterministically per seed; the client survives such a turn and stitches the next one."""

import pytest

from fake_servers.server import FakeConfig, RunningServer
from harness.client import ClientConfig, TitoClient

from .conftest import MODEL

IM_END = 151645


@pytest.mark.parametrize("kind, transport", [("vllm", "vllm_generate"), ("dynamo", "dynamo_chat")])
async def test_an_empty_completion_is_survived_and_the_next_turn_stitched(kind, transport):
    with RunningServer(FakeConfig(kind=kind, empty_rate=1.0)) as srv:
        cfg = ClientConfig(base_url=srv.base_url, model=MODEL, renderer_transport=transport, tito_route="generate")
        async with TitoClient(cfg) as client:
            convo = client.conversation()
            msgs = [{"role": "user", "content": "hi"}]
            r1 = await convo.turn(msgs, max_tokens=16)
            assert r1.completion_ids == [IM_END] and r1.finish_reason == "stop"
            assert not (r1.message.get("content") or "")  # nothing said: "" on vLLM, null on Dynamo
            msgs += [r1.message, {"role": "user", "content": "say something"}]
            r2 = await convo.turn(msgs, max_tokens=16)
            assert r2.mode == "tito" and r2.prompt_ids[:len(r1.prompt_ids) + 1] == r1.prompt_ids + [IM_END]


def test_the_rate_is_a_share_of_answers_and_leaves_the_others_as_they_were():
    from fake_servers.engine import EngineConfig, FakeEngine, SamplingParams
    from harness.tokenizer import load_tokenizer

    tok = load_tokenizer()
    plain, some = FakeEngine(tok, EngineConfig(empty_rate=0.0)), FakeEngine(tok, EngineConfig(empty_rate=0.3))
    empty = 0
    for seed in range(200):
        a, b = (e.generate([9707, 1879], SamplingParams(seed=seed, max_tokens=64)) for e in (plain, some))
        if b.token_ids == [some.eos_id]:
            empty += 1
        else:
            assert b.token_ids == a.token_ids  # the answers that are not empty are unchanged
    assert 40 <= empty <= 80  # about 30% of 200


@pytest.mark.parametrize("kind, transport, extra", [("vllm", "vllm_generate", {}), ("dynamo", "dynamo_chat", {}),
                                                    ("dynamo", "dynamo_generate", {"native_generate": True})])
async def test_the_empty_completion_fault_once_then_a_stitched_turn(kind, transport, extra):
    """The catalogue fault `empty_completion*1`: the first answer is only the stop token, on every route."""
    with RunningServer(FakeConfig(kind=kind, empty_rate=0.0, **extra)) as srv:  # (only the fault empties)
        srv.set_faults(["empty_completion*1"])
        cfg = ClientConfig(base_url=srv.base_url, model=MODEL, renderer_transport=transport, tito_route="generate")
        async with TitoClient(cfg) as client:
            convo = client.conversation()
            msgs = [{"role": "user", "content": "hi"}]
            r1 = await convo.turn(msgs, max_tokens=16)
            msgs += [r1.message, {"role": "user", "content": "say something"}]
            r2 = await convo.turn(msgs, max_tokens=16)
    assert r1.completion_ids == [IM_END] and r1.finish_reason == "stop"
    assert r2.mode == "tito" and len(r2.completion_ids) > 1  # only once
    assert [r.faults for r in srv.received if r.faults] == [["empty_completion"]]


def test_the_fault_is_in_the_catalogue():
    out = __import__("subprocess").run([__import__("sys").executable, "-m", "harness.cli", "faults"],
                                       capture_output=True, text=True)
    assert "empty_completion" in out.stdout
