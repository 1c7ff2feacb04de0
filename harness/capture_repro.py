"""Reproduce a capture of any client's traffic, and pin it as a test.

`resend` sends each recorded request again, exactly as the client sent it (retries included), to a
server: the capture's own replay (does it replay faithfully?), a fake of a profile, or a live server.
Per turn it reports recorded against now: status, completion ids, logprobs, the audit's anomalies.

`CaptureServer` serves a capture to whatever client a test runs: requests the capture holds get their
recorded answers byte for byte; any other request (a client that now behaves differently, e.g. stitches
where it fell back) is answered by a fake of the capture's profile. It keeps the traffic it saw, so a
test audits what the client sent. `emit_test` writes such a test.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from .captures import Linker, conversation_exchanges
from .recording.format import Cassette, Interaction, read_meta
from .recording.inspect import turn_kind, turn_tokens
from .wire.urls import root_of

HOP = {"host", "content-length", "transfer-encoding", "connection", "accept-encoding"}


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


def _error_message(i: Interaction) -> str | None:
    if i.status < 400:
        return None
    body = i.response_json()
    if isinstance(body, dict):
        e = body.get("error", body.get("detail", body.get("message")))
        if isinstance(e, dict):
            e = e.get("message")
        if e is not None:
            return str(e)[:300]
    return i.response_body[:300].decode("utf-8", "replace")


def _compare(n: int, rec: Interaction, now: Interaction, rec_kinds: list[str], now_kinds: list[str]) -> TurnDiff:
    d = TurnDiff(n, rec.path, rec.status, now.status, recorded_anomalies=rec_kinds, now_anomalies=now_kinds,
                 error=_error_message(now))
    a = turn_tokens(rec) if rec.status < 400 else None
    b = turn_tokens(now) if now.status < 400 else None
    if a is not None and b is not None and a.completion_ids is not None and b.completion_ids is not None:
        d.ids_same = list(a.completion_ids) == list(b.completion_ids)
        if a.completion_logprobs and b.completion_logprobs and d.ids_same:
            d.logprob_delta = max(abs(float(x) - float(y)) for x, y in zip(a.completion_logprobs, b.completion_logprobs))
    elif (a is None) != (b is None):
        d.ids_same = False
    return d


def _target(cassette: Cassette, against: str | None, profile: str | None):
    """A context manager serving the target: (root URL, what it is)."""
    from contextlib import contextmanager

    @contextmanager
    def serve():
        if against:
            yield root_of(against), against
            return
        if profile:
            from harness.wire.profiles import parse_label
            from fake_servers.server import FakeConfig, RunningServer

            prof = parse_label(profile)
            with RunningServer(FakeConfig.for_profile(prof, model=cassette.meta.get("model") or "tiny-qwen")) as srv:
                yield srv.root_url, f"a fake {profile}"
            return
        from .recording.replay import ReplayIndex, create_replay_app
        from .serve import AppThread

        with AppThread(create_replay_app(ReplayIndex([cassette]))) as srv:
            yield f"http://127.0.0.1:{srv.port}", "the capture's replay"

    return serve()


def resend(path, conversations=(), against: str | None = None, profile: str | None = None,
           timeout: float = 120.0) -> ResendReport:
    """Send the selected exchanges (whole conversations; all of the capture when none is named) again as
    they were sent, in their order, and compare each turn's answer with the recorded one."""
    import httpx

    if conversations:
        indices, interactions, meta = conversation_exchanges(path, conversations)
        cassette = Cassette(interactions, meta)
    else:
        cassette = Cassette.load(path)
        indices = list(range(len(cassette.interactions)))
    recorded, now = Linker(), Linker()
    turns: list[TurnDiff] = []
    with _target(cassette, against, profile) as (root, what), httpx.Client(timeout=timeout) as http:
        for n, rec in zip(indices, cassette.interactions):
            headers = {k: v[-1] for k, v in rec.request_headers.items() if k.lower() not in HOP and v}
            t0 = time.perf_counter()
            try:
                r = http.request(rec.method, root + rec.uri[rec.uri.find(rec.path):] if "://" in rec.uri else root + rec.uri,
                                 content=rec.request_body, headers=headers)
                got = Interaction(rec.method, rec.uri, rec.request_headers, rec.request_body, r.status_code,
                                  r.reason_phrase, {k: [v] for k, v in r.headers.items()}, r.content,
                                  duration_ms=(time.perf_counter() - t0) * 1000)
            except httpx.HTTPError as exc:
                got = Interaction(rec.method, rec.uri, rec.request_headers, rec.request_body, 599, "no answer", {},
                                  f"{type(exc).__name__}: {exc}".encode())
            if turn_kind(rec) is None:
                continue
            a, b = recorded.add(n, rec), now.add(n, got)
            turns.append(_compare(n, rec, got, a[3] if a else [], b[3] if b else []))
    return ResendReport(str(path), what, turns)


# -- serving a capture to any client, in a test ---------------------------------------------------------------

