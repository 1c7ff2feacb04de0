"""`harness conformance` against the real cassettes: CI fails on any difference off the allowlist."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import conformance
from harness.conformance import run_conformance

REAL = Path(__file__).parents[1] / "cassettes" / "real"
PAIRS = [("vllm-0.32-cpu", "vllm"), ("dynamo-1.6.1-mocker", "dynamo"), ("dynamo-1.6.1-vllm-0.31-cpu", "dynamo")]


@pytest.mark.parametrize("server,fake", PAIRS)
def test_fakes_conform_to_real_recordings(server, fake):
    report = run_conformance(REAL / server, fake)
    assert len(report.checks) >= 10
    assert report.failed == 0, "\n".join(f"{c.cassette}#{c.index} {c.request}: {p}" for c in report.checks for p in c.problems)


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
                         "--fake", "vllm", "--json-out", str(out)], capture_output=True, text=True)
    assert ok.returncode == 0 and "0 difference(s)" in ok.stdout
    data = json.loads(out.read_text())
    assert data["failed"] == 0 and data["checked"] == len(data["checks"]) >= 10
    bad = subprocess.run([sys.executable, "-m", "harness.cli", "conformance", "--cassettes",
                          str(REAL / "vllm-0.32-cpu" / "unknown_field.yaml"), "--fake", "dynamo"], capture_output=True, text=True)
    assert bad.returncode == 1 and "DIFFERS" in bad.stdout
