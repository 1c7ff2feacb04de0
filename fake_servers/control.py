"""The fake engine's RL state: its policy and weight version, pause and resume, the requests in flight.

Every answer runs through `Control.run` once its samples are drawn: it admits the request (the capacity
model's `max_num_seqs`), holds it while the engine is paused, paces it token by token, and when a pause or
an abort cuts it, or new weights arrive while it is frozen, gives back the samples as the client gets them:
cut after the tokens it had (`finish_reason` as the profile's control plane says), or continued under the
new policy from the position where the policy changed (one completion, two policies, `versions` spans).

Nothing here depends on time to decide what happens: tests keep requests in flight with the fake's own
control (`hold_after`: every request stops after N tokens until released) and count tokens and states.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import itertools
import os

import orjson

from harness.wire.control_plane import DYNAMO_WORDS, VLLM_WORDS, ControlPlane

from . import errors
from .base import Answered

from .capacity import Capacity
from .engine import FakeEngine, Generation, SamplingParams

MAX_DIR_FILES = 256  # files of a weights directory read to derive its policy (bounded work)
MAX_FILE_BYTES = 65536  # bytes read from each


def policy_of_dir(path: str) -> str:
    """A policy derived from a directory's path and contents (names, sizes, each file's first bytes): two
    checkpoints differ when their files do, and CI needs no weights."""
    h = hashlib.blake2b(digest_size=8)
    h.update(os.path.abspath(path).encode())
    with os.scandir(path) as it:
        entries = sorted(it, key=lambda e: e.name)[:MAX_DIR_FILES]
    for e in entries:
        h.update(e.name.encode())
        if e.is_file():
            h.update(str(e.stat().st_size).encode())
            with open(e.path, "rb") as f:
                h.update(f.read(MAX_FILE_BYTES))
    return h.hexdigest()


def policy_after(previous: str, payload) -> str:
    """The policy after a streamed (distributed or tensor) update: the weights come over another channel, so
    each update makes a new policy, deterministically from the one before and the update's own fields."""
    return hashlib.blake2b(previous.encode() + orjson.dumps(payload, option=orjson.OPT_SORT_KEYS, default=str),
                           digest_size=8).hexdigest()


@dataclasses.dataclass(eq=False)
class Flight:
    """One request between admission and its answer."""

    id: str
    prompt_len: int
    total: int  # the tokens it will generate (the longest choice)
    policy: str
    version: str | None
    lora: str | None = None
    tokens: int = 0
    state: str = "admitted"  # held (sent while paused) | waiting (no free seq) | running | frozen | done
    abort: bool = False
    kick: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    switches: list = dataclasses.field(default_factory=list)  # (position, policy, version) after a keep pause

    def describe(self) -> dict:
        return {"id": self.id, "tokens": self.tokens, "of": self.total, "state": self.state, "policy": self.policy,
                "version": self.version, "lora": self.lora}


