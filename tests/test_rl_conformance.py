"""`harness conformance` on control-plane recordings: the query string is sent, a request that arrived while the
server was paused is held on the fake until the recorded resume (never a deadlock), Dynamo's engine routes go to
the fake worker's system server and /metrics families are compared; a fake that answers otherwise is caught."""

from __future__ import annotations

import threading

import httpx
import pytest

from fake_servers.server import FakeConfig, RunningServer
from harness.conformance import run_conformance
from harness.recording.format import Cassette
from harness.recording.proxy import Recorder, create_proxy_app
from harness.serve import AppThread

from .conftest import MODEL

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 6}


def _record(path, cfg: FakeConfig, steps) -> Cassette:
    with RunningServer(cfg) as up:
        rec = Recorder(path, "all", writer="thread")
        with AppThread(create_proxy_app(up.root_url, rec)) as proxy:
            steps(f"http://127.0.0.1:{proxy.port}", up)
    c = Cassette.load(path)
    c.meta["profile"] = cfg.profile
    c.save(path)
    return c


def _vllm_step(base: str, up) -> None:
    assert httpx.get(base + "/v1/models").status_code == 200
    assert httpx.post(base + "/v1/chat/completions", json=CHAT).status_code == 200
    assert httpx.post(base + "/pause?mode=keep&clear_cache=false").json() == {"status": "paused"}
    held: dict = {}
    worker = threading.Thread(target=lambda: held.update(r=httpx.post(base + "/v1/chat/completions", json=CHAT,
                                                                      timeout=30)))
    worker.start()
    for _ in range(2000):  # until the fake holds it
        if up.control.describe()["flights"]:
            break
        threading.Event().wait(0.002)
    assert httpx.get(base + "/is_paused").json() == {"is_paused": True}
    assert httpx.post(base + "/update_weight_version", json={"new_version": "step-1"}).status_code == 200
    assert httpx.post(base + "/pause?mode=bogus").status_code == 400
    assert httpx.post(base + "/resume").json() == {"status": "resumed"}
    worker.join(30)
    assert held["r"].status_code == 200
    assert httpx.get(base + "/weight_info").json() == {"weight_version": "step-1"}
    assert httpx.get(base + "/metrics").status_code == 200


@pytest.fixture(scope="module")
def vllm_cassette(tmp_path_factory, tokenizer):
    path = tmp_path_factory.mktemp("rlc") / "rl_step.yaml"
    _record(path, FakeConfig(kind="vllm", profile="vllm-0.32", dev_mode=True, tokenizer=tokenizer), _vllm_step)
    return path


def test_a_recorded_step_with_a_held_request_conforms(vllm_cassette):
    report = run_conformance(vllm_cassette)
    assert report.failed == 0, [c.problems for c in report.checks if c.problems]
    assert [c.request for c in report.checks if c.request.startswith("POST /pause")] == ["POST /pause"] * 2
    assert len(report.checks) == 10


def test_a_fake_without_the_recorded_switch_is_caught(vllm_cassette, monkeypatch):
    import harness.conformance as conf

    monkeypatch.setattr(conf, "control_switches", lambda profile, inters: {"dev_mode": False})
    report = run_conformance(vllm_cassette)
    assert report.failed >= 6 and any("status: real 200, fake 404" in p for c in report.checks for p in c.problems)


def test_metrics_families_are_compared(vllm_cassette, tmp_path):
    c = Cassette.load(vllm_cassette)
    scrape = next(i for i in c.interactions if i.path == "/metrics")
    scrape.response_body = scrape.response_body.replace(b"vllm:num_requests_running", b"vllm:num_requests_runnin")
    c.save(tmp_path / "rl_step.yaml")
    problems = [p for ch in run_conformance(tmp_path / "rl_step.yaml").checks for p in ch.problems]
    assert "metrics: vllm:num_requests_runnin only on the real side" in problems
    assert "metrics: vllm:num_requests_running only on the fake side" in problems


def test_dynamo_engine_routes_go_to_the_fake_workers_system_server(tmp_path, tokenizer):
    cfg = FakeConfig(kind="dynamo", profile="dynamo-1.6.1", dynamo_backend="vllm", enable_rl=True, tokenizer=tokenizer)
    with RunningServer(cfg) as up:  # recorded as the real ones are: one cassette per port, named by its suffix
        rec = Recorder(tmp_path / "rl_dyn.engine.yaml", "all", writer="thread")
        rec2 = Recorder(tmp_path / "rl_dyn.discovery.yaml", "all", writer="thread")
        with AppThread(create_proxy_app(up.system_url, rec)) as sysproxy, \
                AppThread(create_proxy_app(up.rl_url, rec2)) as rlproxy:
            sysbase, rlbase = f"http://127.0.0.1:{sysproxy.port}", f"http://127.0.0.1:{rlproxy.port}"
            assert httpx.get(rlbase + "/v1/rl/workers").json()["workers"]
            assert httpx.post(sysbase + "/engine/get_weight_version", json={}).json()["version_declared"] is False
            assert httpx.post(sysbase + "/engine/pause_generation", json={"mode": "abort"}).json()["status"] == "ok"
            assert httpx.post(sysbase + "/engine/set_weight_version", json={"weight_version": "s1"}).json() == {
                "status": "ok", "version": "s1"}
            assert httpx.post(sysbase + "/engine/resume_generation", json={}).json()["status"] == "ok"
            assert httpx.post(sysbase + "/engine/nope", json={}).status_code == 404
    for name in ("rl_dyn.engine.yaml", "rl_dyn.discovery.yaml"):
        c = Cassette.load(tmp_path / name)
        c.meta["profile"] = "dynamo-1.6.1+vllm"
        c.save(tmp_path / name)
    report = run_conformance(tmp_path)
    assert report.failed == 0, [ch.problems for ch in report.checks if ch.problems]
    assert len(report.checks) == 6


REAL = __import__("pathlib").Path(__file__).parents[1] / "cassettes" / "real"


@pytest.mark.parametrize("server", ["dynamo-1.6.1-vllm-0.31-cpu-rl", "vllm-0.32-cpu-lora"])
def test_the_real_rl_recordings_conform(server):
    """Dynamo with --enable-rl (frontend, worker system server, discovery listener) and vLLM with runtime LoRA, as
    recorded from the real servers (vLLM 0.31's and 0.32's dev-mode recordings are held by test_conformance)."""
    report = run_conformance(REAL / server)
    assert not report.unknown and len(report.checks) >= 10
    assert report.failed == 0, "\n".join(f"{c.cassette}#{c.index} {c.request}: {p}" for c in report.checks
                                         for p in c.problems)
