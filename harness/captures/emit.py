"""Pinning a capture as a test (`harness repro --emit-test`).

`CaptureServer` serves a capture to whatever client a test runs: requests the capture holds get their
recorded answers byte for byte; any other request (a client that now behaves differently, e.g. stitches
where it fell back) is answered by a fake of the capture's profile. It keeps the traffic it saw, so a test
audits what the client sent. `emit_test` writes such a test; `emit_ours_test` one that drives our client.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

from ..recording.blobs import blob_dir
from ..recording.format import Cassette, Interaction, read_meta
from .audit import audit
from .extract import extract
from ..wire.safe_text import known_label, py_literal, terminal
from .repro import HOP


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
        self.profile = profile or self.cassette.meta.get("profile") or profile_of(self.cassette)
        self.exchanges: list[Interaction] = []
        self.replayed = 0  # answered from the capture
        self.fresh = 0  # answered by the fake

    def __enter__(self) -> "CaptureServer":
        from aiohttp import ClientSession, web

        from harness.wire.profiles import parse_label
        from fake_servers.server import FakeConfig, RunningServer

        from ..recording.replay import ReplayIndex, answer
        from ..serve import AppThread

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


def profile_of(cassette: Cassette) -> str:
    """The profile a capture's routes show, for one without `meta.profile`."""
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

from harness.captures import audit
from harness.captures.emit import CaptureServer, recorded_requests
from harness.captures.gate import gate
from harness.recording.format import Cassette
from harness.wire.urls import root_of

CAPTURE = Path(__file__).parent / {rel}
BUG = {kinds_list}  # what the capture showed; empty: it was clean, and any anomaly that fails the audit fails this


@pytest.fixture
def capture_server():
    with CaptureServer(CAPTURE, profile={profile}) as srv:
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
    failed = gate(report.anomalies, frozenset(BUG) or None).failed
    assert not failed, [a.to_dict() for a in failed]
'''


def recorded_requests(path):
    """(method, path with query, headers, body) of each recorded request, in order, as the client sent them."""
    for i in Cassette.load(path).interactions:
        yield i.method, i.uri[i.uri.find(i.path):] if "://" in i.uri else i.uri, \
            {k: v[-1] for k, v in i.request_headers.items() if k.lower() not in HOP and v}, i.request_body


def doc_text(text) -> str:
    """Text safe inside the emitted file's triple-quoted docstring: controls shown as escapes, every backslash
    and quote escaped, so no cassette text or file name can end the string."""
    return terminal(text).replace("\\", "\\\\").replace('"', '\\"')


def emit_test(capture, out, conversations=(), profile: str | None = None, warn=None) -> tuple[Path, Path]:
    """Write the selected conversations (the whole capture when none is named) beside a pytest file that serves
    them to a client and fails while the capture's anomalies show; returns (test file, its cassette).

    Nothing from the capture becomes code: the profile must be a known label, and every value is written as
    a checked literal. A capture without anomalies gives a test that fails on any anomaly; `warn` is told."""
    from harness.wire.profiles import labels

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cut = out.with_suffix(".yaml")
    if conversations:
        extract(capture, cut, conversations)
    else:
        copy_capture(capture, cut)
    report = audit(Cassette.load(cut))
    kinds = sorted({a.kind for a in report.anomalies} - {"retried"})
    meta = read_meta(cut)
    prof = profile or meta.get("profile") or profile_of(Cassette.load(cut))
    try:
        prof = known_label(prof, labels(), "profile")
    except ValueError as exc:
        for p in (cut, blob_dir(cut)):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        raise ValueError(f"{exc} (the capture's meta.profile; name one with --profile)") from None
    if not kinds and warn is not None:
        warn("the capture shows no anomaly: the test pins its traffic as recorded and fails on any anomaly")
    name = Path(capture).name + (f", conversation {', '.join(map(str, conversations))}" if conversations else "")
    out.write_text(TEST_TEMPLATE.format(
        title=doc_text(f"Regression test for {name}"),
        kinds=doc_text(", ".join(kinds) or "no anomaly: it pins the traffic as recorded"),
        rel=py_literal(os.path.relpath(cut.resolve(), out.resolve().parent)), kinds_list=py_literal(kinds),
        profile=py_literal(prof), func=re.sub(r"[^0-9A-Za-z_]", "_", out.stem.removeprefix("test_"))))
    return out, cut


def copy_capture(src, dst) -> None:
    shutil.copy2(src, dst)
    if blob_dir(src).exists():
        shutil.copytree(blob_dir(src), blob_dir(dst), dirs_exist_ok=True)


OURS_TEMPLATE = '''"""Regression test for {name}: generated by `harness repro --emit-test`.

It replays the cassette through the client and pins down what the client did on each turn.
"""

from pathlib import Path

from harness.captures.repro import repro_cassette

CASSETTE = Path(__file__).parent / {rel}
EXPECTED = {expected}


def test_{func}():
    report = repro_cassette(CASSETTE)
    assert [t.expectation() for t in report.turns] == EXPECTED
'''


def emit_ours_test(report, out: str | Path) -> Path:
    """A pytest file that replays the cassette through our client and pins what it did on each turn."""
    out = Path(out)
    rel = py_literal(os.path.relpath(Path(report.cassette).resolve(), out.resolve().parent))
    name = Path(report.cassette).stem
    func = re.sub(r"[^0-9A-Za-z_]", "_", name)
    expected = py_literal([t.expectation() for t in report.turns])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(OURS_TEMPLATE.format(name=doc_text(Path(report.cassette).name), rel=rel, expected=expected,
                                        func=func))
    return out


def emit(report, out, conversations=(), profile: str | None = None, warn=None) -> tuple[Path, Path]:
    """The regression test of a repro report: (test file, the cassette it reads). A report of our client
    (`ours`) pins what the client did per turn; one of the requests as sent serves them to any client."""
    if hasattr(report, "script"):
        return emit_ours_test(report, out), Path(report.cassette)
    return emit_test(report.cassette, out, conversations, profile, warn)
