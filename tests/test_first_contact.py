"""A new user's first mistakes: each gets one clear line and a non-zero exit, leaves no stray
files and loses nothing. Run as a user runs them, in a subprocess."""

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from harness.recording.format import Cassette

from .conftest import MODEL

CASSETTE = os.path.join(os.path.dirname(__file__), "..", "cassettes", "bugs", "none_fields_silent_mito.yaml")


def run(*args, timeout=120, cwd=None):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def one_clear_line(result, *needles):
    """Exit 2, one line on stderr saying what is wrong, no traceback."""
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture
def taken_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.parametrize("command", ["record", "record-workers", "fake", "replay", "chaos"])
def test_a_port_in_use_is_one_line_and_leaves_nothing(command, taken_port, tmp_path, fake_vllm_server):
    up = fake_vllm_server.root_url
    args = {"record": ["record", "--upstream", up, "--cassette", "c.yaml"],
            "record-workers": ["record", "--upstream", up, "--cassette", "c.yaml", "--workers", "2"],
            "fake": ["fake", "vllm"], "replay": ["replay", os.path.abspath(CASSETTE)],
            "chaos": ["chaos", "--upstream", up, "--fault", "reset"]}[command]
    result = run(*args, "--port", str(taken_port), cwd=tmp_path)
    one_clear_line(result, f"port {taken_port} on 127.0.0.1 is already in use")
    assert os.listdir(tmp_path) == []  # no empty cassette, no shards, no journal


@pytest.mark.parametrize("upstream, needle", [("127.0.0.1:18541", "write it as http://127.0.0.1:18541"),
                                              ("http://127.0.0.1:9", "cannot be reached")])
def test_record_refuses_an_upstream_it_cannot_reach(upstream, needle, tmp_path):
    one_clear_line(run("record", "--upstream", upstream, "--cassette", "c.yaml", "--port", "0", cwd=tmp_path), needle)
    assert os.listdir(tmp_path) == []


def test_wait_upstream_starts_and_upstream_failures_are_logged(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "record", "--upstream", f"http://127.0.0.1:{dead}",
                             "--cassette", "c.yaml", "--port", "0", "--wait-upstream"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2.5)
        assert proc.poll() is None  # still waiting, not gone
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "waiting for the upstream" in err and "Traceback" not in err and proc.returncode == 130
    assert os.listdir(tmp_path) == []  # gave up before anything was written


def test_the_proxy_logs_an_upstream_that_goes_away(tmp_path):
    from fake_servers.server import FakeConfig, RunningServer

    srv = RunningServer(FakeConfig(kind="vllm")).start()
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "record", "--upstream", srv.root_url, "--cassette",
                             "c.yaml", "--port", "0"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        port = int(proc.stdout.readline().split("127.0.0.1:")[-1].split("/")[0])
        srv.stop()
        r = httpx.post(f"http://127.0.0.1:{port}/tokenize", json={"model": MODEL, "prompt": "x"})
        assert r.status_code == 502
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        srv.stop()
        if proc.poll() is None:
            proc.kill()
    assert "POST /tokenize: upstream" in err and "unreachable" in err and "answered 502, not recorded" in err


def test_merge_never_replaces_an_existing_cassette_silently(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_bytes(open(CASSETTE, "rb").read())
    b.write_bytes(a.read_bytes())
    before = a.read_bytes()
    one_clear_line(run("cassette", "merge", str(a), str(b)), "a.yaml exists", "--force")
    assert a.read_bytes() == before


@pytest.mark.parametrize("args, needle", [
    (["inspect", "."], "is a directory"),
    (["repro", "."], "is a directory"),
    (["conformance", "--cassettes", "nope.yaml"], "no cassette at nope.yaml"),
    (["conformance", "--cassettes", "."], "no cassettes (*.yaml) under ."),
    (["replay", "nope.yaml"], "no cassette at nope.yaml"),
    (["conformance", "--cassettes", CASSETTE, "--live", "http://127.0.0.1:9/v1"], "--live http://127.0.0.1:9/v1 cannot be reached"),
    (["compat", "--base-url", "http://127.0.0.1:9/v1", "--server", "vllm"], "--base-url http://127.0.0.1:9/v1 cannot be reached"),
    (["record", "--upstream", "http://127.0.0.1:9", "--cassette", "c.yaml", "--profile", "vllm-7"], "unknown profile"),
])
def test_wrong_paths_and_unreachable_servers_are_one_line(args, needle, tmp_path):
    one_clear_line(run(*args, cwd=tmp_path), needle)


def test_conformance_advice_names_a_flag_that_exists(tmp_path):
    c = Cassette.load(CASSETTE)
    c.meta.pop("profile", None)
    c.save(tmp_path / "noprofile.yaml")
    result = run("conformance", "--cassettes", str(tmp_path / "noprofile.yaml"))
    assert "harness record --profile" in result.stdout
    assert "--profile" in run("record", "--help").stdout


def test_replay_logs_each_request_answers_health_and_sums_up(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "replay", CASSETTE, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline().split("127.0.0.1:")[1].split("/")[0])
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
        assert httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={"model": "x"}).status_code == 422
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "#1 GET /health -> 200" in err and "#2 POST /v1/chat/completions -> 422 [unmatched]" in err
    assert "stopped: served 2 requests (statuses: 200 x1, 422 x1); 1 unmatched (422)" in out


def test_chaos_logs_faults_and_sums_up(fake_vllm_server):
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "chaos", "--upstream", fake_vllm_server.root_url,
                             "--fault", "http_503*1", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        port = int(proc.stdout.readline().split("send traffic to http://127.0.0.1:")[1].split("/")[0])
        codes = [httpx.post(f"http://127.0.0.1:{port}/tokenize", json={"model": MODEL, "prompt": "x"}).status_code
                 for _ in range(2)]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert codes == [503, 200]
    assert "#1 POST /tokenize -> 503 [fault: http_503]" in err
    assert "stopped: forwarded 2 requests (statuses: 200 x1, 503 x1); faults injected: http_503 x1" in out


def test_verbose_shows_our_debug_lines_not_the_libraries(fake_vllm):
    result = run("-v", "rollout", "--base-url", fake_vllm, "--model", MODEL, "--turns", "2")
    assert result.returncode == 0
    assert "DEBUG harness.client: turn 1: mito (no_prior_turn) via" in result.stderr
    assert "DEBUG harness.client: turn 2: tito via" in result.stderr
    for noise in ("httpcore", "faker", "PyTorch"):
        assert noise not in result.stderr
