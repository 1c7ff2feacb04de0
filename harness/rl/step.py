"""`harness rl-step`: one RL training step's weight sync against a deployment, checked against what its
kind promises (kinds.py).

N rollouts run their first turn; their second turn is long, and while it is in flight the engines are
paused in the chosen mode. A request sent while paused tells whether it is held. The weights are then
loaded from a directory (or only the version label changes), the engines resume, cut turns are sent
again (as an orchestrator retries them), and the rollouts run their remaining turns. The same seeded
probe before and after tells whether the new weights answer differently.

The report counts what happened to the in-flight turns (aborted, kept, finished), the drain time, the
versions each turn was sampled under (from the answer's `weight_versions` where the server names them,
else from when the turn ran against the control-plane events) and the turns sampled under two versions.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import httpx

from ..client import ClientConfig, TitoClient
from .control import ControlPlane
from .kinds import Kind

PROMPT = "Count slowly from one to one hundred, one number per line."
NEXT = "Go on."
PROBE = [{"role": "user", "content": "Name three prime numbers."}]
SLACK = 0.05  # seconds between a turn's end and the pause's answer still counted as "before it"


@dataclass
class StepConfig:
    base_url: str
    model: str
    kind: Kind
    rollouts: int = 4
    turns: int = 3  # per rollout; the second is the one in flight at the pause
    mode: str = "keep"
    clear_cache: bool = False
    weights: str | None = None  # a model directory to load; None: only the version label changes
    version: str = "step-1"
    discovery_url: str | None = None  # Dynamo's RL discovery listener
    engine_urls: list[str] | None = None  # Dynamo: the workers' system URLs to use instead of the advertised ones
    inflight_tokens: int = 256  # the in-flight turn's length
    turn_tokens: int = 16
    settle: float = 10.0  # longest wait for the engines to count the in-flight turns
    timeout: float = 300.0
    seed: int = 0


@dataclass
class Turn:
    rollout: int
    index: int
    started: float
    ended: float
    finish_reason: str | None
    tokens: int
    versions: list[str]
    source: str  # where the versions come from: "answer" | "control-plane"
    switch_at: int | None = None  # completion token where the version changed (answer spans)
    retry_of: int | None = None  # the turn this one sends again (cut by the pause)
    phase: str = ""  # "before" | "in flight" | "after"

    def to_dict(self) -> dict:
        return {"rollout": self.rollout, "turn": self.index, "phase": self.phase, "finish_reason": self.finish_reason,
                "tokens": self.tokens, "versions": self.versions, "version_source": self.source,
                "switch_at": self.switch_at, "retry_of": self.retry_of,
                "seconds": round(self.ended - self.started, 3)}


@dataclass
class Check:
    promise: str
    ok: bool
    detail: str = ""

    def to_dict(self) -> dict:
        return {"promise": self.promise, "ok": self.ok, "detail": self.detail}


@dataclass
class StepReport:
    kind: str
    base_url: str
    engines: list[str]
    mode: str
    rollouts: int
    in_flight_at_pause: int = 0
    pause_seconds: float = 0.0  # until the pause call answered
    drain_seconds: float | None = None  # until the last in-flight turn ended, while paused
    aborted: int = 0
    kept: int = 0
    finished_while_pausing: int = 0  # ended normally before the pause answered (a wait pause drains them)
    ended_after_pause_answered: int = 0  # ended normally while paused, after the pause had answered
    retried: int = 0
    paused_request: str | None = None  # what a request sent while paused got: held | answered | refused
    version_before: str | None = None
    version_after: str | None = None
    reported_versions: list | None = None
    answers_differ: bool | None = None
    turns: list[Turn] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def off_policy(self) -> list[Turn]:
        return [t for t in self.turns if len(t.versions) > 1]

    def versions_per_turn(self) -> dict[str, list[str]]:
        out: dict[str, set] = {}
        for t in self.turns:
            out.setdefault(str(t.index + 1), set()).update(t.versions)
        return {k: sorted(v) for k, v in sorted(out.items())}

    def to_dict(self) -> dict:
        return {"kind": self.kind, "base_url": self.base_url, "engines": self.engines, "mode": self.mode,
                "rollouts": self.rollouts, "ok": self.ok, "in_flight_at_pause": self.in_flight_at_pause,
                "pause_seconds": round(self.pause_seconds, 3),
                "drain_seconds": None if self.drain_seconds is None else round(self.drain_seconds, 3),
                "aborted": self.aborted, "kept": self.kept, "finished_while_pausing": self.finished_while_pausing,
                "ended_after_pause_answered": self.ended_after_pause_answered,
                "retried": self.retried, "paused_request": self.paused_request,
                "version_before": self.version_before, "version_after": self.version_after,
                "reported_versions": self.reported_versions, "answers_differ": self.answers_differ,
                "versions_per_turn": self.versions_per_turn(), "off_policy_turns": len(self.off_policy),
                "turns": [t.to_dict() for t in self.turns], "checks": [c.to_dict() for c in self.checks],
                "events": self.events, "notes": self.notes}


class _Answers:
    """The last answer body of one rollout's client (one turn in flight at a time per client)."""

    def __init__(self):
        self.body: dict | None = None

    async def hook(self, response: httpx.Response) -> None:
        await response.aread()
        try:
            body = json.loads(response.content)
        except ValueError:
            body = None
        if isinstance(body, dict) and (body.get("choices") or body.get("token_ids") is not None):
            self.body = body

    def spans(self) -> list[dict] | None:
        choice = ((self.body or {}).get("choices") or [{}])[0]
        spans = choice.get("weight_versions") if isinstance(choice, dict) else None
        return spans if isinstance(spans, list) and spans else None


