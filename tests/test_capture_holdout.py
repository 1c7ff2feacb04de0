"""Holdouts: captures recorded through `harness record` from clients that are not ours, with planted bugs and a
ground-truth file per rollout (scripts/record_holdout.py). The audit is scored against the truth: grouping by
exact membership, group structure, and every anomaly kind found, missed and false."""

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest

from harness.captures import audit
from harness.captures.bridge import Deployment
from harness.recording.format import Cassette

ROOT = Path(__file__).parents[1] / "cassettes" / "captures" / "holdout"
SETS = sorted(p.parent for p in ROOT.glob("*/truth.json"))


@pytest.fixture(scope="module")
def deployment():
    return Deployment.load()


def score(capture: Path, truth: dict, deployment):
    cassette = Cassette.load(capture)
    where = {hashlib.blake2b(i.request_body, digest_size=12).hexdigest(): n for n, i in enumerate(cassette.interactions)}
    report = audit(cassette, deployment)
    conv_of = {n: c for c in report.conversations for n in c.exchanges}
    rollouts = truth["rollouts"]
    exact = sum(1 for r in rollouts if len({conv_of[where[d]].id for d in r["requests"]}) == 1
                and sorted(conv_of[where[r["requests"][0]]].exchanges) == sorted(where[d] for d in r["requests"]))
    rollout_of = {conv_of[where[r["requests"][0]]].id: k for k, r in enumerate(rollouts)}
    want = Counter((k, a["turn"], a["kind"], a["cause"]) for k, r in enumerate(rollouts) for a in r["anomalies"])
    got = Counter((rollout_of.get(a.conversation), a.turn, a.kind, a.cause) for a in report.anomalies)
    kinds = {k for _, _, k, _ in want} | {k for _, _, k, _ in got}
    table = {kind: {"found": sum((want & got)[x] for x in want if x[2] == kind),
                    "missed": sum((want - got)[x] for x in want if x[2] == kind),
                    "false": sum((got - want)[x] for x in got if x[2] == kind)} for kind in kinds}
    groups = {}
    for r in rollouts:
        groups.setdefault(r["group"], set()).add(conv_of[where[r["requests"][0]]].group)
    return exact, len(rollouts), table, groups


@pytest.mark.parametrize("holdout", SETS, ids=[p.name for p in SETS])
def test_the_audit_scores_the_holdout_whole(holdout, deployment):
    truth = json.loads((holdout / "truth.json").read_text())
    exact, total, table, groups = score(holdout / "capture.yaml", truth, deployment)
    assert exact == total, f"grouping {exact}/{total} exact"
    assert all(len(ids) == 1 for ids in groups.values()) and len({min(ids) for ids in groups.values()}) == len(groups)
    assert all(row["missed"] == 0 and row["false"] == 0 for row in table.values()), table
    assert sum(row["found"] for row in table.values()) == sum(len(r["anomalies"]) for r in truth["rollouts"])


def test_there_are_holdouts():
    assert SETS, "no holdout capture under cassettes/captures/holdout"
