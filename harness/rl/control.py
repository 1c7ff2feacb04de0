"""Driving a deployment's RL control plane from its kind's row (kinds.py): every engine at once.

A deployment is one server root (vLLM, prime-rl's server), or Dynamo's RL discovery listener whose
`GET /v1/rl/workers` lists each worker's system URL; the calls then go to every worker. Every call
has a bounded time; an answer that says it failed raises `ControlError` with the server's words.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import httpx

from ..wire.urls import root_of
from .kinds import Call, Kind

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class ControlError(RuntimeError):
    """An admin call the deployment refused or failed; the message names the call and its answer."""


class Unreachable(ControlError):
    """Nothing answers where the deployment should be."""


@dataclass
class Event:
    """One admin call as it went: when it was sent and answered, and what came back."""

    call: str
    sent: float
    answered: float
    status: int
    answer: object = None

    def to_dict(self) -> dict:
        return {"call": self.call, "sent": round(self.sent, 4), "seconds": round(self.answered - self.sent, 4),
                "status": self.status, "answer": self.answer}


def _on_loopback(url: str, like: str) -> str:
    """A worker's advertised system URL, reached on loopback when the discovery listener is: the real
    frontend names the host's network address, which a local check must not depend on."""
    if urlsplit(like).hostname not in LOOPBACK:
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"127.0.0.1:{parts.port}" if parts.port else "127.0.0.1"))


@dataclass
class ControlPlane:
    kind: Kind
    root: str  # the server root (vLLM, prime-rl) or the frontend (Dynamo)
    discovery_url: str | None = None  # Dynamo: the RL discovery listener (DYN_RL_PORT)
    timeout: float = 300.0  # per call: a pause that waits for a drain can take long
    engines: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    workers: list[dict] = field(default_factory=list)
    engine_urls: list[str] | None = None  # Dynamo: the workers' system URLs to use instead of the advertised ones
    # (e.g. a recording proxy in front of each), in the discovery's order

    def __post_init__(self):
        self.root = root_of(self.root)
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout, connect=10.0))

    async def aclose(self) -> None:
        await self.http.aclose()

    async def discover(self) -> list[str]:
        """The engines to drive: the server itself, or each worker Dynamo's discovery lists."""
        if self.kind.discovery is None:
            self.engines = [self.root]
            return self.engines
        where = root_of(self.discovery_url or self.root) + self.kind.discovery
        try:
            r = await self.http.get(where, timeout=30)
        except httpx.HTTPError as exc:
            raise Unreachable(f"GET {where}: {exc or type(exc).__name__} (is the frontend started with "
                              f"DYN_ENABLE_RL=true and DYN_RL_PORT?)") from None
        body = _json(r)
        if r.status_code != 200 or not isinstance(body, dict) or not isinstance(body.get("workers"), list):
            raise ControlError(f"GET {where} answered {r.status_code}: {r.text[:200]}")
        self.workers = [w for w in body["workers"] if isinstance(w, dict) and w.get("system_url")]
        if not self.workers:
            raise ControlError(f"GET {where} lists no worker with a system_url: {r.text[:200]}")
        self.engines = [_on_loopback(str(w["system_url"]).rstrip("/"), where) for w in self.workers]
        if self.engine_urls:
            if len(self.engine_urls) != len(self.engines):
                raise ControlError(f"{len(self.engine_urls)} --engine-url given for {len(self.engines)} discovered "
                                   f"worker(s) ({', '.join(self.engines)})")
            self.engines = [root_of(u) for u in self.engine_urls]
        return self.engines

    async def call(self, call: Call, label: str | None = None, timeout: float | None = None) -> list[dict | None]:
        """`call` on every engine at once; the answers in engine order."""
        return list(await asyncio.gather(*(self._one(e, call, label, timeout) for e in self.engines)))

    async def _one(self, engine: str, call: Call, label: str | None, timeout: float | None):
        url = engine + call.path
        params = {k: _query_value(v) for k, v in (call.query or {}).items()}
        sent = time.perf_counter()
        try:
            r = await self.http.request(call.method, url, params=params or None, json=call.body,
                                        timeout=timeout or self.timeout)
        except httpx.TimeoutException:
            self.events.append(Event(label or call.path, sent, time.perf_counter(), 0, "timed out"))
            raise ControlError(f"{call.method} {call.path} on {engine}: no answer within {timeout or self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise Unreachable(f"{call.method} {url}: {exc or type(exc).__name__}") from None
        body = _json(r)
        self.events.append(Event(label or call.path, sent, time.perf_counter(), r.status_code,
                                 body if body is not None else r.text[:200]))
        failed = r.status_code >= 400 or (self.kind.status_field is not None and isinstance(body, dict)
                                          and body.get(self.kind.status_field) not in (None, "ok"))
        if failed:
            raise ControlError(f"{call.method} {call.path} on {engine} answered {r.status_code}: {r.text[:300]}")
        return body

    # -- the steps of a weight update, as the kind does them ---------------------------------------
    async def pause(self, mode: str, clear_cache: bool = False) -> float:
        """Pause every engine; the seconds until the last one answered."""
        if mode not in self.kind.modes:
            raise ValueError(f"{self.kind.name} pauses in mode {' or '.join(self.kind.modes)}, not {mode!r}")
        t0 = time.perf_counter()
        await self.call(self.kind.fill(self.kind.pause, mode=mode, clear_cache=clear_cache), f"pause {mode}")
        return time.perf_counter() - t0

    async def resume(self) -> None:
        await self.call(self.kind.resume, "resume")

    async def update_from_dir(self, directory: str, version: str) -> None:
        if not self.kind.update_from_dir:
            raise ValueError(f"{self.kind.name} has no way to load weights from a directory")
        for call in self.kind.update_from_dir:
            await self.call(self.kind.fill(call, dir=directory, version=version), f"update {call.path}")

    async def set_version(self, version: str) -> bool:
        """Tag the weights; False when the kind has no version label."""
        if self.kind.set_version is None:
            return False
        await self.call(self.kind.fill(self.kind.set_version, version=version), "set version")
        return True

    async def versions(self) -> list[str | None] | None:
        """Each engine's reported version label; None when the kind (or this version of it) reports none."""
        if self.kind.get_version is None:
            return None
        try:
            answers = await self.call(self.kind.get_version, "get version", timeout=30)
        except ControlError as exc:
            if " answered 404" in str(exc):  # e.g. vLLM 0.31 has no /weight_info
                return None
            raise
        return [a.get(self.kind.version_field) if isinstance(a, dict) else None for a in answers]

    async def running(self) -> float | None:
        """Requests the engines count in flight (their /metrics gauge), None when not exported."""
        if self.kind.running_metric is None:
            return None
        try:
            r = await self.http.get(self.root + "/metrics", timeout=10)
        except httpx.HTTPError:
            return None
        if r.status_code != 200:
            return None
        return gauge(r.text, self.kind.running_metric)


def gauge(text: str, name: str) -> float | None:
    """The sum of a Prometheus metric's samples over its labels (None when absent)."""
    total, seen = 0.0, False
    for line in text.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " "):
            try:
                total += float(line.rsplit(" ", 1)[1])
                seen = True
            except ValueError:
                continue
    return total if seen else None


def _query_value(v) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def _json(r: httpx.Response):
    try:
        return r.json()
    except ValueError:
        return None