class Control:
    """The RL state of one fake engine. `plane` is None when the control plane is off (the data plane still
    counts requests for /metrics, and nothing else)."""

    def __init__(self, engine: FakeEngine, plane: ControlPlane | None, capacity: Capacity):
        self.engine = engine
        self.plane = plane
        self.capacity = capacity
        self.policy = ""  # the base weights ("" leaves the engine's answers as they are without a control plane)
        self.version = plane.initial_version if plane else None
        self.paused = False
        self.mode: str | None = None
        self.sleeping = 0  # vLLM sleep level (0: awake)
        self.flights: dict[int, Flight] = {}
        self.hold_after: int | None = None  # the fake's own control: requests stop after N tokens until released
        self.loras: dict[str, tuple[str, str, int]] = {}  # name -> (path, policy, id)
        self.lora_ids = itertools.count(1)
        self.lora_active: dict[str, int] = {}
        self.updates = 0  # weight updates applied
        self.lora_plane: ControlPlane | None = None  # vLLM's runtime LoRA routes, when on beside the plane
        self.dead = False  # a failed reload left the engine dead: answers fail as the recorded server's did
        self.weight_transfer = False  # vLLM: started with a weight_transfer_config (the recorded CPU servers were not)
        self.caches: list = [capacity.prefix]  # prefix caches a clear/flush resets
        self._ids = itertools.count()
        self.system_port: int | None = None  # Dynamo: the worker's system server, once bound
        self.rl_port: int | None = None  # Dynamo: the frontend's RL discovery listener, once bound

    # -- the fake's own controls ---------------------------------------------------------------
    def set_hold(self, after: int | None) -> None:
        self.hold_after = after
        self._kick_all()

    def describe(self) -> dict:
        return {"plane": self.plane.name if self.plane else None, "paused": self.paused, "mode": self.mode,
                "version": self.version, "policy": self.policy, "updates": self.updates,
                "hold_after": self.hold_after, "loras": sorted(self.loras),
                "flights": [f.describe() for f in self.flights.values()]}

    def _kick_all(self) -> None:
        for f in self.flights.values():
            f.kick.set()

    # -- pause, resume, abort ------------------------------------------------------------------
    def running(self) -> list[Flight]:
        return [f for f in self.flights.values() if f.state in ("running", "frozen")]

    async def pause(self, mode: str, clear_cache: bool, never_drains: bool = False) -> None:
        self.paused, self.mode = True, mode
        if mode == "abort":
            for f in self.running():
                f.abort = True
        self._kick_all()
        if mode in ("abort", "wait"):
            while self.running() or never_drains:
                await self._changed()
                if never_drains and not self.paused:  # resumed: the pause gives up
                    return
        if clear_cache and mode != "keep":
            self.clear_caches()

    async def _changed(self) -> None:
        """Wait until a flight ends or the control state changes."""
        ev = self._change = getattr(self, "_change", None) or asyncio.Event()
        ev.clear()
        await ev.wait()

    def _signal(self) -> None:
        ev = getattr(self, "_change", None)
        if ev is not None:
            ev.set()

    def resume(self) -> None:
        self.paused, self.mode = False, None
        self._kick_all()
        self._signal()

    def abort(self, ids: list[str] | None) -> int:
        """Abort the flights named (all in flight when None); how many."""
        hit = [f for f in self.flights.values() if f.state != "done" and (ids is None or f.id in ids)]
        for f in hit:
            f.abort = True
            f.kick.set()
        return len(ids) if ids else len(hit)

    def clear_caches(self) -> None:
        for c in self.caches:
            c.clear()

    # -- weights and versions ------------------------------------------------------------------
    def set_policy(self, policy: str) -> None:
        """New weights: frozen flights continue under them after resume."""
        self.policy = policy
        self.updates += 1

    def set_version(self, version) -> None:
        self.version = version

    def lora_policy(self, name: str | None) -> str | None:
        hit = self.loras.get(name) if name else None
        return hit[1] if hit else None

    # -- a request's run -------------------------------------------------------------------------
    def _blocked(self, f: Flight) -> bool:
        if f.abort:
            return False
        if self.paused and self.mode == "keep":
            return True
        return self.hold_after is not None and f.tokens >= self.hold_after and f.tokens < f.total

    async def run(self, rid: str | None, prompt_ids: list[int], gens: list[Generation], params: SamplingParams,
                  lora: str | None = None, paced: bool = True) -> list[Generation]:
        """The samples as the client gets them (see the module's docstring). `paced`: this run paces the tokens
        (ttft, per_token); otherwise the caller does, as without a control plane."""
        cfg = self.engine.config
        if self.plane is None and self.hold_after is None:
            await self.capacity.admit()
            self.capacity.start(len(prompt_ids), prompt_ids)
            try:
                if paced:
                    delay = cfg.ttft + cfg.per_token * max(len(g.token_ids) for g in gens)
                    if delay:
                        await asyncio.sleep(delay)
            finally:
                self.capacity.release()
                self.capacity.finish(len(prompt_ids), max(len(g.token_ids) for g in gens), "stop")
            return gens
        if self.paused and self.plane is not None and self.mode in self.plane.refused_while_paused:
            raise Answered(errors.vllm_error(503, VLLM_WORDS["paused"], "ServiceUnavailableError"))
        total = max(len(g.token_ids) for g in gens)
        policy = self.lora_policy(lora) or self.policy
        f = Flight(rid or f"fake-{next(self._ids)}", len(prompt_ids), total, policy, self.version, lora)
        key = id(f)
        self.flights[key] = f
        if lora:
            self.lora_active[lora] = self.lora_active.get(lora, 0) + 1
        seated = started = False
        try:
            if self.paused and self.plane is not None and self.plane.held_while_paused:
                f.state = "held"
                while self.paused:
                    f.kick.clear()
                    await f.kick.wait()
            f.state = "waiting"
            await self.capacity.admit()
            seated = True
            f.state = "running"
            self.capacity.start(len(prompt_ids), prompt_ids, f)
            started = True
            now = self.lora_policy(lora) or self.policy
            if now != f.policy:  # new weights while it was held: all its tokens come from them
                f.switches.append((0, now, self.version))
                f.policy = now
            if paced and cfg.ttft:
                await asyncio.sleep(cfg.ttft)
            if not (paced and cfg.per_token) and self.hold_after is None and not self.paused and not f.abort:
                f.tokens = total  # (nothing awaits between tokens: no pause can land inside this answer)
            while f.tokens < total and not f.abort:
                f.tokens += 1
                if f.tokens == total:
                    break
                while self._blocked(f):
                    f.state = "frozen" if self.paused and self.mode == "keep" else "running"
                    f.kick.clear()
                    await f.kick.wait()
                    f.state = "running"
                    now = self.lora_policy(lora) or self.policy
                    if now != f.policy:
                        f.switches.append((f.tokens, now, self.version))
                        f.policy = now
                if paced and cfg.per_token:
                    await asyncio.sleep(cfg.per_token)
        except BaseException:  # the client went away (or the server stops): the engine aborts it
            if started:
                self.capacity.finish(len(prompt_ids), f.tokens, "abort", f)
            raise
        finally:
            f.state = "done"
            del self.flights[key]
            if seated:
                self.capacity.release()
            if lora:
                self.lora_active[lora] -= 1
                if not self.lora_active[lora]:
                    del self.lora_active[lora]
            self._signal()
        out = [self._continued(prompt_ids, g, params, f) for g in gens] if f.switches else gens
        if f.abort:
            out = [self._cut(g, f.tokens) for g in out]
        self.capacity.finish(len(prompt_ids), max(len(g.token_ids) for g in out),
                             out[0].finish_reason if out else "stop", f)
        return out

    def _cut(self, gen: Generation, k: int) -> Generation:
        if len(gen.token_ids) <= k and gen.finish_reason != "length":
            return gen
        ids = gen.token_ids[:k]
        body = ids[:-1] if ids and ids[-1] == self.engine.eos_id else ids
        versions = tuple((v, s, min(e, k)) for v, s, e in gen.versions if s < k)
        return dataclasses.replace(gen, token_ids=ids, text=self.engine.decode(body, skip_special_tokens=True),
                                   finish_reason=self.plane.abort_finish if self.plane else "abort",
                                   stop_reason=None, logprobs=gen.logprobs[:k], top_logprobs=gen.top_logprobs[:k],
                                   ranks=gen.ranks[:k], versions=versions, derived={},
                                   routed_experts=None if gen.routed_experts is None else
                                   gen.routed_experts[:len(gen.routed_experts) - len(gen.token_ids) + k])

    def _continued(self, prompt_ids: list[int], gen: Generation, params: SamplingParams, f: Flight) -> Generation:
        """`gen` with its tokens from each switch on drawn by the policy that took over there."""
        start_version = f.version
        spans, cur = [], gen
        at = 0
        for pos, policy, version in f.switches:
            if pos >= len(cur.token_ids) and cur.finish_reason != "length":
                break
            prefix = cur.token_ids[:pos]
            budget = None if params.max_tokens is None else max(1, params.max_tokens - pos)
            cont = self.engine.generate(list(prompt_ids) + prefix, dataclasses.replace(params, max_tokens=budget),
                                        policy=policy)
            spans.append((start_version, at, pos))
            start_version, at = version, pos
            ids = prefix + cont.token_ids
            body = ids[:-1] if ids and ids[-1] == self.engine.eos_id else ids
            cur = dataclasses.replace(
                cont, token_ids=ids, text=self.engine.decode(body, skip_special_tokens=True),
                logprobs=cur.logprobs[:pos] + cont.logprobs, top_logprobs=cur.top_logprobs[:pos] + cont.top_logprobs,
                ranks=cur.ranks[:pos] + cont.ranks, derived={})
        spans.append((start_version, at, len(cur.token_ids)))
        return dataclasses.replace(cur, versions=tuple(s for s in spans if s[2] > s[1]), derived={})

    def _dead_answer(self):
        if self.plane is not None and self.plane.style == "dynamo_engine":
            return errors.dynamo_error(503, DYNAMO_WORDS["worker_broken"])
        return errors.vllm_error(500, VLLM_WORDS["engine_dead"], "InternalServerError")

    # -- what the handlers call ---------------------------------------------------------------------
    def policy_for(self, model: str | None) -> str:
        """The policy answering a request for `model` (a LoRA adapter's name, or the base model)."""
        return self.lora_policy(model) or self.policy

    async def flow(self, request, body: dict, prompt_ids: list[int], gens: list[Generation], params: SamplingParams,
                   streamed: bool = False) -> tuple[list[Generation], bool]:
        """`run` for a handler: the samples as the client gets them, and whether a stream still paces itself
        (without a control plane the stream keeps pacing its chunks as it always did)."""
        if self.dead:
            raise Answered(self._dead_answer())
        paced = not streamed or self.plane is not None or self.hold_after is not None
        rid = request.headers.get("X-Request-Id") or body.get("request_id")
        model = body.get("model")
        lora = model if isinstance(model, str) and model in self.loras else None
        gens = await self.run(rid if isinstance(rid, str) else None, prompt_ids, gens, params, lora, paced)
        return gens, not paced
