"""The anomaly kinds the audit names: one row each, so a new check is a new row.

`invalid`: the turn's answer cannot be trusted (a later messages-in turn is then no silent fallback);
`fallback`: not a fault, a note on how a turn joined its conversation (not counted by the gate);
`starts` / `contains`: how an exchange-level finding's text is told to be of this kind (the first row that
matches wins).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    name: str
    means: str
    invalid: bool = False
    fallback: bool = False
    starts: tuple[str, ...] = ()  # prefixes of an exchange finding's text
    contains: tuple[str, ...] = ()  # words in it


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("error", "the server answered an error status", invalid=True, starts=("error",)),
    Kind("logprob_mismatch", "logprobs and completion ids differ in length", invalid=True, contains=("mismatch",)),
    Kind("missing_ids", "ids the request asked for are not in the answer", invalid=True, starts=("missing",)),
    Kind("routed_experts_undecodable", "the routed-experts payload does not decode", invalid=True,
         contains=("routed experts",)),
    Kind("malformed", "the answer cannot be parsed", invalid=True),
    Kind("routed_experts_ambiguous", "a routed-experts object holds another data key before its own",
         starts=("routed_experts object",)),
    Kind("silent_mito", "a messages-in turn after a turn that could have been stitched"),
    Kind("continuity_break", "a tokens-in prompt that does not start with the previous prompt + completion"),
    Kind("orphan_tokens_in", "a tokens-in prompt that continues no recorded turn"),
    Kind("bridge_mismatch", "the bridge ids differ from what the deployment's template renders"),
    Kind("retried", "the same request as an earlier failed exchange"),
    Kind("history_edited", "an earlier message was edited; the client re-rendered the conversation", fallback=True),
)}


def invalid_kinds() -> frozenset[str]:
    return frozenset(k.name for k in KINDS.values() if k.invalid)


def fallback_kinds() -> frozenset[str]:
    return frozenset(k.name for k in KINDS.values() if k.fallback)


def add_kind(kind: Kind) -> None:
    """Register another kind (a check of another module); its name must be new."""
    if kind.name in KINDS:
        raise ValueError(f"anomaly kind {kind.name!r} exists")
    KINDS[kind.name] = kind


def kind_of(text: str) -> tuple[str, str]:
    """(kind, detail) of an exchange-level finding (turns.exchange_anomalies)."""
    for k in KINDS.values():
        if any(text.startswith(m) for m in k.starts) or any(m in text for m in k.contains):
            return k.name, text
    return "malformed", text
