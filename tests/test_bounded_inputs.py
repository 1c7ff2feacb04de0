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
    assert (got.status_code, message(got.status_code, got.json())) == (rec.status, message(rec.status, rec.response_json()))
    assert took < 1.0 and peak < 200 * 1024 * 1024, (took, peak)