class CaptureServer:
    """Serves a capture to any client: recorded requests get their recorded answers, others a fake of the
    capture's profile (`profile`, else the kind its routes show). `.base_url`, and `.exchanges`: what the
    client sent and got, as Interactions, for `audit_exchanges`.

    >>> with CaptureServer("conversation.yaml") as srv:
    ...     my_rollout(srv.base_url)
    ...     report = audit(Cassette(srv.exchanges, {}))
    """

    def __init__(self, path, profile: str | None = None):
        self.cassette = Cassette.load(path)
        self.profile = profile or self.cassette.meta.get("profile") or _kind_of(self.cassette)
        self.exchanges: list[Interaction] = []
        self.replayed = 0  # answered from the capture
        self.fresh = 0  # answered by the fake

    def __enter__(self) -> "CaptureServer":
        from aiohttp import ClientSession, web

        from harness.wire.profiles import parse_label
        from fake_servers.server import FakeConfig, RunningServer

        from .recording.replay import ReplayIndex, answer
        from .serve import AppThread

        prof = parse_label(self.profile)
        self._fake = RunningServer(FakeConfig.for_profile(
            prof, model=self.cassette.meta.get("model") or "tiny-qwen")).__enter__()
        index = ReplayIndex([self.cassette])
        fake_root = self._fake.root_url

        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            t0 = time.perf_counter()
            hit = index.lookup(request.method, request.path_qs, body)
            headers = {k: [v] for k, v in request.headers.items()}
            if hit is not None:
                self.replayed += 1
                self.exchanges.append(Interaction(request.method, request.path_qs, headers, body, hit.status,
                                                  hit.reason, hit.response_headers, hit.response_body, hit.chunks))
                return await answer(request, hit)
            self.fresh += 1
            fwd = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
            async with ClientSession() as s, s.request(request.method, fake_root + request.path_qs, data=body,
                                                       headers=fwd) as r:
                raw = await r.read()
                out_headers = {k: v for k, v in r.headers.items() if k.lower() not in HOP | {"content-encoding"}}
                self.exchanges.append(Interaction(request.method, request.path_qs, headers, body, r.status, r.reason or "",
                                                  {k: [v] for k, v in out_headers.items()}, raw,
                                                  duration_ms=(time.perf_counter() - t0) * 1000))
                return web.Response(status=r.status, body=raw, headers=out_headers)

        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", handle)
        self._thread = AppThread(app).__enter__()
        self.base_url = f"http://127.0.0.1:{self._thread.port}/v1"
        return self

    def __exit__(self, *exc) -> None:
        self._thread.__exit__(*exc)
        self._fake.__exit__(*exc)


def _kind_of(cassette: Cassette) -> str:
    for i in cassette.interactions:
        body = i.request_json()
        if isinstance(body, dict) and "nvext" in body:
            return "dynamo-1.6.1"
    return "vllm-0.32"


TEST_TEMPLATE = '''"""{title}: written by `harness repro --emit-test`.

The capture beside this file holds the conversation as the client sent it in production
({kinds}). `rollout` below sends those requests again; replace its body with your client's
rollout against `base_url`. The server answers what the capture holds byte for byte and anything
else as a fake {profile}; the test audits what the client sent and fails while the bug is there.
"""

from pathlib import Path

import httpx
import pytest

from harness.capture_repro import CaptureServer, recorded_requests
from harness.captures import audit
from harness.recording.format import Cassette
from harness.wire.urls import root_of

CAPTURE = Path(__file__).parent / {rel!r}
BUG = {kinds_list!r}  # what the capture showed


@pytest.fixture
def capture_server():
    with CaptureServer(CAPTURE, profile={profile!r}) as srv:
        yield srv


def rollout(base_url: str) -> None:
    """The recorded client: its requests, as sent. Put your client's rollout here."""
    with httpx.Client(timeout=60) as http:
        for method, path, headers, body in recorded_requests(CAPTURE):
            http.request(method, root_of(base_url) + path, content=body, headers=headers)


def test_{func}(capture_server):
    rollout(capture_server.base_url)
    report = audit(Cassette(capture_server.exchanges, {{}}))
    assert report.turns > 0, "the client sent no generation request"
    found = sorted({{a.kind for a in report.anomalies}} & set(BUG))
    assert not found, [a.to_dict() for a in report.anomalies if a.kind in BUG]
'''


def recorded_requests(path):
    """(method, path with query, headers, body) of each recorded request, in order, as the client sent them."""
    for i in Cassette.load(path).interactions:
        yield i.method, i.uri[i.uri.find(i.path):] if "://" in i.uri else i.uri, \
            {k: v[-1] for k, v in i.request_headers.items() if k.lower() not in HOP and v}, i.request_body


def emit_test(capture, out, conversations=(), profile: str | None = None) -> tuple[Path, Path]:
    """Write the selected conversations (the whole capture when none is named) beside a pytest file that serves
    them to a client and fails while the capture's anomalies show; returns (test file, its cassette)."""
    import os

    from .captures import audit, extract

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cut = out.with_suffix(".yaml")
    if conversations:
        extract(capture, cut, conversations)
    else:
        _copy(capture, cut)
    report = audit(Cassette.load(cut))
    kinds = sorted({a.kind for a in report.anomalies} - {"retried"})
    meta = read_meta(cut)
    prof = profile or meta.get("profile") or _kind_of(Cassette.load(cut))
    name = Path(capture).name + (f", conversation {', '.join(map(str, conversations))}" if conversations else "")
    out.write_text(TEST_TEMPLATE.format(
        title=f"Regression test for {name}", kinds=", ".join(kinds) or "no anomaly: it pins the traffic as recorded",
        rel=os.path.relpath(cut.resolve(), out.resolve().parent), kinds_list=kinds, profile=prof,
        func=re.sub(r"\W", "_", out.stem.removeprefix("test_"))))
    return out, cut


def _copy(src, dst) -> None:
    import shutil

    from .recording.blobs import blob_dir

    shutil.copy2(src, dst)
    if blob_dir(src).exists():
        shutil.copytree(blob_dir(src), blob_dir(dst), dirs_exist_ok=True)
