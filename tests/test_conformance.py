"""`harness conformance` against the real cassettes: CI fails on any difference off the allowlist."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import conformance
from harness.conformance import run_conformance

REAL = Path(__file__).parents[1] / "cassettes" / "real"
# each directory of real recordings and the profile its cassettes name
SERVERS = {"dynamo-1.5.1-mocker": "dynamo-1.5.1+mocker", "vllm-0.30-cpu": "vllm-0.30", "vllm-0.31-cpu": "vllm-0.31", "vllm-0.32-cpu": "vllm-0.32", "dynamo-1.6.1-mocker": "dynamo-1.6.1+mocker",
           "dynamo-1.6.1-vllm-0.31-cpu": "dynamo-1.6.1+vllm",
           "dynamo-1.6.1-vllm-0.31-cpu-native-generate": "dynamo-1.6.1+vllm+native-generate"}


@pytest.mark.parametrize("server", SERVERS)
def test_each_profile_conforms_to_its_own_real_recordings(server):
    report = run_conformance(REAL / server)  # the fake is chosen by each cassette's meta.profile
    assert not report.unknown
    assert set(report.per_profile()) == {SERVERS[server]}
    assert len(report.checks) >= 10
    assert report.failed == 0, "\n".join(f"{c.cassette}#{c.index} {c.request}: {p}" for c in report.checks for p in c.problems)


@pytest.mark.parametrize("server", SERVERS)
def test_fakes_answer_the_hostile_suite_as_the_real_server_did(server):
    """Status and error shape of every hostile body, as recorded; a 5xx only where the real server of that
    profile was recorded giving one."""
    from harness.wire.profiles import parse_label

    report = run_conformance(REAL / server / "hostile_inputs.yaml")
    allowed = parse_label(SERVERS[server]).recorded_5xx
    assert len(report.checks) >= 30
    assert all(c.real_status == c.fake_status and (c.fake_status < 500 or c.fake_status in allowed)
               for c in report.checks), \
        [(c.index, c.real_status, c.fake_status) for c in report.checks if c.real_status != c.fake_status]
    assert report.failed == 0


def test_a_cassette_whose_server_cannot_be_told_is_reported_not_compared(tmp_path):
    from harness.recording.format import Cassette

    c = Cassette.load(REAL / "vllm-0.32-cpu" / "unknown_field.yaml")
    c.meta.pop("profile")
    c.save(tmp_path / "a.yaml")
    c.meta["profile"] = "vllm-9.9"
    c.save(tmp_path / "b.yaml")
    report = run_conformance(tmp_path)
    assert report.checks == [] and report.failed == 0
    assert [name for name, _ in report.unknown] == ["a.yaml", "b.yaml"] or len(report.unknown) == 2
    assert "names no profile" in report.unknown[0][1] and "unknown profile 'vllm-9.9'" in report.unknown[1][1]
    out = subprocess.run([sys.executable, "-m", "harness.cli", "conformance", "--cassettes", str(tmp_path)],
                         capture_output=True, text=True)
    assert "not compared" in out.stdout and "cannot be told" in out.stdout


def test_a_profile_that_differs_from_the_recording_is_caught():
    """vLLM 0.31's generate logprobs against the 0.32 fake: the version break renderers trips on."""
    from harness.recording.format import Cassette

    path = REAL / "vllm-0.31-cpu" / "rollout_4_turns_tools.yaml"
    c = Cassette.load(path)
    assert c.meta["profile"] == "vllm-0.31"
    inters = [i for i in c.interactions if i.path == "/inference/v1/generate"]
    assert inters and b'"token":"token_id:' in inters[0].response_body
    report = run_conformance(path, "vllm")  # --fake vllm: the default profile, vllm-0.32
    assert any("choices[].logprobs.content[].token_id" in p for c in report.checks for p in c.problems)


def test_a_wrong_fake_is_caught():
    report = run_conformance(REAL / "dynamo-1.6.1-vllm-0.31-cpu", "vllm")
    assert report.failed == len(report.checks)
    assert any("missing in fake: $.nvext" in p or "missing in fake: $.code" in p for c in report.checks for p in c.problems)


def test_allowlisted_differences_are_reported_not_failed(monkeypatch):
    monkeypatch.setattr(conformance, "ALLOWLIST", [("vllm", r".*", "everything, for this test")])
    report = run_conformance(REAL / "dynamo-1.6.1-mocker" / "single_turn_logprobs.yaml", "vllm")
    assert report.failed == 0
    assert any(c.allowed for c in report.checks)


def test_cli_writes_json_and_exits_by_verdict(tmp_path):
    out = tmp_path / "report.json"
    ok = subprocess.run([sys.executable, "-m", "harness.cli", "conformance", "--cassettes", str(REAL / "vllm-0.32-cpu"),
                         "--json-out", str(out)], capture_output=True, text=True)
    assert ok.returncode == 0 and "0 difference(s)" in ok.stdout
    data = json.loads(out.read_text())
    assert data["failed"] == 0 and data["checked"] == len(data["checks"]) >= 10
    assert data["profiles"] == {"vllm-0.32": {"checked": data["checked"], "failed": 0}}
    bad = subprocess.run([sys.executable, "-m", "harness.cli", "conformance", "--cassettes",
                          str(REAL / "vllm-0.32-cpu" / "unknown_field.yaml"), "--fake", "dynamo"], capture_output=True, text=True)
    assert bad.returncode == 1 and "DIFFERS" in bad.stdout


def test_drift_against_a_live_deployment_names_each_changed_field():
    """`--live URL`: the recorded requests sent to a deployment; here fakes stand in for an upgrade."""
    from fake_servers.server import FakeConfig, RunningServer
    from harness.conformance import run_drift

    cassettes = REAL / "vllm-0.31-cpu"
    with RunningServer(FakeConfig(kind="vllm", profile="vllm-0.31", max_model_len=2048, dev_mode=True)) as same:
        assert run_drift(cassettes, same.base_url).failed == 0
    with RunningServer(FakeConfig(kind="vllm", profile="vllm-0.32", max_model_len=2048)) as upgraded:
        report = run_drift(cassettes, upgraded.base_url, "after upgrade")
        out = subprocess.run([sys.executable, "-m", "harness.cli", "conformance", "--cassettes", str(cassettes),
                              "--live", upgraded.base_url], capture_output=True, text=True)
    problems = [p for c in report.checks for p in c.problems]
    assert report.failed and set(report.per_profile()) == {"after upgrade"}
    assert "missing in live: $.choices[].logprobs.content[].token (string)" in problems
    assert "extra in live: $.choices[].logprobs.content[].token_id (number)" in problems
    assert out.returncode == 1 and "live" in out.stdout
    both = subprocess.run([sys.executable, "-m", "harness.cli", "conformance", "--cassettes", str(cassettes),
                           "--live", "http://127.0.0.1:9", "--fake", "vllm"], capture_output=True, text=True)
    assert both.returncode == 2 and "exclusive" in both.stderr
