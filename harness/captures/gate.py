"""Which of an audit's anomalies fail it: the gate behind `harness audit`'s exit code.

- A fallback kind (`history_edited`) is a note on how a turn joined, never a failure.
- A recovered retry is no failure: an `error` answer followed, in its conversation, by a `retried` turn that
  was answered well (the client's retry worked), and that `retried` turn itself. A retry that failed again
  leaves its own `error`, which still fails.
- `fail_on` (kinds) keeps only those kinds; `ignore` (kinds) drops these. Either names only known kinds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .kinds import KINDS, fallback_kinds, invalid_kinds


@dataclass
class Gate:
    failed: list = field(default_factory=list)  # Anomaly objects that fail the gate
    recovered: list = field(default_factory=list)  # errors a retry recovered, and those retries
    passed_over: list = field(default_factory=list)  # fallbacks, ignored kinds, kinds outside fail_on

    def to_dict(self) -> dict:
        return {"failed": len(self.failed), "recovered": len(self.recovered), "passed_over": len(self.passed_over),
                "failed_kinds": sorted({a.kind for a in self.failed})}


def parse_kinds(text: str | None, option: str) -> frozenset[str] | None:
    """`KIND,KIND` -> the kinds; ValueError naming an unknown one and the choices."""
    if text is None:
        return None
    kinds = frozenset(k.strip() for k in text.split(",") if k.strip())
    unknown = sorted(kinds - set(KINDS))
    if unknown:
        raise ValueError(f"{option}: unknown anomaly kind {', '.join(unknown)} (kinds: {', '.join(KINDS)})")
    return kinds


def recovered_retries(anomalies) -> set[int]:
    """Positions (in `anomalies`) of the errors a later well-answered retry of their conversation recovered,
    and of those retries."""
    invalid = invalid_kinds()
    bad_exchanges = {a.exchange for a in anomalies if a.kind in invalid}
    out: set[int] = set()
    for k, a in enumerate(anomalies):
        if a.kind != "retried" or a.exchange in bad_exchanges:
            continue
        errors = [j for j, e in enumerate(anomalies) if e.kind == "error" and e.conversation == a.conversation
                  and e.exchange < a.exchange and j not in out]
        if errors:
            out.add(k)
            out.add(errors[-1])  # the failed attempt this retry answered
    return out


def gate(anomalies, fail_on: frozenset[str] | None = None, ignore: frozenset[str] = frozenset()) -> Gate:
    anomalies = list(anomalies)
    recovered = recovered_retries(anomalies)
    notes = fallback_kinds()
    g = Gate()
    for k, a in enumerate(anomalies):
        if a.kind in notes or a.kind in ignore or (fail_on is not None and a.kind not in fail_on):
            g.passed_over.append(a)
        elif k in recovered:
            g.recovered.append(a)
        else:
            g.failed.append(a)
    return g
