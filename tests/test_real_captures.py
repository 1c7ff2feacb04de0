"""Captures recorded from the real servers (`scripts/record_capture.py`): our client's rollouts, the OpenAI
SDK's conversations and a group of tokens-in rollouts (one drifting), all at once through `harness record`.
The audit must rebuild who said what and name what went wrong."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.captures import audit
from harness.recording.format import Cassette

CAPTURES = sorted((Path(__file__).parents[1] / "cassettes" / "captures").glob("*/capture.yaml"))


def harness(*args):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=180)


def client_of(i) -> str:
    ua = (i.request_headers.get("User-Agent") or i.request_headers.get("user-agent") or [""])[0]
    return "openai" if "OpenAI" in ua else "ours" if i.path != "/inference/v1/generate" or "messages" in (
        i.request_json() or {}) else "tokens-in"


@pytest.fixture(scope="module", params=CAPTURES, ids=[p.parent.name for p in CAPTURES])
def capture(request, tmp_path_factory):
    copy = tmp_path_factory.mktemp("capture") / "capture.yaml"  # the index is written beside it, not in the repo
    copy.write_bytes(request.param.read_bytes())
    return copy


def test_there_are_real_captures_of_vllm_and_dynamo():
    names = {p.parent.name for p in CAPTURES}
    assert {"vllm-0.32-cpu", "dynamo-1.6.1-vllm-0.31-cpu", "dynamo-1.6.1-mocker"} <= names


def test_each_conversation_is_one_clients_and_the_clients_show_what_they_did(capture):
    whole = Cassette.load(capture)
    report = audit(capture)
    assert "concurrent" in report.meta["scenario"] and report.conversation_count >= 8
    by_client: dict[str, list] = {}
    for c in report.conversations:
        first = whole.interactions[c.exchanges[0]]
        clients = {client_of(whole.interactions[n]) if whole.interactions[n].path != "/inference/v1/generate"
                   or client_of(first) == "tokens-in" else "ours" for n in c.exchanges}
        assert len(clients) == 1, (c.id, clients)  # linking never mixes two clients' rollouts
        by_client.setdefault(clients.pop(), []).append(c)
    kinds = lambda convs: {a.kind for c in convs for a in c.anomalies}  # noqa: E731
    # the OpenAI SDK asks for the engine's ids and never hands them back: silent MITO, wherever it could stitch
    assert len(by_client["openai"]) == 4 and all(len(c.turns) == 3 for c in by_client["openai"])
    stitchable = [c for c in by_client["openai"] if any(t.finish_reason == "stop" and t.completion_len
                                                       for t in c.turns[:-1])]
    assert all("silent_mito" in kinds([c]) for c in stitchable)
    assert "silent_mito" not in kinds(by_client["ours"]) and "continuity_break" not in kinds(by_client["ours"])
    if report.stitched:  # a server that reports the engine's ids: our client stitches, linked by tokens
        assert any(t.mode == "tito" and t.link == "tokens" for c in by_client["ours"] for t in c.turns)
    if "tokens-in" in by_client:  # one rollout of the group re-tokenized its first answer
        group = by_client["tokens-in"]
        assert len(group) == 4 and all(len(c.turns) == 3 for c in group)
        breaks = [a for c in group for a in c.anomalies if a.kind == "continuity_break"]
        assert len(breaks) == 1 and breaks[0].turn == 3 and "differs at position" in breaks[0].detail


def test_the_broken_conversation_comes_out_views_and_replays(capture, tmp_path):
    report = json.loads(harness("audit", str(capture), "--json").stdout)
    seen = {a["kind"] for a in report["anomalies"]}
    kind = next(k for k in ("continuity_break", "silent_mito", "missing_ids") if k in seen)  # the mocker reports no ids
    cid = next(a["conversation"] for a in report["anomalies"] if a["kind"] == kind)
    out = tmp_path / "one.yaml"
    cut = harness("cassette", "extract", str(capture), "--conversation", str(cid), "-o", str(out))
    assert cut.returncode == 0, cut.stderr
    assert json.loads(harness("audit", str(out), "--json").stdout)["conversations"] == 1
    page = tmp_path / "one.html"
    assert harness("view", str(out), "--html", str(page)).returncode == 0
    assert ('id="first-break"' in page.read_text()) == (kind == "continuity_break")
    repro = json.loads(harness("repro", str(out), "--json").stdout)
    assert repro["turns"] and all(t["same"] for t in repro["turns"])
    assert any(kind in t["recorded_anomalies"] for t in repro["turns"])
