"""`harness record --rotate`: a run written as segments (each a whole cassette) plus a manifest, read by the
tools as one capture, and the kill -9 promise kept across segments."""

import json
import os
import signal
import subprocess
import sys

import httpx
import pytest

from harness.recording.format import Cassette, cassette_files
from harness.recording.journal import journal_dir
from harness.recording.replay import load_index
from harness.recording.segments import parse_rotate, read_manifest

from .conftest import MODEL
from .test_recorder_signals import start_recorder

SENT = 95


def send(port: int, prefix: str, n: int) -> None:
    with httpx.Client() as client:
        for k in range(n):
            r = client.post(f"http://127.0.0.1:{port}/tokenize", json={"model": MODEL, "prompt": f"{prefix}{k}"})
            assert r.status_code == 200


def test_rotate_spec():
    assert parse_rotate("10000") == (None, 10000)
    assert parse_rotate("256MB") == (256_000_000, None)
    assert parse_rotate("1GiB") == (2**30, None)
    for bad in ("0", "ten", "5 parsecs", "-3"):
        with pytest.raises(ValueError, match="--rotate"):
            parse_rotate(bad)


def test_a_rotated_run_is_segments_and_a_manifest_read_as_one_capture(fake_vllm_server, tmp_path):
    cassette = tmp_path / "step1200.yaml"
    proc, port = start_recorder(fake_vllm_server.root_url, cassette, "--rotate", "20")
    try:
        for part in range(5):  # (batches are cut where a segment is full, so segments hold 20 or a little more)
            send(port, f"p{part}-", SENT // 5)
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert proc.returncode == 0, err
    run = tmp_path / "step1200"
    manifest = read_manifest(run)
    segments = cassette_files(run)
    assert [p.name for p in segments] == manifest["segments"] and len(segments) >= 2
    loaded = [Cassette.load(p) for p in segments]  # each segment a whole cassette of its own
    assert [len(c.interactions) for c in loaded] == manifest["exchanges"] and sum(manifest["exchanges"]) == SENT
    assert [c.meta["segment"] for c in loaded] == list(range(len(segments)))
    prompts = [json.loads(i.request_body)["prompt"] for c in loaded for i in c.interactions]
    assert sorted(prompts) == sorted(f"p{part}-{k}" for part in range(5) for k in range(SENT // 5))
    assert not journal_dir(cassette).exists()
    for source in (run, cassette, str(run / "*.yaml")):  # the folder, the run's name, a glob
        assert load_index([source]).count == SENT
    audit = subprocess.run([sys.executable, "-m", "harness.cli", "audit", str(run), "--json"], capture_output=True,
                           text=True)
    assert audit.returncode in (0, 1), audit.stderr
    assert json.loads(audit.stdout)["exchanges"] == SENT


def test_kill_9_of_a_rotated_run_loses_no_answered_exchange(fake_vllm_server, tmp_path):
    cassette = tmp_path / "killed.yaml"
    proc, port = start_recorder(fake_vllm_server.root_url, cassette, "--rotate", "10")
    try:
        send(port, "k", 45)  # answered: each one is in the journal before its answer went out
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    files = cassette_files(tmp_path / "killed")  # reading the run puts the journal in first
    prompts = [json.loads(i.request_body)["prompt"] for f in files for i in Cassette.load(f).interactions]
    assert sorted(prompts) == sorted(f"k{k}" for k in range(45))
    assert not journal_dir(cassette).exists()
