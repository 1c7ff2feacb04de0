"""What the capture trial met, as a user meets it: each step through the CLI (`harness.cli.main`, in process)."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import pytest
import yaml

from harness.cli import main
from harness.recording.format import end_line

ROOT = Path(__file__).resolve().parent.parent
CAPTURE = ROOT / "cassettes" / "captures" / "vllm-0.32-cpu" / "capture.yaml"
ROLLOUT = ROOT / "cassettes" / "real" / "vllm-0.32-cpu" / "rollout_4_turns_tools.yaml"


def run(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as exc:
            rc = exc.code
    return rc, out.getvalue(), err.getvalue()


def stock_vcrpy(path: Path, interactions: list[dict]) -> Path:
    """A cassette as stock vcrpy writes it: keys sorted (interactions first), no meta, no x_tito."""
    for i in interactions:
        i["response"].pop("x_tito", None)
    path.write_text(yaml.dump({"interactions": interactions, "version": 1}))
    return path


def rollout_items() -> list[dict]:
    return yaml.safe_load(ROLLOUT.read_text())["interactions"]


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    return tmp_path_factory.mktemp("trial")


# -- the reproduce steps: extract an anomaly, then view it ---------------------------------------------------

def test_extract_an_anomaly_then_view_shows_the_flagged_conversation(place):
    bug = place / "bug.yaml"
    rc, out, err = run("cassette", "extract", CAPTURE, "--anomaly", "silent_mito", "-o", bug)
    assert rc == 0, err
    rc, out, _ = run("cassette", "conversations", bug, "--json")
    ids = [c["id"] for c in json.loads(out)["conversations"]]
    assert len(ids) > 1  # the extract holds several conversations, as in the trial
    rc, out, err = run("view", bug)
    assert rc == 0, err
    assert f"holds {len(ids)} conversations; showing {ids[0]}, the first with silent_mito" in err
    assert all(str(c) in err.split("the others:")[1] for c in ids[1:])
    assert "silent_mito" in out  # the picked conversation is the flagged one: its anomaly is shown
    page = place / "bug.html"
    rc, out, err = run("view", bug, "--html", page)
    assert rc == 0 and page.read_text().count("<section class='turn'") == 3


def test_view_names_a_missing_conversation(place):
    rc, out, err = run("view", CAPTURE, "--conversation", "9999")
    assert rc == 2 and "9999" in err and "Traceback" not in err


# -- a stock vcrpy cassette ----------------------------------------------------------------------------------

def test_view_of_a_stock_vcrpy_cassette_finds_its_conversation(place):
    path = stock_vcrpy(place / "stock.yaml", rollout_items())
    rc, out, _ = run("cassette", "conversations", path, "--json")
    assert [c["id"] for c in json.loads(out)["conversations"]] == [0]
    rc, out, err = run("view", path)
    assert rc == 0, err
    assert "turn 1 exchange 0" in out and "holds" not in err


# -- a messages-in turn without ids --------------------------------------------------------------------------

def test_view_of_a_turn_without_ids_shows_its_messages_and_answer(place):
    item = rollout_items()[0]
    body = json.loads(item["request"]["body"])
    for k in ("return_token_ids", "logprobs"):
        body.pop(k, None)
    item["request"]["body"] = json.dumps(body)
    answer = json.loads(item["response"]["body"]["string"])
    answer.pop("prompt_token_ids", None)
    for ch in answer["choices"]:
        ch.pop("token_ids", None)
        ch["logprobs"] = None
    item["response"]["body"]["string"] = json.dumps(answer)
    path = stock_vcrpy(place / "noids.yaml", [item])
    rc, out, err = run("view", path)
    assert rc == 0, err
    assert "You are a research assistant" in out and "What is the population" in out
    assert "(no ids)" in out and answer["choices"][0]["message"]["content"][:7] in out
    page = place / "noids.html"
    assert run("view", path, "--html", page)[0] == 0
    assert "What is the population" in page.read_text()


# -- --emit-test ---------------------------------------------------------------------------------------------

def test_emit_test_of_a_clean_conversation_warns_and_still_checks(place):
    clean = place / "clean.yaml"
    assert run("cassette", "extract", CAPTURE, "--conversation", "0", "-o", clean)[0] == 0
    emitted = place / "test_clean.py"
    rc, out, err = run("repro", clean, "--emit-test", emitted)
    assert rc == 0, err
    assert "warning: the capture shows no anomaly" in err
    src = emitted.read_text()
    assert "BUG = []" in src and "gate(report.anomalies, frozenset(BUG) or None).failed" in src
    compile(src, str(emitted), "exec")


def test_emit_test_refuses_a_profile_that_is_no_label(place):
    canary = place / "PWNED"
    text = (place / "clean.yaml").read_text() if (place / "clean.yaml").exists() else None
    if text is None:
        run("cassette", "extract", CAPTURE, "--conversation", "0", "-o", place / "clean.yaml")
        text = (place / "clean.yaml").read_text()
    data = yaml.safe_load(text)
    data["meta"]["profile"] = f'x"""\nopen({str(canary)!r}, "w")\n"""'
    hostile = place / "hostile.yaml"
    hostile.write_text(yaml.dump(data, sort_keys=False) + end_line(len(data["interactions"])))
    emitted = place / "test_hostile.py"
    rc, out, err = run("repro", hostile, "--emit-test", emitted)
    assert rc == 2 and "is not one of" in err and "--profile" in err
    assert not emitted.exists() and not emitted.with_suffix(".yaml").exists() and not canary.exists()
    rc, out, err = run("repro", hostile, "--emit-test", emitted, "--profile", "vllm-0.32")
    assert emitted.exists() and "open(" not in emitted.read_text().split('"""')[2]
    compile(emitted.read_text(), str(emitted), "exec")
    assert not canary.exists()


