"""The engine's natural outcomes at temperature > 0, deterministic per seed: a sampled token that is not among the
k likeliest is listed beside all k of them where the real server lists the engine's logprobs dict whole (Dynamo with
a vLLM worker, vLLM's /v1/completions: `top_logprobs: 1` gives two entries), and cut at k where vLLM cuts it (its
chat and generate routes)."""

import httpx
import pytest

from fake_servers.server import FakeConfig, RunningServer

from .conftest import MODEL

HELLO = [{"role": "user", "content": "Hello"}]


@pytest.fixture(scope="module")
def fakes():
    with RunningServer(FakeConfig(kind="vllm")) as vllm, RunningServer(FakeConfig(kind="dynamo")) as dyn, \
            RunningServer(FakeConfig(kind="dynamo", native_generate=True)) as native:
        yield {"vllm": vllm, "dynamo": dyn, "native": native}


def _chat(srv, seed, k=1):
    return httpx.post(srv.root_url + "/v1/chat/completions", json={
        "model": MODEL, "messages": HELLO, "max_tokens": 8, "temperature": 1.0, "seed": seed, "logprobs": True,
        "top_logprobs": k}).json()


def _widths(answer) -> list[int]:
    return [len(e["top_logprobs"]) for e in answer["choices"][0]["logprobs"]["content"]]


def test_dynamo_lists_the_sampled_token_beside_the_likeliest_one(fakes):
    answers = [_chat(fakes["dynamo"], seed) for seed in range(80)]
    two = [a for a in answers if 2 in _widths(a)]
    assert len(two) >= 10  # as real Dynamo + vLLM: 10 or more of 80 answers of 8 tokens
    for a in two:
        for e in a["choices"][0]["logprobs"]["content"]:
            if len(e["top_logprobs"]) == 2:
                sampled, top = e["top_logprobs"]
                assert sampled["token"] == e["token"] and sampled["logprob"] == e["logprob"]  # the sampled first
                assert top["logprob"] > e["logprob"]  # ... then the likeliest, likelier than it
    assert set(w for a in answers for w in _widths(a)) == {1, 2}
    assert [_chat(fakes["dynamo"], 3)["choices"][0]["logprobs"]] == [answers[3]["choices"][0]["logprobs"]]


def test_vllm_chat_cuts_the_list_at_top_logprobs(fakes):
    assert {w for seed in range(40) for w in _widths(_chat(fakes["vllm"], seed))} == {1}
    assert {w for seed in range(10) for w in _widths(_chat(fakes["vllm"], seed, k=3))} == {3}


def test_vllm_completions_lists_the_dict_whole(fakes):
    widths = set()
    for seed in range(40):
        a = httpx.post(fakes["vllm"].root_url + "/v1/completions", json={
            "model": MODEL, "prompt": "Hello", "max_tokens": 8, "temperature": 1.0, "seed": seed,
            "logprobs": 1}).json()
        widths |= {len(t) for t in a["choices"][0]["logprobs"]["top_logprobs"]}
    assert widths == {1, 2}


@pytest.mark.parametrize("server, most", [("vllm", 1), ("native", 2)])
def test_generate_cuts_on_vllm_and_passes_the_dict_whole_on_dynamo(fakes, server, most):
    widths = set()
    for seed in range(40):
        a = httpx.post(fakes[server].root_url + "/inference/v1/generate", json={
            "model": MODEL, "token_ids": [9707, 11], "sampling_params": {
                "max_tokens": 8, "temperature": 1.0, "seed": seed, "logprobs": 1}}).json()
        widths |= {len(e["top_logprobs"]) for e in a["choices"][0]["logprobs"]["content"]}
    assert max(widths) == most


def test_greedy_decoding_never_lists_more_than_asked(fakes):
    a = httpx.post(fakes["dynamo"].root_url + "/v1/chat/completions", json={
        "model": MODEL, "messages": HELLO, "max_tokens": 8, "temperature": 0, "logprobs": True,
        "top_logprobs": 1}).json()
    assert set(_widths(a)) == {1}


def _only_stop(answer) -> bool:
    return answer["usage"]["completion_tokens"] == 1 and not (answer["choices"][0]["message"]["content"] or "")


@pytest.mark.parametrize("server", ["vllm", "dynamo"])
def test_a_seeded_sample_is_only_the_stop_token_at_the_real_rate(fakes, server):
    """Real vLLM 0.32 answered 37 of 80 chat requests (temperature 1.0, max_tokens 8, seeds 0..79) with only the stop
    token (NATURAL_EMPTY_RATE); the fakes draw so, per seed, behind a worker that samples the stop token."""
    from fake_servers.engine import NATURAL_EMPTY_RATE

    answers = [_chat(fakes[server], seed) for seed in range(80)]
    empty = sum(_only_stop(a) for a in answers)
    assert abs(empty - 80 * NATURAL_EMPTY_RATE) <= 12, empty
    assert [_only_stop(_chat(fakes[server], seed)) for seed in range(10)] == [_only_stop(a) for a in answers[:10]]


def test_greedy_unseeded_and_never_stopping_workers_are_not_emptied(fakes):
    def ask(srv, **fields):
        return httpx.post(srv.root_url + "/v1/chat/completions", json={
            "model": MODEL, "messages": HELLO, "max_tokens": 8, **fields}).json()

    assert not any(_only_stop(ask(fakes["vllm"], temperature=0, seed=s)) for s in range(20))
    assert not any(_only_stop(ask(fakes["vllm"], messages=[{"role": "user", "content": f"Hi {s}"}]))
                   for s in range(20))  # (an unseeded request: the one sample kept for its prompt)
    with RunningServer(FakeConfig(kind="dynamo", dynamo_backend="mocker")) as mocker:  # never samples the stop token
        assert all(ask(mocker, seed=s, temperature=1.0)["usage"]["completion_tokens"] == 8 for s in range(20))
