"""Stopping `harness record` by a signal to its whole process group, as Ctrl-C in a terminal, `timeout` and
systemd do: the writer process shares the group, so it gets the signal too. Every exchange answered before
the signal is in the cassette, the journal is gone, and nothing alarming is printed."""

import json
import os
import signal
import subprocess
import sys

import httpx
import pytest

from harness.recording.format import Cassette
from harness.recording.journal import journal_dir

from .conftest import MODEL

ANSWERED = 20


def start_recorder(upstream: str, cassette, *extra) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "record", "--upstream", upstream, "--cassette",
                             str(cassette), "--port", "0", "--quiet", *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    line = proc.stdout.readline()
    if "send traffic to http://127.0.0.1:" not in line:
        proc.kill()
        raise AssertionError(f"the recorder did not start: {line!r} {proc.communicate(timeout=10)}")
    return proc, int(line.split("send traffic to http://127.0.0.1:")[1].split("/")[0])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_group_flushes_and_leaves_no_journal(fake_vllm_server, tmp_path, sig):
    cassette = tmp_path / "sig.yaml"
    proc, port = start_recorder(fake_vllm_server.root_url, cassette)  # the writer is a process of the group
    try:
        with httpx.Client() as client:
            for k in range(ANSWERED):
                r = client.post(f"http://127.0.0.1:{port}/tokenize", json={"model": MODEL, "prompt": f"p{k}"})
                assert r.status_code == 200
        os.killpg(proc.pid, sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "ERROR" not in err and "may lack" not in err, err  # nothing is missing, so nothing is said to be
    assert f"{ANSWERED} exchanges recorded, {ANSWERED} in" in out
    assert not journal_dir(cassette).exists()  # a clean stop leaves no journal
    c = Cassette.load(cassette, recover_journal=False)
    assert sorted(json.loads(i.request_body)["prompt"] for i in c.interactions) == sorted(
        f"p{k}" for k in range(ANSWERED))


def test_repeated_ctrl_c_during_traffic_never_prints_a_traceback(fake_vllm_server, tmp_path):
    """Ctrl-C pressed twice (the second while the recorder is flushing) is still a clean stop."""
    cassette = tmp_path / "twice.yaml"
    proc, port = start_recorder(fake_vllm_server.root_url, cassette)
    try:
        with httpx.Client() as client:
            for k in range(ANSWERED):
                assert client.post(f"http://127.0.0.1:{port}/tokenize",
                                   json={"model": MODEL, "prompt": f"q{k}"}).status_code == 200
        os.killpg(proc.pid, signal.SIGINT)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert not journal_dir(cassette).exists()
    assert len(Cassette.load(cassette, recover_journal=False).interactions) == ANSWERED