# -- the audit gate ------------------------------------------------------------------------------------------

def retry_capture(path: Path, second_status: int) -> Path:
    """The rollout's first turn answered 503, then sent again (answered `second_status`), then the rest."""
    items = rollout_items()
    failed = copy.deepcopy(items[0])
    failed["response"]["status"] = {"code": 503, "message": "Service Unavailable"}
    failed["response"]["body"] = {"string": '{"error": {"message": "overloaded", "type": "ServiceUnavailable", '
                                            '"code": 503}}'}
    failed["response"].pop("x_tito", None)
    retry = items[0]
    if second_status != 200:
        retry = copy.deepcopy(failed)
    return stock_vcrpy(path, [failed, retry] + items[1:])


def test_a_recovered_retry_passes_the_gate(place):
    path = retry_capture(place / "retry_ok.yaml", 200)
    rc, out, err = run("audit", path, "--json")
    report = json.loads(out)
    kinds = sorted(a["kind"] for a in report["anomalies"])
    assert kinds == ["error", "retried"], kinds  # both still reported
    assert report["gate"]["recovered"] == 2 and report["gate"]["failed"] == 0
    assert rc == 0
    rc, out, err = run("audit", path)
    assert rc == 0 and "2 a retry recovered" in out


def test_a_retry_that_failed_again_fails_the_gate(place):
    path = retry_capture(place / "retry_bad.yaml", 503)
    rc, out, err = run("audit", path, "--json")
    assert rc == 1 and json.loads(out)["gate"]["failed"] >= 1


def test_fail_on_and_ignore_choose_the_kinds(place):
    rc, out, _ = run("audit", CAPTURE, "--json")
    kinds = {a["kind"] for a in json.loads(out)["anomalies"]}
    assert rc == 1 and {"continuity_break", "silent_mito"} <= kinds
    assert run("audit", CAPTURE, "--ignore", ",".join(kinds))[0] == 0
    assert run("audit", CAPTURE, "--fail-on", "continuity_break")[0] == 1
    assert run("audit", CAPTURE, "--fail-on", "bridge_mismatch,orphan_tokens_in")[0] == (
        1 if kinds & {"bridge_mismatch", "orphan_tokens_in"} else 0)
    rc, out, err = run("audit", CAPTURE, "--fail-on", "no_such_kind")
    assert rc == 2 and "unknown anomaly kind no_such_kind" in err


# -- the pytest plugin names shipped cassettes ---------------------------------------------------------------

def test_the_marker_names_a_shipped_cassette(pytester):
    first = rollout_items()[0]
    pytester.makepyfile(f'''
import httpx, pytest

@pytest.mark.cassette("shipped:real/vllm-0.32-cpu/rollout_4_turns_tools.yaml")
def test_replays_it(cassette_server):
    r = httpx.post(cassette_server.removesuffix("/v1") + "/v1/chat/completions", content={first["request"]["body"]!r},
                   headers={{"content-type": "application/json"}})
    assert r.status_code == {first["response"]["status"]["code"]}

@pytest.mark.cassette("shipped:real/no/such.yaml")
def test_missing(cassette_server):
    pass
''')
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*the package carries no cassette real/no/such.yaml*"])


# -- inspect and audit speak one anomaly schema, and inspect says what it counts -------------------------------

def test_inspect_and_audit_share_the_anomaly_schema_and_inspect_states_its_scope():
    rc, out, _ = run("inspect", CAPTURE, "--json")
    seen = json.loads(out)
    rc, out, _ = run("audit", CAPTURE, "--json")
    audited = json.loads(out)
    assert seen["anomalies"] and audited["anomalies"]
    assert {tuple(sorted(a)) for a in seen["anomalies"]} == {tuple(sorted(a)) for a in audited["anomalies"]}
    assert all(a["conversation"] is None and isinstance(a["exchange"], int) for a in seen["anomalies"])
    assert "single exchanges" in seen["scope"] and "harness audit" in seen["scope"]
    rc, out, _ = run("inspect", CAPTURE)
    assert f"{len(seen['anomalies'])} anomalies seen in single exchanges" in " ".join(out.split())


def test_a_fake_servers_state_prints_as_one_short_line():
    from fake_servers.server import FakeConfig, RunningServer

    with RunningServer(FakeConfig(kind="vllm")) as srv:
        srv.set_faults(["http_503*2"])
        text = repr(srv.state)
    assert "\n" not in text and len(text) < 200, text
    assert text.startswith("ServerState(vllm-0.32, 0 requests") and "http_503" in text
    assert "{%" not in text  # no template
