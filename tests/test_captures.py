"""Captures of any client's traffic: conversations rebuilt from interleaved rollouts, and the audit
naming what went wrong (the bug cassettes, a drifting client, a retried 503)."""

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from fake_servers.server import FakeConfig, RunningServer
from harness.captures import audit
from harness.client import ClientConfig
from harness.recording.format import Cassette
from harness.recording.proxy import Recorder, create_proxy_app
from harness.rollout import run_rollout
from harness.serve import AppThread

from .conftest import MODEL, record_drift

BUGS = Path(__file__).parents[1] / "cassettes" / "bugs"


def harness(*args):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name, kind, exchange", [
    ("none_fields_silent_mito", "silent_mito", 1),
    ("dynamo_logprobs_one_short", "logprob_mismatch", 0),
    ("routed_experts_data_after_shape", "routed_experts_ambiguous", 0),
])
def test_each_bug_cassette_shows_its_bug(name, kind, exchange):
    result = harness("audit", str(BUGS / f"{name}.yaml"), "--json")
    assert result.returncode == 1  # anomalies: CI can gate on a capture
    report = json.loads(result.stdout)
    assert {"conversations", "turns", "stitched", "anomalies"} <= set(report)
    assert any(a["kind"] == kind and a["exchange"] == exchange for a in report["anomalies"]), report["anomalies"]
    human = harness("audit", str(BUGS / f"{name}.yaml"))
    assert "bug recorded with this capture:" in human.stdout and kind in human.stdout


def test_the_correct_fallback_after_an_invalid_answer_is_not_silent():
    report = audit(Cassette.load(BUGS / "dynamo_logprobs_one_short.yaml"))
    assert [a.kind for a in report.anomalies] == ["logprob_mismatch"]
    assert report.fallbacks() == {"after logprob_mismatch": 1}


@pytest.fixture(scope="module")
def interleaved(tmp_path_factory):
    """Six 4-turn rollouts of our client at once through the recorder: one capture, interleaved."""
    path = tmp_path_factory.mktemp("capture") / "six.yaml"
    with RunningServer(FakeConfig(kind="vllm")) as srv:
        rec = Recorder(path, "all", writer="thread", meta={"server": "vllm", "scenario": "six interleaved rollouts"})
        with AppThread(create_proxy_app(srv.root_url, rec)) as p:
            cfg = ClientConfig(base_url=f"http://127.0.0.1:{p.port}/v1", model=MODEL, tito_route="generate")

            async def many():
                return await asyncio.gather(*[run_rollout(cfg, 4, 48, seed) for seed in range(6)])

            reports = asyncio.run(many())
        rec.close()
    return path, reports


def test_interleaved_rollouts_become_their_conversations(interleaved):
    path, reports = interleaved
    capture = Cassette.load(path)
    report = audit(capture)
    assert len(report.conversations) == 6 and report.turns == 24 and report.stitched == 18
    for c in report.conversations:
        assert [t.mode for t in c.turns] == ["mito", "tito", "tito", "tito"] and c.id == c.exchanges[0]
        assert [t.link for t in c.turns[1:]] == ["tokens"] * 3
    assert report.anomalies == []
    spans = [(c.exchanges[0], c.exchanges[-1]) for c in report.conversations]
    assert all(a[1] > b[0] for a, b in zip(spans, spans[1:]))  # each rollout still running when the next began
    listed = json.loads(harness("cassette", "conversations", str(path), "--json").stdout)["conversations"]
    assert [c["id"] for c in listed] == [c.id for c in report.conversations]


def test_a_drifting_client_is_a_continuity_break_with_its_position(tmp_path, tokenizer):
    """Another client re-tokenizes the previous completion's text instead of keeping the engine's ids."""
    path = tmp_path / "drift.yaml"
    prompt, _, retok, _ = record_drift(path, tokenizer)
    result = harness("audit", str(path), "--json")
    assert result.returncode == 1
    breaks = [a for a in json.loads(result.stdout)["anomalies"] if a["kind"] == "continuity_break"]
    assert len(breaks) == 1 and breaks[0]["conversation"] == 0 and breaks[0]["turn"] == 2
    at = len(prompt) + len(retok)  # the engine's stop token is where the re-tokenized prompt goes its own way
    assert f"differs at position {at}: previous [151645" in breaks[0]["detail"]
    assert "'<|im_end|>" in breaks[0]["detail"]  # ids and text on both sides


def test_a_retried_503_is_error_then_retried_in_one_conversation(tmp_path):
    path = tmp_path / "retry.yaml"
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 16,
            "logprobs": True, "return_token_ids": True}
    with RunningServer(FakeConfig(kind="vllm")) as srv:
        srv.set_faults(["http_503*1"])
        rec = Recorder(path, "all", writer="thread")
        with AppThread(create_proxy_app(srv.root_url, rec)) as p:
            codes = [httpx.post(f"http://127.0.0.1:{p.port}/v1/chat/completions", json=body).status_code
                     for _ in range(2)]
        rec.close()
    assert codes == [503, 200]
    report = audit(Cassette.load(path))
    assert len(report.conversations) == 1 and report.conversations[0].exchanges == [0, 1]
    assert [(a.kind, a.exchange) for a in report.anomalies] == [("error", 0), ("retried", 1)]
    assert report.anomalies[0].detail.startswith("error 503")


