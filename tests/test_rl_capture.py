"""Captures across a weight update: each turn's policy version (from the answer's weight_versions, the
control-plane exchanges around it, or the client's cache_salt), and the audit's policy_switch, aborted,
sent_while_paused and stale_version findings with the per-step summary.

The two captures were recorded through `harness record` in front of a fake vLLM in dev mode while
`harness rl-step` ran 3 rollouts across a weight update from a directory (cassettes/captures/)."""

import json

import orjson

from harness.captures.audit import audit
from harness.recording.format import Cassette, Interaction, shipped

ABORT = shipped("captures/rl_step_abort.yaml")
KEEP = shipped("captures/rl_step_keep.yaml")


def by_kind(report, kind):
    return [a for a in report.anomalies if a.kind == kind]


def test_an_abort_step_names_the_retried_turns_and_the_token_where_the_policy_changed():
    r = audit(Cassette.load(ABORT))
    switches = by_kind(r, "policy_switch")
    assert [(a.conversation, a.exchange) for a in switches] == [(3, 17), (4, 18), (5, 19)]
    for a in switches:  # the retry continues the rollout: its first completion token is the first of the new policy
        assert "sampled under default, turn 3 under step-1" in a.detail and "conversation token 50" in a.detail
    aborted = by_kind(r, "aborted")
    assert sorted((a.exchange, a.detail.rsplit(" ", 1)[1]) for a in aborted) == [(8, "18"), (9, "19"), (10, "17")]
    assert all("finish_reason 'abort'" in a.detail for a in aborted)
    assert [a.exchange for a in by_kind(r, "sent_while_paused")] == [16]
    assert not by_kind(r, "stale_version")
    (step,) = r.steps
    assert step["mode"] == "abort" and step["in_flight"] == 3 and step["updates"] == 1 and step["versions"] == ["step-1"]


def test_a_keep_step_finds_each_frozen_turn_sampled_under_both_policies():
    r = audit(Cassette.load(KEEP))
    switches = by_kind(r, "policy_switch")
    assert len(switches) == 3 and {a.turn for a in switches} == {2}
    assert all("turn 2 sampled under default then step-1" in a.detail for a in switches)
    assert not by_kind(r, "aborted")
    (step,) = r.steps
    assert step["mode"] == "keep" and step["in_flight"] == 3


def test_audit_json_carries_the_steps(capsys):
    from harness.cli import main

    assert main(["audit", str(KEEP), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["steps"][0]["mode"] == "keep" and "policy_switch" in {a["kind"] for a in out["anomalies"]}


def _chat(at: float, content: str, spans=None, status=200, path="/v1/chat/completions", body=None, answer=None):
    choice = {"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": "x"},
              "token_ids": list(range(8))}
    if spans is not None:
        choice["weight_versions"] = spans
    req = body if body is not None else {"model": "m", "messages": [{"role": "user", "content": content}],
                                         "return_token_ids": True}
    resp = answer if answer is not None else {"choices": [choice], "prompt_token_ids": list(range(100, 112))}
    return Interaction("POST" if path != "/weight_info" else "GET", "http://h" + path, {}, orjson.dumps(req) if req else b"",
                       status, "OK", {"content-type": ["application/json"]}, orjson.dumps(resp), None, 10.0, at)


def test_versions_named_by_the_answer_give_the_exact_token_and_an_old_label_after_new_weights_is_stale():
    spans = [{"version": "v1", "start": 0, "end": 5}, {"version": "v2", "start": 5, "end": 8}]
    cassette = Cassette([
        _chat(1.0, "a", [{"version": "v1", "start": 0, "end": 8}]),
        _chat(2.0, "b", spans),
        _chat(3.0, "", path="/update_weight_version", body={"new_version": "v1"}, answer={"success": True}),
        _chat(4.0, "", path="/collective_rpc", body={"method": "reload_weights"}, answer={}),
        _chat(5.0, "c", [{"version": "v1", "start": 0, "end": 8}]),
        _chat(6.0, "", path="/weight_info", body={}, answer={"weight_version": "v1"}),
    ], {})
    r = audit(cassette)
    (switch,) = by_kind(r, "policy_switch")
    assert switch.exchange == 1 and "v1 then v2 (from the answer)" in switch.detail
    assert "completion token 5 (conversation token 17)" in switch.detail  # 12 prompt ids + 5
    stale = by_kind(r, "stale_version")
    assert sorted(a.exchange for a in stale) == [4, 5] and all("'v1'" in a.detail for a in stale)


def test_without_control_plane_exchanges_the_client_tag_names_the_version():
    first = [{"role": "user", "content": "q"}]
    then = [*first, {"role": "assistant", "content": "x"}, {"role": "user", "content": "go on"}]
    tagged = [_chat(1.0, "", body={"model": "m", "messages": first, "cache_salt": "0"}),
              _chat(2.0, "", body={"model": "m", "messages": then, "cache_salt": "1"})]
    r = audit(Cassette(tagged, {}))
    assert not r.steps
    (switch,) = by_kind(r, "policy_switch")
    assert switch.exchange == 1 and "under 0, turn 2 under 1 (from the client tag)" in switch.detail


def test_a_keep_step_recorded_from_real_vllm_032_audits_alike():
    """harness rl-step --mode keep (a version tag) through harness record in front of real vLLM 0.32 in dev mode."""
    r = audit(Cassette.load(shipped("captures/vllm-0.32-cpu/rl_step_keep.yaml")))
    switches = by_kind(r, "policy_switch")
    assert len(switches) == 3 and all("turn 2 sampled under default then step-rl" in a.detail for a in switches)
    assert len(by_kind(r, "sent_while_paused")) == 1 and not by_kind(r, "aborted")
    (step,) = r.steps
    assert step["mode"] == "keep" and step["in_flight"] == 3 and step["versions"] == ["step-rl"]


def test_parquet_rows_carry_the_version_each_turn_ended_under(tmp_path):
    import pyarrow.parquet as pq

    from harness.captures.export import export_parquet

    out = tmp_path / "step.parquet"
    export_parquet(str(ABORT), out)
    rows = pq.read_table(out).to_pylist()
    version = {r["exchange"]: r["weight_version"] for r in rows}
    assert [version[n] for n in (3, 4, 5, 8, 9, 10)] == ["default"] * 6  # before the update, and the cut turns
    assert [version[n] for n in (17, 18, 19, 20, 21, 22)] == ["step-1"] * 6  # the retries and the turns after
    assert all(version[r["exchange"]] is None for r in rows if r["path"] in ("/pause", "/resume", "/metrics"))


def test_view_marks_where_the_policy_changed():
    from rich.console import Console

    from harness.captures.view import open_view, print_view

    cut = open_view(str(ABORT), 3)
    assert any(n.startswith("aborted:") and "sent again as exchange 17" in n
               for t in cut.turns if t.exchange == 10 for n in t.anomalies)
    v = open_view(str(KEEP), 5)  # its second turn was frozen by the pause and finished under the new weights
    (frozen,) = [t for t in v.turns if t.exchange == 16]
    assert any(n.startswith("policy_switch: turn 2 sampled under default then step-1") for n in frozen.anomalies)
    console = Console(width=200, record=True)
    print_view(console, str(KEEP), v.meta, v.turns, v.decode)
    assert "turn 2 sampled under default then step-1" in console.export_text()
