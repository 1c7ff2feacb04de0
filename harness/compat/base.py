"""What a compatibility-matrix client adapter is: one fixed scenario, driven through a real client
package's own public API against one server, ending in pass, fail (the client's own first error,
one line) or not applicable (the client does not speak that server).

The scenario: a single turn whose completion ids and logprobs must equal what the server answered
(captured on the wire, beside the client); a multi-turn tool-using rollout where the client
stitches; routed experts decoded where the client supports them (the fakes run with `--moe`).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import httpx

from ..wire.urls import root_of
from ..rollout import FINAL, QUESTION, SYSTEM, TOOL_RESULTS, TOOLS

PASS, FAIL, NA, MISSING = "pass", "fail", "n/a", "not installed"
CONVERSATION = {"system": SYSTEM, "question": QUESTION, "tools": TOOLS, "tool_results": TOOL_RESULTS, "final": FINAL}


@dataclass
class Target:
    """Where a client runs: a server's base URL, its kind, and (for fakes) its profile."""

    base_url: str
    model: str
    server: str  # "vllm" | "dynamo"
    profile: object = None  # harness.wire.profiles.Profile, None for a live deployment or a replay
    label: str = "live"
    moe: bool = False

    @property
    def root_url(self) -> str:
        return root_of(self.base_url)

    _probed: dict = field(default_factory=dict, repr=False)

    def serves(self, route: str) -> bool:
        """Whether the server has a route: the profile says so for a fake; a live server is asked
        once (an empty POST: a missing route answers 404 "Not Found" / "Route not found")."""
        if self.profile is not None:
            return self.profile.serves(route)
        if route not in self._probed:
            from harness.wire.profiles import ROUTES

            try:
                r = httpx.post(self.root_url + ROUTES[route][1], json={}, timeout=30)
                text = r.text.lower()
                self._probed[route] = not (r.status_code == 404 and ("not found" in text and "model" not in text))
            except httpx.HTTPError:
                self._probed[route] = False
        return self._probed[route]


@dataclass
class Cell:
    client: str
    target: str
    status: str
    detail: str = ""

    def to_dict(self) -> dict:
        return {"client": self.client, "target": self.target, "status": self.status, "detail": self.detail}


class ScenarioFailed(AssertionError):
    """The client ran but its answer disagrees with the server's (the message says how)."""


@dataclass
class Wire:
    """Every answer the server sent during a scenario, captured beside the client."""

    answers: list[tuple[str, int, dict | None]] = field(default_factory=list)  # (path, status, body)

    async def hook(self, response: httpx.Response) -> None:
        await response.aread()
        try:
            body = json.loads(response.content) if response.content[:1] == b"{" else None
        except ValueError:
            body = None
        self.answers.append((response.request.url.path, response.status_code, body))

    def client(self, **kw) -> httpx.AsyncClient:
        return httpx.AsyncClient(event_hooks={"response": [self.hook]}, timeout=60, **kw)

    def last(self, *paths: str) -> dict:
        for path, status, body in reversed(self.answers):
            if status == 200 and body is not None and (not paths or path in paths):
                return body
        raise ScenarioFailed(f"no answer from {' or '.join(paths) or 'the server'} was captured")

    def paths(self) -> list[str]:
        return [p for p, _, _ in self.answers]


def engine_tokens(body: dict) -> tuple[list[int], list[float] | None]:
    """(completion ids, logprobs) as the server's answer carries them, in any shape."""
    choice = (body.get("choices") or [{}])[0]
    ed = (body.get("nvext") or {}).get("engine_data") or {}
    ids = ed.get("completion_token_ids") or (body.get("nvext") or {}).get("completion_token_ids") or choice.get("token_ids")
    lps = ed.get("completion_logprobs")
    if lps is None and isinstance(choice.get("logprobs"), dict) and choice["logprobs"].get("content") is not None:
        lps = [e["logprob"] for e in choice["logprobs"]["content"]]
    return list(ids or []), lps


def check_tokens(client_ids, client_lps, body: dict) -> None:
    ids, lps = engine_tokens(body)
    if not client_ids:
        raise ScenarioFailed("the client returned no completion ids")
    if list(client_ids) != ids:
        raise ScenarioFailed(f"completion ids differ from the server's: {list(client_ids)[:6]}... vs {ids[:6]}...")
    if lps is None:
        raise ScenarioFailed("the server sent no logprobs")
    if client_lps is None or [round(float(x), 5) for x in client_lps] != [round(float(x), 5) for x in lps]:
        raise ScenarioFailed(f"logprobs differ from the server's ({len(client_lps or [])} vs {len(lps)})")


def check_stitched(turns: list[tuple[list[int], list[int]]]) -> None:
    """Each later prompt starts with the previous prompt + completion ids, byte-exact."""
    for k, ((p0, c0), (p1, _)) in enumerate(zip(turns, turns[1:]), 2):
        head = list(p0) + list(c0)
        if list(p1[: len(head)]) != head:
            raise ScenarioFailed(f"turn {k}'s prompt does not start with turn {k - 1}'s prompt + completion ids")


class Adapter(ABC):
    name: str = "client"
    package: str | None = None  # the PyPI distribution the adapter drives (None: this project)

    def available(self) -> str | None:
        """None when the client's package imports; else why not (reported, never dropped)."""
        import importlib.util

        if self.package is None or importlib.util.find_spec(self.package):
            return None
        return f"{self.package} is not installed (pip install 'tito-harness[compat]')"

    @abstractmethod
    def applies(self, target: Target) -> str | None:
        """None when the client speaks this server; else why not."""

    @abstractmethod
    async def run(self, target: Target) -> None:
        """The scenario; raises (the client's own error, or ScenarioFailed) on failure."""


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[0] if text else ""
    cause = exc.__cause__ or exc.__context__
    if not msg and cause is not None:
        return first_line(cause)
    return f"{type(exc).__name__}: {msg}"[:240]