def test_extract_one_conversation_replays_byte_identically(interleaved, tmp_path):
    from harness.recording.replay import ReplayIndex, create_replay_app

    path, _ = interleaved
    capture = Cassette.load(path)
    target = audit(capture).conversations[3]
    out = tmp_path / "one.yaml"
    result = harness("cassette", "extract", str(path), "-o", str(out), "--conversation", str(target.id))
    assert result.returncode == 0, result.stderr
    cut = Cassette.load(out)
    picked = cut.meta["extracted_from"]["exchanges"]
    assert set(target.exchanges) <= set(picked) and cut.meta["server"] == capture.meta["server"]
    # the rest is what the client needed besides its turns (/tokenize, /detokenize, a models probe)
    from harness.captures.turns import turn_kind

    assert all(turn_kind(capture.interactions[n]) is None or capture.interactions[n].status == 404
               for n in set(picked) - set(target.exchanges))
    again = audit(cut)
    assert len(again.conversations) == 1 and [t.mode for t in again.conversations[0].turns] == ["mito", "tito", "tito", "tito"]
    with AppThread(create_replay_app(ReplayIndex([cut]))) as rp:
        for i in cut.interactions:
            r = httpx.request(i.method, f"http://127.0.0.1:{rp.port}{i.path}", content=i.request_body,
                              headers={"content-type": "application/json"})
            assert r.status_code == i.status and r.content == i.response_body
    refused = harness("cassette", "extract", str(path), "-o", str(out), "--conversation", str(target.id))
    assert refused.returncode == 2 and "pass --force" in refused.stderr


def test_extract_keeps_the_blobs_it_names(tmp_path):
    path = tmp_path / "moe.yaml"
    with RunningServer(FakeConfig(kind="vllm", moe="4,2,16")) as srv:
        rec = Recorder(path, "all", writer="thread", blob_threshold=64)
        with AppThread(create_proxy_app(srv.root_url, rec)) as p:
            for seed in (1, 2):
                httpx.post(f"http://127.0.0.1:{p.port}/inference/v1/generate", json={
                    "model": MODEL, "token_ids": [9707] * 20, "sampling_params": {"max_tokens": 8, "seed": seed}})
        rec.close()
    out = tmp_path / "cut" / "second.yaml"
    assert harness("cassette", "extract", str(path), "-o", str(out), "--exchanges", "1").returncode == 0
    assert Cassette.load(out).interactions[0].response_body == Cassette.load(path).interactions[1].response_body
    assert len(list((out.parent / "second.blobs").iterdir())) == 1  # its blob, not the other exchange's


def test_export_writes_one_parquet_row_per_exchange(interleaved, tmp_path):
    import pyarrow.parquet as pq

    path, _ = interleaved
    out = tmp_path / "six.parquet"
    result = harness("cassette", "export", str(path), "--parquet", str(out))
    assert result.returncode == 0, result.stderr
    table = pq.read_table(out).to_pylist()
    capture = Cassette.load(path)
    assert len(table) == len(capture.interactions) and [r["exchange"] for r in table] == list(range(len(table)))
    report = audit(capture)
    for c in report.conversations:
        rows = [r for r in table if r["conversation"] == c.id]
        assert [r["exchange"] for r in rows] == c.exchanges and [r["turn"] for r in rows] == [1, 2, 3, 4]
        assert [r["mode"] for r in rows] == ["mito", "tito", "tito", "tito"]
        for r in rows:
            assert len(r["completion_ids"]) == len(r["completion_logprobs"]) > 0 and r["duration_ms"] > 0
        assert rows[1]["prompt_ids"][:len(rows[0]["prompt_ids"]) + len(rows[0]["completion_ids"])] == \
            rows[0]["prompt_ids"] + rows[0]["completion_ids"]
    assert harness("cassette", "export", str(path), "--parquet", str(out)).returncode == 2  # never overwrites


def test_session_ids_reach_disk_as_digests_and_still_group_a_rollout(tmp_path):
    """Two rollouts that send identical messages-in turns: only their session header tells them apart."""
    path = tmp_path / "sessions.yaml"
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 8}
    with RunningServer(FakeConfig(kind="vllm")) as srv:
        rec = Recorder(path, "all", writer="thread")
        with AppThread(create_proxy_app(srv.root_url, rec)) as p:
            for session in ("rollout-a-31337", "rollout-b-31337", "rollout-a-31337"):
                httpx.post(f"http://127.0.0.1:{p.port}/v1/chat/completions", json=body,
                           headers={"X-Session-ID": session})
        rec.close()
    assert b"31337" not in path.read_bytes()  # the value never reached disk
    report = audit(Cassette.load(path))
    assert [c.exchanges for c in report.conversations] == [[0, 2], [1]]
    assert report.conversations[0].turns[1].link == "session"