class _Rollout:
    def __init__(self, number: int, cfg: StepConfig, tokenizer, tags: dict):
        self.number, self.cfg = number, cfg
        self.answers = _Answers()
        self.tags = tags
        self.http = httpx.AsyncClient(timeout=cfg.timeout, event_hooks={"response": [self.answers.hook]})
        config = ClientConfig(base_url=cfg.base_url, model=cfg.model, renderer_transport=cfg.kind.transport,
                              tokenizer=tokenizer, timeout=cfg.timeout, max_retries=0, parity_policy="off")
        self.client = TitoClient(config, self.http)
        self.convo = self.client.conversation()
        self.messages = [{"role": "user", "content": PROMPT}]

    async def turn(self, index: int, max_tokens: int, version: str | None, retry_of: int | None = None):
        extra = {**self.cfg.kind.asks_versions, "ignore_eos": True,
                 **{k: version for k in self.tags if version is not None}}
        t0 = time.perf_counter()
        result = await self.convo.turn(self.messages, max_tokens=max_tokens, seed=self.cfg.seed + self.number,
                                       extra_body=extra)
        ended = time.perf_counter()
        return result, t0, ended, self.answers.spans()

    def advance(self, result) -> None:
        self.messages = [*self.messages, result.message, {"role": "user", "content": NEXT}]

    async def aclose(self) -> None:
        await self.client.aclose()


async def _probe(cfg: StepConfig, tokenizer, retries: int = 1) -> tuple | None:
    """The same seeded, greedy question: its completion ids and their logprobs to 4 places (None when it failed).
    Logprobs tell two policies apart where the ids do not: a small model's greedy answer can be the same
    tokens under both weights, with other probabilities."""
    config = ClientConfig(base_url=cfg.base_url, model=cfg.model, renderer_transport=cfg.kind.transport,
                          tokenizer=tokenizer, timeout=cfg.timeout, max_retries=retries, parity_policy="off")
    async with TitoClient(config) as client:
        r = await client.chat(PROBE, max_tokens=cfg.turn_tokens, temperature=0.0, seed=cfg.seed)
    logprobs = tuple(round(x, 4) for x in r.completion_logprobs or ())
    return None if r.completion_ids is None else (tuple(r.completion_ids), logprobs)


def _one(values: list | None) -> str | None:
    """The version every engine reports (the first one when they disagree)."""
    return None if not values else values[0]


