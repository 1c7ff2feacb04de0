"""Numbers that size work (logprob counts, n) are refused as real vLLM refuses them, before any work:
recorded from real vLLM 0.32 (cassettes/hostile/vllm-0.32-cpu/*.yaml), answered by the fake
with the same status and message, each in bounded time and memory. One of these bodies
(`sampling_params.logprobs: 1e9` on /inference/v1/generate) used to exhaust the machine's memory."""

import time
import tracemalloc
from pathlib import Path

import httpx
import pytest

from fake_servers.server import FakeConfig, RunningServer
from harness.recording.format import Cassette

REAL = Path(__file__).parents[1] / "cassettes" / "hostile" / "vllm-0.32-cpu"
# logprob counts and n past the limits; bodies nested 5000 deep (FastAPI gives up on them: 400, not 500)
RECORDED = [i for name in ("hostile_counts.yaml", "hostile_nesting.yaml") for i in Cassette.load(REAL / name).interactions]


@pytest.fixture(scope="module")
def fake():
    with RunningServer(FakeConfig(kind="vllm", profile="vllm-0.32")) as srv:
        yield srv


def message(status: int, body) -> str | None:
    return body.get("error", {}).get("message") if status >= 400 and isinstance(body, dict) else None


@pytest.mark.parametrize("k", range(len(RECORDED)), ids=lambda k: f"{RECORDED[k].path}#{k}")
def test_the_fake_refuses_what_real_vllm_refuses_in_bounded_time_and_memory(fake, k):
    rec = RECORDED[k]
    tracemalloc.start()
    t0 = time.perf_counter()
    got = httpx.post(fake.root_url + rec.path, content=rec.request_body,
                     headers={"content-type": "application/json"}, timeout=30)
    took = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    if took >= 1.0:  # once more: work that grows with the input is slow again, a pause of the machine is not
        t0 = time.perf_counter()
        httpx.post(fake.root_url + rec.path, content=rec.request_body, headers={"content-type": "application/json"},
                   timeout=30)
        took = time.perf_counter() - t0
    assert (got.status_code, message(got.status_code, got.json())) == (rec.status, message(rec.status, rec.response_json()))
    assert took < 1.0 and peak < 200 * 1024 * 1024, (took, peak)


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], "logprobs": True, "top_logprobs": 2}),
    ("/v1/completions", {"prompt": "Hi", "logprobs": 2}),
    ("/inference/v1/generate", {"token_ids": [9707], "sampling_params": {"logprobs": 2}}),
])
def test_n_choices_are_n_samples_and_past_the_fakes_work_limit_it_says_so(path, body):
    """vLLM takes any n up to VLLM_MAX_N_SEQUENCES and answers n choices, each its own sample (recorded from
    vLLM 0.32 on all three routes). The fake does the same until the completion tokens of all choices pass its
    work limit; then it answers 400 in vLLM's error shape, naming that limit (a real server would generate
    them; a fake in CI stays bounded)."""
    from fake_servers.validate import FAKE_WORK_TOKENS

    with RunningServer(FakeConfig(kind="vllm")) as srv:
        def post(**sampling):
            sent = {"model": "tiny-qwen", **body}
            if "sampling_params" in body:
                sent["sampling_params"] = {"seed": 3, **body["sampling_params"], **sampling}
            else:
                sent.update(seed=3, **sampling)
            return httpx.post(srv.root_url + path, json=sent, timeout=60)

        r = post(n=12, max_tokens=6)
        assert r.status_code == 200, r.text
        choices = r.json()["choices"]
        assert [c["index"] for c in choices] == list(range(12))
        assert len({str(c.get("token_ids") or c.get("text") or c.get("message")) for c in choices}) > 1  # own samples
        assert r.json()["usage"]["completion_tokens"] <= 12 * 6
        t0 = time.monotonic()
        r = post(n=16384, ignore_eos=True)
        assert time.monotonic() - t0 < 10
        assert r.status_code == 400
        error = r.json()["error"]
        assert error["param"] == "n" and f"{FAKE_WORK_TOKENS} completion tokens" in error["message"]
        r = post(n=16385, max_tokens=1)  # past vLLM's own limit: vLLM's words
        assert r.status_code == 400 and "VLLM_MAX_N_SEQUENCES" in r.json()["error"]["message"]
