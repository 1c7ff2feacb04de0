"""With temperature > 0 a real engine often samples a token that is not the likeliest: its rank is above 1
and `top_logprobs` lists the likelier tokens beside it (as real vLLM 0.32 was recorded doing). The fake
engine samples so, deterministically per seed; greedy decoding stays rank 1. The client keeps the sampled
token's own logprob, never the likeliest alternative's."""

import httpx
import pytest

from fake_servers.server import FakeConfig, RunningServer
from harness.client import ClientConfig, TitoClient

from .conftest import MODEL

PROMPT = [151644, 872, 198, 9707, 151645, 198, 151644, 77091, 198]


def _generate(srv, temperature, seed=3, k=2):
    return httpx.post(srv.root_url + "/inference/v1/generate", json={
        "model": MODEL, "token_ids": PROMPT,
        "sampling_params": {"max_tokens": 48, "logprobs": k, "temperature": temperature, "seed": seed}}).json()


def test_sampled_tokens_below_the_top_come_with_their_rank_and_the_likelier_ones():
    with RunningServer(FakeConfig(kind="vllm")) as srv:
        content = [e for seed in range(4) for e in _generate(srv, 1.0, seed)["choices"][0]["logprobs"]["content"]]
        again = _generate(srv, 1.0, 0)["choices"][0]["logprobs"]["content"]
        greedy = _generate(srv, 0.0)["choices"][0]["logprobs"]["content"]
    ranked = [e for e in content if e["rank"] > 1]
    assert 0.05 < len(ranked) / len(content) < 0.5  # often, not always
    for e in ranked:
        top = e["top_logprobs"]
        assert top[0] == {"token_id": e["token_id"], "logprob": e["logprob"], "rank": e["rank"]}  # the sampled first
        assert top[1]["rank"] == 1 and top[1]["logprob"] > e["logprob"] and top[1]["token_id"] != e["token_id"]
    assert all(e["rank"] == 1 for e in greedy)
    assert again == content[:len(again)]  # deterministic per seed


@pytest.mark.parametrize("kind, transport", [("vllm", "vllm_generate"), ("dynamo", "dynamo_chat")])
async def test_the_client_keeps_the_sampled_tokens_logprob(kind, transport):
    with RunningServer(FakeConfig(kind=kind)) as srv:
        cfg = ClientConfig(base_url=srv.base_url, model=MODEL, renderer_transport=transport, tito_route="generate")
        async with TitoClient(cfg) as client:
            convo = client.conversation()
            msgs = [{"role": "user", "content": "Tell me about the sea."}]
            r1 = await convo.turn(msgs, max_tokens=48, seed=11, temperature=1.0)
            msgs += [r1.message, {"role": "user", "content": "And the mountains?"}]
            r2 = await convo.turn(msgs, max_tokens=48, seed=12, temperature=1.0)
        gen = srv.state.engine
    assert r2.mode == "tito"
    # the engine's own answer for turn 1: its sampled logprobs, some below rank 1, are what the client holds
    from fake_servers.engine import SamplingParams

    answer = gen.generate(r1.prompt_ids, SamplingParams(max_tokens=48, seed=11, temperature=1.0, logprobs=True,
                                                        top_logprobs=1))
    assert answer.token_ids == r1.completion_ids
    assert r1.completion_logprobs == pytest.approx(answer.logprobs, abs=1e-4)
    assert any(r > 1 for r in answer.ranks)
