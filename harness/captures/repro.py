"""`harness repro`: a capture sent again, turn by turn, by one of two drivers behind one interface.

- `as-sent` (`resend`): each recorded request again, exactly as the client sent it (retries included), to a
  server: the capture's own replay (does it replay faithfully?), a fake of a profile, or a live server. Per
  turn it reports recorded against now: status, completion ids, logprobs, the audit's anomalies.
- `ours` (`repro_cassette`): the conversation rebuilt (script) and driven through our client against the
  capture's replay; per turn, what the client did: mode, reason, dropped tokens, errors.

`repro(path, client=...)` picks the driver from `DRIVERS`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from ..client import ClientConfig, TitoClient, TitoError
from ..recording.format import Cassette, Interaction
from ..recording.replay import ReplayIndex, create_replay_app
from ..wire.urls import root_of
from .extract import read_selection
from .linking import Linker
from .sender import HOP, send_again  # noqa: F401
from .script import Script, rebuild
from .turns import turn_kind, turn_tokens



@dataclass
class TurnDiff:
    exchange: int
    path: str
    recorded_status: int
    now_status: int
    ids_same: bool | None = None  # None: no ids on one side
    logprob_delta: float | None = None  # largest difference where both sides have logprobs
    recorded_anomalies: list[str] = field(default_factory=list)
    now_anomalies: list[str] = field(default_factory=list)
    error: str | None = None  # the now answer's error message

    @property
    def same(self) -> bool:
        return (self.recorded_status == self.now_status and self.ids_same is not False
                and (self.logprob_delta is None or self.logprob_delta <= 1e-4)
                and self.recorded_anomalies == self.now_anomalies)

    def to_dict(self) -> dict:
        return {**self.__dict__, "same": self.same}


@dataclass
class ResendReport:
    cassette: str
    target: str
    turns: list[TurnDiff]

    @property
    def differing(self) -> list[TurnDiff]:
        return [t for t in self.turns if not t.same]

    def to_dict(self) -> dict:
        return {"cassette": self.cassette, "target": self.target, "turns": [t.to_dict() for t in self.turns]}


def resend(path, conversations=(), against: str | None = None, profile: str | None = None,
           timeout: float = 120.0) -> ResendReport:
    """Send the selected exchanges (whole conversations; all of the capture when none is named) again as
    they were sent, in their order, and compare each generation turn's answer now with the recorded one:
    status, completion ids, logprobs, and the audit's anomaly kinds on either side (each side linked as a
    capture of its own)."""
    sel = read_selection(path, conversations)
    target, pairs = send_again(sel.cassette, against, profile, timeout)
    recorded, now = Linker(keep_tokens=True), Linker(keep_tokens=True)
    turns = []
    for n, (rec, got) in zip(sel.indices, pairs):
        a, b = recorded.add(n, rec), now.add(n, got)
        if a is None:
            continue
        d = TurnDiff(n, rec.path, rec.status, got.status, recorded_anomalies=a[3], now_anomalies=b[3] if b else [])
        if got.status >= 400:
            body = got.response_json()
            e = body.get("error", body.get("detail", body.get("message"))) if isinstance(body, dict) else None
            e = e.get("message") if isinstance(e, dict) else e
            d.error = str(e)[:300] if e is not None else got.response_body[:300].decode("utf-8", "replace")
        x = a[2] if rec.status < 400 else None
        y = b[2] if b is not None and got.status < 400 else None
        if x is not None and y is not None and x.completion_ids is not None and y.completion_ids is not None:
            d.ids_same = x.completion_ids == y.completion_ids
            if x.completion_logprobs and y.completion_logprobs and d.ids_same:
                d.logprob_delta = max(abs(p - q) for p, q in zip(x.completion_logprobs, y.completion_logprobs))
        elif (x is None or x.completion_ids is None) != (y is None or y.completion_ids is None):
            d.ids_same = False
        turns.append(d)
    return ResendReport(str(path), target, turns)


# -- our client driven through the rebuilt conversation --------------------------------------------------

@dataclass
class TurnOutcome:
    index: int
    mode: str | None = None
    fallback_reason: str | None = None
    tokens_dropped: str | None = None
    logprobs_missing: bool | None = None
    routed_experts: list[int] | None = None
    routed_experts_error: str | None = None
    error: str | None = None
    error_message: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    def expectation(self) -> dict:
        """What a regression test pins down (no token counts: those are the cassette's)."""
        return {"mode": self.mode, "fallback_reason": self.fallback_reason,
                "tokens_dropped": self.tokens_dropped is not None, "logprobs_missing": self.logprobs_missing,
                "routed_experts": self.routed_experts, "routed_experts_error": self.routed_experts_error is not None,
                "error": self.error}


@dataclass
class ReproReport:
    cassette: str
    script: Script
    turns: list[TurnOutcome]

    @property
    def differing(self) -> list[TurnOutcome]:
        """Nothing to compare with: the report says what the client did; a regression test pins it."""
        return []

    def to_dict(self) -> dict:
        return {"cassette": self.cassette, "transport": self.script.transport, "route": self.script.tito_route,
                "model": self.script.model, "turns": [t.__dict__ for t in self.turns]}


async def _run(script: Script, base_url: str) -> list[TurnOutcome]:
    config = ClientConfig(base_url=base_url, model=script.model, renderer_transport=script.transport,
                          tito_route=script.tito_route, stream=script.stream, max_retries=0,
                          extra_body=script.extra_body, check_context=False)
    out = []
    async with TitoClient(config) as client:
        convo = client.conversation()
        for k, turn in enumerate(script.turns):
            o = TurnOutcome(k)
            try:
                r = await convo.turn(turn.messages, turn.tools, **turn.sampling)
            except TitoError as exc:
                o.error, o.error_message = type(exc).__name__, str(exc)
                out.append(o)
                break
            o.mode, o.fallback_reason, o.tokens_dropped = r.mode, r.fallback_reason, r.tokens_dropped
            o.logprobs_missing = r.logprobs_missing
            o.routed_experts = list(r.routed_experts.shape) if r.routed_experts is not None else None
            o.routed_experts_error = r.routed_experts_error
            o.prompt_tokens = len(r.prompt_ids) if r.prompt_ids is not None else None
            o.completion_tokens = len(r.completion_ids) if r.completion_ids is not None else None
            out.append(o)
    return out


def repro_cassette(path: str | Path, tokenizer=None) -> ReproReport:
    cassette = Cassette.load(path)
    script = rebuild(cassette, tokenizer)
    from ..serve import AppThread

    with AppThread(create_replay_app(ReplayIndex([cassette]))) as srv:
        turns = asyncio.run(_run(script, f"http://127.0.0.1:{srv.port}/v1"))
    return ReproReport(str(path), script, turns)


def resend_selected(path, conversations=(), against: str | None = None, profile: str | None = None,
                    tokenizer=None) -> ResendReport:
    if against:
        from ..reach import reach

        reach(against, "--against")  # Unreachable, said in one line, before anything is sent
    return resend(path, conversations, against, profile)


def drive_ours(path, conversations=(), against: str | None = None, profile: str | None = None,
               tokenizer=None) -> "ReproReport":
    if conversations or against or profile:
        raise ValueError("--client ours replays the whole cassette through its own replay: "
                         "--conversation, --against and --profile go with --client as-sent")
    return repro_cassette(path, tokenizer)


DRIVERS = {"as-sent": resend_selected, "ours": drive_ours}


def repro(path, client: str = "as-sent", conversations=(), against: str | None = None,
          profile: str | None = None, tokenizer=None):
    """Send a capture again with the named driver (`DRIVERS`): a ResendReport (as-sent) or a ReproReport
    (ours); ValueError for an unknown driver or options it does not take."""
    if client not in DRIVERS:
        raise ValueError(f"no repro driver {client!r}: {', '.join(DRIVERS)}")
    if against and profile:
        raise ValueError("give --against or --profile, not both")
    return DRIVERS[client](path, conversations, against, profile, tokenizer)