async def run_step(cfg: StepConfig, tokenizer=None) -> StepReport:
    """Run the step; the control plane's refusals raise ControlError, an unreachable one Unreachable."""
    if cfg.mode not in cfg.kind.modes:
        raise ValueError(f"{cfg.kind.name} pauses in mode {' or '.join(cfg.kind.modes)}, not {cfg.mode!r}")
    if cfg.rollouts < 1 or cfg.turns < 2:
        raise ValueError("rl-step needs at least 1 rollout and 2 turns (the second is in flight at the pause)")
    if tokenizer is None:
        from ..tokenizer import load_tokenizer

        tokenizer = await asyncio.to_thread(load_tokenizer, None, "chatml")
    plane = ControlPlane(cfg.kind, cfg.base_url, cfg.discovery_url, cfg.timeout, engine_urls=cfg.engine_urls)
    report = StepReport(cfg.kind.name, cfg.base_url, [], cfg.mode, cfg.rollouts)
    rollouts: list[_Rollout] = []
    tasks: list[asyncio.Task] = []  # what is in flight, ended whatever way the step ends
    try:
        report.engines = await plane.discover()
        report.version_before = _one(await plane.versions())
        before = report.version_before or "v0"
        after = cfg.version
        probe_before = await _probe(cfg, tokenizer)
        rollouts = [_Rollout(k, cfg, tokenizer, cfg.kind.tags) for k in range(cfg.rollouts)]
        first = await asyncio.gather(*(r.turn(0, cfg.turn_tokens, before) for r in rollouts))
        for r, (res, t0, t1, spans) in zip(rollouts, first):
            report.turns.append(_turn(r.number, 0, res, t0, t1, spans, before, None, None, "before"))
            r.advance(res)
        # the long turn, in flight when the engines pause
        flying = [asyncio.create_task(r.turn(1, cfg.inflight_tokens, before)) for r in rollouts]
        tasks += flying
        await _in_flight(plane, flying, cfg)
        report.in_flight_at_pause = sum(not f.done() for f in flying)
        paused_at = time.perf_counter()
        report.pause_seconds = await plane.pause(cfg.mode, cfg.clear_cache)
        while_paused = asyncio.create_task(_probe(cfg, tokenizer, retries=0))
        tasks.append(while_paused)
        await asyncio.sleep(0)
        if cfg.mode != "keep":  # abort and wait: the engines drain before the update
            await asyncio.wait(flying, timeout=cfg.timeout)
            ends = [f.result()[2] for f in flying if f.done() and not f.exception()]
            report.drain_seconds = (max(ends) - paused_at) if ends else 0.0
        if cfg.weights:
            await plane.update_from_dir(cfg.weights, after)
        await plane.set_version(after)
        report.reported_versions = await plane.versions()
        report.version_after = _one(report.reported_versions)
        report.paused_request = "answered" if while_paused.done() and not while_paused.exception() else (
            "refused" if while_paused.done() else "held")
        resumed_at = time.perf_counter()
        await plane.resume()
        try:
            await asyncio.wait_for(while_paused, cfg.timeout)
        except Exception as exc:  # a refusal is what the deployment did, not an error of the step
            report.paused_request = "refused"
            report.notes.append(f"the request sent while paused failed: {str(exc)[:160]}")
        window = (paused_at, resumed_at)
        retry: list[_Rollout] = []
        for r, f in zip(rollouts, flying):
            res, t0, t1, spans = await f
            t = _turn(r.number, 1, res, t0, t1, spans, before, after, window, "in flight")
            report.turns.append(t)
            cut = t1 < resumed_at and res.finish_reason == cfg.kind.abort_finish and t.tokens < cfg.inflight_tokens
            if t1 >= resumed_at:
                report.kept += 1
            elif cut:
                report.aborted += 1
                retry.append(r)
                continue
            elif t1 > paused_at + report.pause_seconds + SLACK:
                report.ended_after_pause_answered += 1
            else:
                report.finished_while_pausing += 1
            r.advance(res)
        for r, (res, t0, t1, spans) in zip(retry, await asyncio.gather(
                *(r.turn(1, cfg.turn_tokens, after) for r in retry))):
            report.turns.append(_turn(r.number, 1, res, t0, t1, spans, after, None, None, "after", retry_of=1))
            r.advance(res)
        report.retried = len(retry)
        for k in range(2, cfg.turns):
            done = await asyncio.gather(*(r.turn(k, cfg.turn_tokens, after) for r in rollouts))
            for r, (res, t0, t1, spans) in zip(rollouts, done):
                report.turns.append(_turn(r.number, k, res, t0, t1, spans, after, None, None, "after"))
                r.advance(res)
        probe_after = await _probe(cfg, tokenizer)
        if probe_before is not None and probe_after is not None:
            report.answers_differ = probe_before != probe_after
    finally:
        for t in tasks:  # a refused update leaves turns in flight: end them, and take their errors
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for r in rollouts:
            await r.aclose()
        report.events = [e.to_dict() for e in plane.events]
        await plane.aclose()
    report.checks = promises(cfg, report)
    return report


