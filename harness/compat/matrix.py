"""`harness compat`: every client against every server profile (or a live deployment, or a replay),
as a matrix of pass / fail / n/a cells, checked against the reviewed expectation in `expected.json`."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path

from harness.wire.profiles import labels

from .base import FAIL, MISSING, NA, PASS, Cell, Target, first_line

EXPECTED = Path(__file__).with_name("expected.json")
# every server profile the fakes speak, Dynamo with each worker and with its native generate route
PROFILE_LABELS = labels()  # from the profile table: a new row is a new column
MOE = "2,2,8"


def adapters():
    from . import openai_sdk, ours, prime_rl_admin, renderers_client, verifiers_token, verifiers_train

    return [*ours.ADAPTERS, *openai_sdk.ADAPTERS, *renderers_client.ADAPTERS, *verifiers_token.ADAPTERS,
            *verifiers_train.ADAPTERS, *prime_rl_admin.ADAPTERS]


def client_names() -> list[str]:
    return [a.name for a in adapters()]


@dataclass
class Matrix:
    clients: list[str]
    targets: list[str]
    cells: list[Cell] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # client -> why (its package is not installed)

    def cell(self, client: str, target: str) -> Cell | None:
        return next((c for c in self.cells if c.client == client and c.target == target), None)

    def statuses(self) -> dict[str, dict[str, str]]:
        return {cl: {t: self.cell(cl, t).status for t in self.targets if self.cell(cl, t)} for cl in self.clients}

    def to_dict(self) -> dict:
        return {"clients": self.clients, "targets": self.targets, "cells": [c.to_dict() for c in self.cells],
                "skipped": self.skipped}

    def markdown(self) -> str:
        rows = ["| client | " + " | ".join(f"`{t}`" for t in self.targets) + " |",
                "|---" * (len(self.targets) + 1) + "|"]
        for cl in self.clients:
            rows.append(f"| `{cl}` | " + " | ".join(self.cell(cl, t).status if self.cell(cl, t) else ""
                                                    for t in self.targets) + " |")
        return "\n".join(rows)

    def junit(self) -> str:
        from xml.sax.saxutils import quoteattr

        failures = sum(c.status == FAIL for c in self.cells)
        cases = []
        for c in self.cells:
            body = ""
            if c.status == FAIL:
                body = f"<failure message={quoteattr(c.detail)}/>"
            elif c.status in (NA, MISSING):
                body = f"<skipped message={quoteattr(c.status + ': ' + c.detail)}/>"
            cases.append(f'  <testcase classname="compat.{c.client}" name={quoteattr(c.target)}>{body}</testcase>')
        return (f'<?xml version="1.0" encoding="utf-8"?>\n<testsuite name="harness-compat" tests="{len(self.cells)}" '
                f'failures="{failures}">\n' + "\n".join(cases) + "\n</testsuite>\n")


async def run_cell(adapter, target: Target, timeout: float = 120) -> Cell:
    missing = adapter.available()
    if missing:
        return Cell(adapter.name, target.label, MISSING, missing)
    why = adapter.applies(target)
    if why:
        return Cell(adapter.name, target.label, NA, why)
    try:
        await asyncio.wait_for(adapter.run(target), timeout)
    except Exception as exc:  # the client's own first error, one line
        return Cell(adapter.name, target.label, FAIL, first_line(exc))
    return Cell(adapter.name, target.label, PASS)


def _select(names: list[str] | None, known: list[str], what: str) -> list[str]:
    if not names:
        return known
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown {what}(s) {unknown}; known: {', '.join(known)}")
    return names


def _chosen(clients: list[str] | None) -> tuple[list, dict[str, str]]:
    """The adapters asked for whose clients are installed, and the others with why not."""
    chosen = [a for a in adapters() if a.name in _select(clients, client_names(), "client")]
    skipped = {a.name: a.available() for a in chosen if a.available()}
    return [a for a in chosen if a.name not in skipped], skipped


def run_on_fakes(clients: list[str] | None = None, profiles: list[str] | None = None, model: str = "tiny-qwen",
                 progress=None) -> Matrix:
    """Each installed client against a fake server started with each profile (routed experts on)."""
    from harness.wire.profiles import parse_label
    from fake_servers.server import FakeConfig, RunningServer

    chosen, skipped = _chosen(clients)
    labels = _select(profiles, PROFILE_LABELS, "profile")
    matrix = Matrix([a.name for a in chosen], labels, skipped=skipped)
    for label in labels:
        prof = parse_label(label)
        # empty_rate 0: a cell says whether a client speaks a server's wire; an answer that is only the stop token
        # (which real servers give at temperature > 0, and the fake then too) is a fault of its own (empty_completion)
        cfg = FakeConfig.for_profile(prof, moe=MOE, model=model, max_model_len=4096, empty_rate=0.0)
        with RunningServer(cfg) as srv:
            _run_target(chosen, Target(srv.base_url, model, prof.kind, prof, label, moe=True), matrix, progress)
    return matrix


def run_live(base_url: str, server: str, model: str, clients: list[str] | None = None, label: str = "live",
             progress=None) -> Matrix:
    """Each installed client against one live deployment (or a replay server)."""
    chosen, skipped = _chosen(clients)
    target = Target(base_url.rstrip("/"), model, server, None, label)
    matrix = Matrix([a.name for a in chosen], [label], skipped=skipped)
    _run_target(chosen, target, matrix, progress)
    return matrix


def _run_target(chosen, target: Target, matrix: Matrix, progress) -> None:
    for a in chosen:
        cell = asyncio.run(run_cell(a, target))
        matrix.cells.append(cell)
        if progress:
            progress(cell)


def expected() -> dict[str, dict[str, str]]:
    return json.loads(EXPECTED.read_text())["matrix"]


def changes(matrix: Matrix, want: dict[str, dict[str, str]] | None = None) -> list[tuple[Cell, str | None]]:
    """Cells whose status differs from the reviewed expectation: (cell, expected status)."""
    want = expected() if want is None else want
    out = []
    for c in matrix.cells:
        exp = (want.get(c.client) or {}).get(c.target)
        if exp != c.status:
            out.append((c, exp))
    return out


def update_expected(matrix: Matrix) -> Path:
    """Write a run on the fakes into the reviewed expected.json (cells not run keep their value)."""
    data = json.loads(EXPECTED.read_text()) if EXPECTED.exists() else {"matrix": {}}
    for c in matrix.cells:
        data["matrix"].setdefault(c.client, {})[c.target] = c.status
    EXPECTED.write_text(json.dumps(data, indent=2) + "\n")
    return EXPECTED


def run_on_replay(path, clients, server: str | None, model: str, label: str | None, progress=None) -> Matrix:
    """The clients against a replay server answering from recorded cassettes (a file or a directory)."""
    from ..recording.format import Cassette, cassette_files
    from ..recording.replay import ReplayIndex, create_replay_app
    from ..serve import AppThread

    cassettes = [Cassette.load(p) for p in cassette_files(path)]
    server = server or next((c.meta.get("server") for c in cassettes if c.meta.get("server")), None)
    if server not in ("vllm", "dynamo"):
        raise ValueError("cannot tell the recorded server's kind from the cassettes: pass --server vllm|dynamo")
    model = next((c.meta.get("model") for c in cassettes if c.meta.get("model")), model)
    with AppThread(create_replay_app(ReplayIndex(cassettes))) as srv:
        return run_live(f"http://127.0.0.1:{srv.port}/v1", server, model, clients,
                        label or f"replay:{Path(path).name}", progress)
