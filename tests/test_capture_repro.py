"""`harness repro` on any client's traffic: each recorded request sent again as it was sent (retries
included), recorded against now per turn; `--emit-test` writes a test that serves the conversation to
whatever client the user runs."""

import json
import subprocess
import sys
from pathlib import Path

import httpx

from fake_servers.server import FakeConfig, RunningServer
from harness.captures.emit import CaptureServer
from harness.captures.repro import resend
from harness.captures import audit
from harness.recording.format import Cassette
from harness.recording.proxy import Recorder, create_proxy_app
from harness.serve import AppThread

from .conftest import MODEL

BUGS = Path(__file__).parents[1] / "cassettes" / "bugs"


def harness(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=180,
                          cwd=cwd)


def _httpx_capture(path: Path) -> None:
    """A plain httpx client (not ours): max_completion_tokens, a 503 it retries, then a second turn."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 16,
            "logprobs": True, "return_token_ids": True, "seed": 3}
    with RunningServer(FakeConfig(kind="vllm")) as srv:
        srv.set_faults(["http_503*1"])
        rec = Recorder(path, "all", writer="thread")
        with AppThread(create_proxy_app(srv.root_url, rec)) as p:
            url = f"http://127.0.0.1:{p.port}/v1/chat/completions"
            answers = [httpx.post(url, json=body) for _ in range(2)]
            msg = answers[1].json()["choices"][0]["message"]
            body2 = {**body, "messages": [*body["messages"], {"role": "assistant", "content": msg["content"]},
                                          {"role": "user", "content": "more"}]}
            httpx.post(url, json=body2)
        rec.close()
    assert [a.status_code for a in answers] == [503, 200]


def test_repro_sends_any_clients_requests_again_retries_included(tmp_path):
    path = tmp_path / "httpx.yaml"
    _httpx_capture(path)
    result = harness("repro", str(path), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    turns = json.loads(result.stdout)["turns"]
    assert [(t["recorded_status"], t["now_status"]) for t in turns] == [(503, 503), (200, 200), (200, 200)]
    assert [t["recorded_anomalies"] for t in turns][:2] == [["error"], ["retried"]]
    assert all(t["same"] for t in turns) and turns[1]["ids_same"] is True


def test_repro_against_another_server_names_the_turns_that_differ(tmp_path):
    path = tmp_path / "httpx.yaml"
    _httpx_capture(path)
    with RunningServer(FakeConfig(kind="vllm"), latency="0,0") as other:  # no 503 there: the first turn differs
        report = resend(path, against=other.base_url)
    assert report.target == other.base_url
    assert [(t.recorded_status, t.now_status) for t in report.turns] == [(503, 200), (200, 200), (200, 200)]
    assert report.turns[0] in report.differing and report.turns[0].now_anomalies == []
    human = harness("repro", str(path), "--against", "http://127.0.0.1:9/v1")
    assert human.returncode == 2 and "cannot be reached" in human.stderr
    both = harness("repro", str(path), "--against", "http://x", "--profile", "vllm-0.32")
    assert both.returncode == 2 and "not both" in both.stderr


def test_capture_server_answers_recorded_requests_byte_for_byte_and_others_from_a_fake():
    capture = Cassette.load(BUGS / "none_fields_silent_mito.yaml")
    first = capture.interactions[0]
    with CaptureServer(BUGS / "none_fields_silent_mito.yaml") as srv:
        r = httpx.post(srv.base_url.removesuffix("/v1") + first.path, content=first.request_body,
                       headers={"content-type": "application/json"})
        assert r.content == first.response_body
        other = httpx.post(srv.base_url + "/chat/completions", json={
            "model": MODEL, "messages": [{"role": "user", "content": "not in the capture"}], "max_tokens": 4})
        assert other.status_code == 200 and other.json()["choices"][0]["message"]["content"]
    assert (srv.replayed, srv.fresh) == (1, 1) and len(srv.exchanges) == 2
    assert srv.exchanges[1].response_body == other.content


def test_emitted_test_fails_on_the_bug_and_passes_with_a_client_that_stitches(tmp_path):
    test = tmp_path / "regress" / "test_silent.py"
    result = harness("repro", str(BUGS / "none_fields_silent_mito.yaml"), "--conversation", "0", "--emit-test", str(test))
    assert result.returncode == 0 and "regression test written" in result.stdout, result.stderr
    cut = test.with_suffix(".yaml")
    assert [c.exchanges for c in audit(Cassette.load(cut)).conversations] == [[0, 1]]
    pytest_run = lambda: subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)],  # noqa: E731
                                        capture_output=True, text=True, cwd=tmp_path, timeout=180)
    run = pytest_run()
    assert "1 failed" in run.stdout and "silent_mito" in run.stdout, run.stdout + run.stderr
    # the user's client, fixed: ours stitches turn 2 (the server answers its new requests as a fake vLLM)
    src = test.read_text()
    start = src.index("def rollout(base_url: str) -> None:")
    end = src.index("def test_")
    test.write_text(src[:start] + '''def rollout(base_url: str) -> None:
    import asyncio

    from harness.client import ClientConfig
    from harness.rollout import run_rollout

    report = asyncio.run(run_rollout(ClientConfig(base_url=base_url, model="tiny-qwen"), 2, 48, 5))
    assert [t.mode for t in report.turns] == ["mito", "tito"]


''' + src[end:])
    run = pytest_run()
    assert "1 passed" in run.stdout, run.stdout + run.stderr
    again = harness("repro", str(BUGS / "none_fields_silent_mito.yaml"), "--emit-test", str(test))
    assert again.returncode == 2 and "pass --force" in again.stderr