async def _in_flight(plane: ControlPlane, flying: list, cfg: StepConfig) -> None:
    """Until the engines count every in-flight turn as running (their /metrics), at most `settle` s;
    without the gauge, a short fixed wait."""
    deadline = time.perf_counter() + cfg.settle
    while time.perf_counter() < deadline and not all(f.done() for f in flying):
        running = await plane.running()
        if running is None:
            await asyncio.sleep(min(0.5, cfg.settle))
            return
        if running >= sum(not f.done() for f in flying):
            return
        await asyncio.sleep(0.02)


def _turn(rollout, index, res, t0, t1, spans, before, after, window, phase, retry_of=None) -> Turn:
    tokens = len(res.completion_ids or [])
    if spans:
        versions = list(dict.fromkeys(str(s.get("version")) for s in spans if isinstance(s, dict)))
        switch = next((s.get("start") for s in spans[1:] if isinstance(s, dict)), None)
        return Turn(rollout, index, t0, t1, res.finish_reason, tokens, versions, "answer", switch, retry_of, phase)
    if window is not None and t1 >= window[1]:  # kept across the update: sampled before and after it
        versions = [before, after] if after != before else [before]
    else:
        versions = [before]
    return Turn(rollout, index, t0, t1, res.finish_reason, tokens, versions, "control-plane", None, retry_of, phase)


def promises(cfg: StepConfig, report: StepReport) -> list[Check]:
    """What the deployment's kind promises for this step, each held against what happened."""
    kind, n = cfg.kind, report.in_flight_at_pause
    checks = [Check("turns in flight at the pause", n > 0,
                    f"{n} of {cfg.rollouts}" + ("" if n else ": every turn ended first; raise --inflight-tokens"))]
    if cfg.mode == "abort":
        checks.append(Check(f"an abort pause cuts every in-flight turn (finish_reason {kind.abort_finish!r})",
                            report.aborted == n, f"{report.aborted} cut, {report.kept} kept, "
                            f"{report.finished_while_pausing + report.ended_after_pause_answered} finished"))
    elif cfg.mode == "wait":
        checks.append(Check("a wait pause answers once the in-flight turns have finished",
                            report.finished_while_pausing == n, f"{report.finished_while_pausing} finished first, "
                            f"{report.ended_after_pause_answered} after the pause answered, {report.aborted} cut, "
                            f"{report.kept} only after resume"))
    else:
        checks.append(Check("a keep pause freezes the in-flight turns and finishes them after resume",
                            report.kept == n, f"{report.kept} kept, {report.aborted} cut, "
                            f"{report.finished_while_pausing + report.ended_after_pause_answered} finished while paused"))
    want = kind.paused_requests[cfg.mode]
    checks.append(Check(f"a request sent while paused is {want}", report.paused_request == want,
                        f"it was {report.paused_request}"))
    if report.reported_versions is not None:
        checks.append(Check("every engine reports the new version label",
                            all(v == cfg.version for v in report.reported_versions),
                            f"reported {report.reported_versions}, tagged {cfg.version!r}"))
    if cfg.weights:
        checks.append(Check("the new weights answer differently", report.answers_differ is True,
                            "the same seeded probe got " + ("different" if report.answers_differ else "the same")
                            + " completion ids and logprobs before and after"))
    spans = [t for t in report.turns if t.source == "answer" and t.phase == "in flight" and t.index == 1]
    if spans and cfg.mode == "keep":
        two = sum(len(t.versions) > 1 for t in spans)
        checks.append(Check("answers name both versions of a turn kept across the update", two == report.kept,
                            f"{two} of {report.kept} kept turns name two versions"))
    return checks
