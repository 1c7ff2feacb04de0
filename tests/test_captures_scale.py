"""Captures read once and in flat memory: the streaming reader, the index `extract` uses, closing idle
conversations, and rollouts of a tokens-in client that share their first prompt (a GRPO group)."""

import asyncio
import os
import subprocess
import sys

import httpx
import pytest

from fake_servers.server import FakeConfig, RunningServer
from harness.captures import CaptureIndex, audit, extract, index_path
from harness.client import ClientConfig
from harness.recording.format import Cassette, CassetteError, iter_interactions
from harness.recording.proxy import Recorder, create_proxy_app
from harness.rollout import run_rollout
from harness.serve import AppThread

from .conftest import MODEL

TEMPLATE = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
BRIDGE = "\n<|im_start|>user\nGo on.<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    """A tokens-in client (as prime-rl's orchestrator is) on /inference/v1/generate: a group of four rollouts
    of one prompt, three turns each, interleaved turn by turn; one rollout re-tokenizes its first
    completion's text at turn 3 (drift), the first whose answer ended with the stop token."""
    from harness.tokenizer import load_tokenizer

    tok = load_tokenizer()
    enc = lambda text: tok.encode(text, add_special_tokens=False)  # noqa: E731
    path = tmp_path_factory.mktemp("group") / "group.yaml"
    with RunningServer(FakeConfig(kind="vllm")) as srv:
        rec = Recorder(path, "all", writer="thread")
        with AppThread(create_proxy_app(srv.root_url, rec)) as p:
            url = f"http://127.0.0.1:{p.port}/inference/v1/generate"
            first = enc(TEMPLATE.format("Name three prime numbers."))
            prompts = [list(first) for _ in range(4)]
            completions: list[list[list[int]]] = [[] for _ in range(4)]
            drifter = None
            for turn in range(3):
                for r in range(4):
                    if turn == 1 and drifter is None:  # the first rollout whose first answer ended with the stop token
                        drifter = next(k for k in range(4) if completions[k][0][-1] == tok.convert_tokens_to_ids("<|im_end|>"))
                    body = {"model": MODEL, "token_ids": prompts[r],
                            "sampling_params": {"max_tokens": 12, "seed": 100 * r + turn, "temperature": 1.0}}
                    out = httpx.post(url, json=body, timeout=30).json()["choices"][0]["token_ids"]
                    completions[r].append(out)
                    if r == drifter and turn == 1:  # drift: the first completion comes back as re-tokenized text
                        text = tok.decode(completions[r][0], skip_special_tokens=True)
                        done = first + enc(text)
                        rest = prompts[r][len(first) + len(completions[r][0]):]
                        prompts[r] = done + rest + out + enc(BRIDGE)
                    else:
                        prompts[r] = prompts[r] + out + enc(BRIDGE)
        rec.close()
    return path, drifter


def test_a_group_of_rollouts_with_one_prompt_are_not_breaks_of_each_other(group):
    path, drifter = group
    report = audit(path)
    assert report.conversation_count == 4 and report.turns == 12 and report.stitched == 12
    kinds = [(a.kind, a.turn) for a in report.anomalies]
    assert kinds == [("continuity_break", 3)], kinds
    assert report.anomalies[0].conversation == drifter  # a conversation's id: its first exchange


def test_window_closes_idle_conversations_without_changing_the_result(group):
    """A conversation idle for `window` exchanges is closed and its state let go. With a window wider than
    the gap between a rollout's turns the result is the same; with one narrower, it is not."""
    path, _ = group
    full = audit(path)
    gap = max(b - a for c in full.conversations for a, b in zip(c.exchanges, c.exchanges[1:]))
    same = audit(path, window=gap + 1)
    assert [c.to_dict() for c in same.conversations] == [c.to_dict() for c in full.conversations]
    narrow = audit(path, window=gap - 1)
    assert [c.to_dict() for c in narrow.conversations] != [c.to_dict() for c in full.conversations]


def test_the_index_is_written_on_first_use_and_rebuilt_when_the_capture_changes(group, tmp_path):
    path, _ = group
    capture = tmp_path / "c.yaml"
    capture.write_bytes(path.read_bytes())
    assert not index_path(capture).exists()
    report = audit(capture, keep=False)
    idx = CaptureIndex.load(capture)
    assert idx is not None and len(idx.starts) == report.exchanges
    assert set(idx.anomalies) == {"continuity_break"}
    with open(capture, "rb") as f:  # each span is exactly one interaction
        f.seek(idx.starts[0])
        assert f.read(idx.ends[0] - idx.starts[0]).startswith(b"- request:")
    whole = Cassette.load(capture)
    cid = next(c for c in set(idx.conversation) if c >= 0)
    out = tmp_path / "one.yaml"
    cut = extract(capture, out, conversations=[cid])
    assert [i.request_body for i in cut.interactions] == \
        [whole.interactions[n].request_body for n, c in enumerate(idx.conversation) if c == cid]
    os.utime(capture, ns=(idx.mtime_ns + 10**9, idx.mtime_ns + 10**9))  # changed: the old index is not trusted
    assert CaptureIndex.load(capture) is None
    extract(capture, tmp_path / "two.yaml", conversations=[cid])
    assert CaptureIndex.load(capture) is not None


def test_the_streaming_reader_reads_what_a_whole_load_reads_and_refuses_a_cut_file(group, tmp_path):
    path, _ = group
    streamed = [(i.uri, i.request_body, i.response_body) for _, _, i in iter_interactions(path)]
    assert streamed == [(i.uri, i.request_body, i.response_body) for i in Cassette.load(path).interactions]
    cut = tmp_path / "cut.yaml"
    raw = path.read_bytes()
    cut.write_bytes(raw[: len(raw) * 2 // 3])
    with pytest.raises(CassetteError, match="is cut off"):
        list(iter_interactions(cut))
    other = tmp_path / "indented.yaml"  # another writer's layout (items indented): read by a whole load
    other.write_text("version: 1\ninteractions:\n  - request: {body: null, headers: {}, method: GET, uri: "
                     "'http://x/v1/models'}\n    response: {status: {code: 200, message: OK}, headers: {}, "
                     "body: {string: '{}'}}\n")
    assert [(n, span, i.path) for n, span, i in iter_interactions(other)] == [(0, None, "/v1/models")]


def test_audit_and_conversations_of_our_interleaved_client_through_the_cli(tmp_path):
    """`cassette conversations` streams: each conversation is printed when it closes, the JSON stays one
    object."""
    path = tmp_path / "four.yaml"
    with RunningServer(FakeConfig(kind="dynamo")) as srv:
        rec = Recorder(path, "all", writer="thread")
        with AppThread(create_proxy_app(srv.root_url, rec)) as p:
            cfg = ClientConfig(base_url=f"http://127.0.0.1:{p.port}/v1", model=MODEL, renderer_transport="dynamo_chat")

            async def many():
                return await asyncio.gather(*[run_rollout(cfg, 3, 24, seed) for seed in range(4)])

            asyncio.run(many())
        rec.close()
    run = lambda *a: subprocess.run([sys.executable, "-m", "harness.cli", *a], capture_output=True, text=True,  # noqa: E731
                                    timeout=120)
    import json

    listed = json.loads(run("cassette", "conversations", str(path), "--json").stdout)["conversations"]
    assert len(listed) == 4 and all(c["verdict"].startswith("ok (mito/") for c in listed)
    assert [c["id"] for c in listed] == sorted(c["exchanges"][0] for c in listed)
    human = run("cassette", "conversations", str(path)).stdout
    assert human.count(" ok (mito/") == 4 and "4 conversations, 12 turns" in human
    report = json.loads(run("audit", str(path), "--json").stdout)
    tito = sum(t["mode"] == "tito" for c in listed for t in c["turns"])
    assert (report["conversations"], report["turns"], report["stitched"]) == (4, 12, tito) and tito >= 6


def test_the_readmes_duckdb_query_runs_over_an_export(group, tmp_path):
    """The docs' query, as printed there, over a Parquet export: per conversation, what the audit says."""
    import re
    from pathlib import Path

    duckdb = pytest.importorskip("duckdb")
    path, drifter = group
    out = tmp_path / "step1.parquet"
    assert subprocess.run([sys.executable, "-m", "harness.cli", "cassette", "export", str(path), "--parquet", str(out)],
                          capture_output=True, timeout=120).returncode == 0
    root = Path(__file__).parents[1]  # the query as the docs print it (docs/how-to/analyse-a-training-run.md)
    docs = "\n".join(p.read_text() for p in [root / "README.md", *sorted((root / "docs").rglob("*.md"))])
    sql = re.search(r"```sql\n(\s*-- duckdb:.*?)```", docs, re.S).group(1)
    rows = duckdb.sql(sql.replace("'rl/step*.parquet'", f"'{tmp_path}/step*.parquet'")).fetchall()
    from harness.captures.bridge import audit_bridges

    report = audit_bridges(path)  # the export checks bridges as `harness audit` does
    assert [(c, turns, stitched) for c, turns, stitched, _ in rows] == \
        [(c.id, len(c.turns), sum(t.mode == "tito" for t in c.turns)) for c in report.conversations]
    assert {c: kinds for c, _, _, kinds in rows if kinds} == \
        {c.id: sorted({a.kind for a in c.anomalies}) for c in report.conversations if c.anomalies}
    assert "continuity_break" in {a.kind for a in report.anomalies if a.conversation == drifter}
    # the client sends its bridge after an answer cut by max_tokens without closing the turn: told as such
    assert all(a.turn > 1 for a in report.anomalies if a.kind == "bridge_mismatch")


@pytest.mark.parametrize("kind, transport, stream, extra, probes", [
    ("vllm", "vllm_generate", True, {}, 3),  # no /v1/chat/completions/tokens on vLLM 0.32: each client probes it once
    ("dynamo", "dynamo_chat", True, {}, 0),
    ("dynamo", "dynamo_generate", False, {"native_generate": True}, 0),
    ("dynamo", "dynamo_generate", False, {}, 3),  # no native generate: the turn goes through nvext.token_data
])
def test_every_transport_and_streams_link_into_their_conversations(tmp_path, kind, transport, stream, extra, probes):
    """Our client's route probe (a 404 on a missing tokens-in route, the same turn sent to another) is neither a
    turn nor an anomaly: it is counted as a route probe."""
    path = tmp_path / "c.yaml"
    with RunningServer(FakeConfig(kind=kind, **extra)) as srv:
        rec = Recorder(path, "all", writer="thread")
        with AppThread(create_proxy_app(srv.root_url, rec)) as p:
            cfg = ClientConfig(base_url=f"http://127.0.0.1:{p.port}/v1", model=MODEL, renderer_transport=transport,
                               stream=stream)

            async def many():
                return await asyncio.gather(*[run_rollout(cfg, 3, 32, seed) for seed in range(3)])

            reports = asyncio.run(many())
        rec.close()
    report = audit(path)
    assert report.conversation_count == 3 and report.anomalies == []
    assert sorted([t.mode for t in c.turns] for c in report.conversations) == \
        sorted([t.mode for t in r.turns] for r in reports)
    assert report.stitched == sum(t.mode == "tito" for r in reports for t in r.turns) >= 3
    assert all(t.link in ("tokens", "route") for c in report.conversations for t in c.turns if t.mode == "tito")
    assert report.route_probes == probes == sum(t.link == "route" for c in report.conversations for t in c.turns)
