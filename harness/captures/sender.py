"""Sending a capture's requests again, exactly as its client sent them, to a server: the capture's own replay,
a fake of a profile, or a live server."""

from __future__ import annotations

import time
from contextlib import ExitStack

import httpx

from fake_servers.server import FakeConfig, RunningServer

from ..recording.format import Cassette, Interaction
from ..recording.replay import ReplayIndex, create_replay_app
from ..serve import AppThread
from ..wire.profiles import parse_label
from ..wire.urls import root_of

HOP = {"host", "content-length", "transfer-encoding", "connection", "accept-encoding"}


def send_again(cassette: Cassette, against: str | None = None, profile: str | None = None,
               timeout: float = 120.0) -> tuple[str, list[tuple[Interaction, Interaction]]]:
    """(what answered, [(recorded, now)] for each exchange in order): a status 599 for a request that got no
    answer."""
    with ExitStack() as stack:
        if profile:
            fake = FakeConfig.for_profile(parse_label(profile), model=cassette.meta.get("model") or "tiny-qwen")
            root, what = stack.enter_context(RunningServer(fake)).root_url, f"a fake {profile}"
        elif not against:
            app = create_replay_app(ReplayIndex([cassette]))
            root, what = f"http://127.0.0.1:{stack.enter_context(AppThread(app)).port}", "the capture's replay"
        else:
            root, what = root_of(against), against
        http = stack.enter_context(httpx.Client(timeout=timeout))
        pairs = []
        for rec in cassette.interactions:
            headers = {k: v[-1] for k, v in rec.request_headers.items() if k.lower() not in HOP and v}
            url = root + (rec.uri[rec.uri.find(rec.path):] if "://" in rec.uri else rec.uri)
            t0 = time.perf_counter()
            try:
                r = http.request(rec.method, url, content=rec.request_body, headers=headers)
                got = Interaction(rec.method, rec.uri, rec.request_headers, rec.request_body, r.status_code,
                                  r.reason_phrase, {k: [v] for k, v in r.headers.items()}, r.content,
                                  duration_ms=(time.perf_counter() - t0) * 1000)
            except httpx.HTTPError as exc:
                got = Interaction(rec.method, rec.uri, rec.request_headers, rec.request_body, 599, "no answer", {},
                                  f"{type(exc).__name__}: {exc}".encode())
            except (httpx.InvalidURL, UnicodeEncodeError, ValueError) as exc:  # a recorded request no client sends
                got = Interaction(rec.method, rec.uri, rec.request_headers, rec.request_body, 599, "not sent", {},
                                  f"the recorded request cannot be sent again ({type(exc).__name__}: {exc})".encode())
            pairs.append((rec, got))
        return what, pairs
