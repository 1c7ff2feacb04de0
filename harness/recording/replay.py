"""Replay: answer requests from cassettes, matched in O(1) through a hash index.

A request matches an interaction on method, path and canonical body (JSON key order and
whitespace ignored, volatile fields dropped). Identical repeated requests are answered in recorded
order; past the last one the repeat policy decides (`last`: keep answering the last one, `cycle`:
start over, `error`: unmatched). An unmatched request gets status 422 (UNMATCHED_STATUS) with a
JSON body naming the closest recorded request and the field-level differences.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

import orjson
from aiohttp import web

from .format import Cassette, Interaction
from .scrub import SECRET_QUERY_KEYS

UNMATCHED_STATUS = 422
DEFAULT_IGNORE = ("request_id", "nvext.request_timestamp_ms")
REPEAT_POLICIES = ("last", "cycle", "error")
_DROP_HEADERS = {"content-length", "transfer-encoding", "content-encoding", "connection", "keep-alive", "date", "server"}


def _drop(value, path: list[str]):
    if not isinstance(value, dict) or not path:
        return
    if len(path) == 1:
        value.pop(path[0], None)
    else:
        _drop(value.get(path[0]), path[1:])


def canonical_body(body: bytes, ignore=DEFAULT_IGNORE):
    """(canonical bytes, parsed JSON or None): sorted keys, no whitespace, ignored fields dropped."""
    if not body:
        return b"", None
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body, None
    for dotted in ignore:
        _drop(value, dotted.split("."))
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS), value
    except TypeError:  # nested deeper than orjson writes (254 levels): the stdlib has no such limit
        import json

        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode(), value


def request_key(method: str, uri_or_path: str, body: bytes, ignore=DEFAULT_IGNORE) -> bytes:
    parts = urlsplit(uri_or_path)
    query = sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                   if k.lower() not in SECRET_QUERY_KEYS)
    h = hashlib.blake2b(digest_size=20)
    h.update(method.upper().encode())
    h.update(b"\0" + parts.path.encode() + b"\0" + repr(query).encode() + b"\0")
    h.update(canonical_body(body, ignore)[0])
    return h.digest()


def flatten(value, prefix: str = "body") -> dict[str, object]:
    out: dict[str, object] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}"))
        if not value:
            out[prefix] = {}
    elif isinstance(value, list) and not all(isinstance(x, (int, float)) for x in value):
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}[{i}]"))
        if not value:
            out[prefix] = []
    else:
        out[prefix] = value
    return out


def query_params(uri_or_path: str) -> dict[str, str]:
    """A URI's query parameters as they are matched (secret ones left out), e.g. {"mode": "keep"}."""
    return {k: v for k, v in parse_qsl(urlsplit(uri_or_path).query, keep_blank_values=True)
            if k.lower() not in SECRET_QUERY_KEYS}


def field_diff(recorded, got, prefix: str = "body") -> list[str]:
    """Field-level differences between two JSON bodies, readable, most useful first."""
    a, b = flatten(recorded, prefix), flatten(got, prefix)
    lines = []
    for k in sorted(set(a) | set(b)):
        if k not in b:
            lines.append(f"{k}: recorded {_short(a[k])}, missing now")
        elif k not in a:
            lines.append(f"{k}: not recorded, now {_short(b[k])}")
        elif a[k] != b[k]:
            lines.append(f"{k}: recorded {_short(a[k])}, now {_short(b[k])}")
    return lines


def _short(v) -> str:
    text = json.dumps(v, ensure_ascii=False)
    if isinstance(v, list) and len(v) > 8:
        text = f"[{len(v)} items: {json.dumps(v[:3])[1:-1]}, ...]"
    return text if len(text) <= 120 else text[:117] + "..."


@dataclass
class _Slot:
    interactions: list[Interaction] = field(default_factory=list)
    served: int = 0


class ReplayIndex:
    def __init__(self, cassettes: list[Cassette] | None = None, ignore=DEFAULT_IGNORE, repeat: str = "last"):
        if repeat not in REPEAT_POLICIES:
            raise ValueError(f"repeat policy must be one of {REPEAT_POLICIES}")
        self.ignore = tuple(ignore)
        self.repeat = repeat
        self._slots: dict[bytes, _Slot] = defaultdict(_Slot)
        self._by_route: dict[tuple[str, str], list[tuple[int, Interaction]]] = defaultdict(list)
        self.count = 0
        for c in cassettes or []:
            self.extend(c.interactions)

    def add(self, interaction: Interaction) -> None:
        key = request_key(interaction.method, interaction.uri, interaction.request_body, self.ignore)
        self._slots[key].interactions.append(interaction)
        self._by_route[(interaction.method.upper(), interaction.path)].append((self.count, interaction))
        self.count += 1

    def extend(self, interactions) -> None:
        for i in interactions:
            self.add(i)

    def lookup(self, method: str, path_qs: str, body: bytes) -> Interaction | None:
        slot = self._slots.get(request_key(method, path_qs, body, self.ignore))
        if slot is None or not slot.interactions:
            return None
        n = len(slot.interactions)
        if slot.served < n:
            hit = slot.interactions[slot.served]
        elif self.repeat == "last":
            hit = slot.interactions[-1]
        elif self.repeat == "cycle":
            hit = slot.interactions[slot.served % n]
        else:
            return None
        slot.served += 1
        return hit

    def closest(self, method: str, path_qs: str, body: bytes) -> dict:
        """Explain a miss: the nearest recorded request and what differs."""
        path = urlsplit(path_qs).path
        _, got = canonical_body(body, self.ignore)
        candidates = self._by_route.get((method.upper(), path), [])
        if not candidates:
            routes = sorted({f"{m} {p}" for m, p in self._by_route})
            return {"closest": None, "differences": [f"no recorded request on {method.upper()} {path}"],
                    "recorded_routes": routes[:50]}
        best = None
        mine, query = canonical_body(body, self.ignore)[0], query_params(path_qs)
        for index, inter in candidates:
            theirs, rec = canonical_body(inter.request_body, self.ignore)
            diffs = field_diff(query_params(inter.uri), query, "query")  # e.g. /pause?mode=keep vs mode=abort
            if rec is not None and got is not None:
                diffs += field_diff(rec, got)
            elif theirs != mine:
                diffs.append("body differs (not JSON)")
            if best is None or len(diffs) < len(best[2]):
                best = (index, inter, diffs)
        index, inter, diffs = best
        if not diffs:
            diffs = [f"identical request already answered {len(self._slots[request_key(method, path_qs, body, self.ignore)].interactions)} time(s); repeat policy is '{self.repeat}'"]
        return {"closest": {"index": index, "method": inter.method, "path": inter.path}, "differences": diffs[:20]}


_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # what a header name may be (RFC 9110)


def _headers_out(inter: Interaction) -> dict:
    """The recorded headers to send back: hop-by-hop ones dropped, and any a server could not have sent (a
    name that is no token, a control character in its value: header injection from a tampered cassette)."""
    out = {}
    for k, vs in inter.response_headers.items():
        if k.lower() not in _DROP_HEADERS and vs and _TOKEN.fullmatch(k) and not _BAD_VALUE.search(vs[-1]):
            out[k] = vs[-1]
    return out


async def answer(request: web.Request, inter: Interaction) -> web.StreamResponse:
    """Send a recorded answer: same status, headers and bytes; same chunking for streams."""
    headers = _headers_out(inter)
    if inter.chunks:
        resp = web.StreamResponse(status=inter.status, reason=inter.reason or None, headers=headers)
        await resp.prepare(request)
        pos = 0
        for size in inter.chunks:
            await resp.write(inter.response_body[pos:pos + size])
            pos += size
            await asyncio.sleep(0)
        if pos < len(inter.response_body):
            await resp.write(inter.response_body[pos:])
        await resp.write_eof()
        return resp
    return web.Response(status=inter.status, reason=inter.reason or None, body=inter.response_body, headers=headers)


def unmatched(request: web.Request, body: bytes, index: ReplayIndex) -> web.Response:
    info = index.closest(request.method, request.path_qs, body)
    where = info["closest"]
    msg = f"no recorded interaction matches {request.method} {request.path}"
    if where:
        msg += f"; closest is interaction #{where['index']}: " + "; ".join(info["differences"][:3])
    payload = {"error": {"message": msg, "type": "CassetteMismatch", "param": None, "code": UNMATCHED_STATUS}, **info}
    return web.Response(status=UNMATCHED_STATUS, body=orjson.dumps(payload), content_type="application/json")


@dataclass
class Tally:
    """What a replay server or a forwarding proxy did, for its log lines and its summary on exit."""

    on_request: object = None  # called with (count, method, path, status, note) per request
    requests: int = 0
    statuses: dict = field(default_factory=lambda: defaultdict(int))
    unmatched: int = 0
    faults: dict = field(default_factory=lambda: defaultdict(int))

    def note(self, method: str, path: str, status: int, faults=(), unmatched: bool = False) -> None:
        self.requests += 1
        self.statuses[status] += 1
        self.unmatched += unmatched
        for f in faults:
            self.faults[f] += 1
        if self.on_request:
            note = "unmatched" if unmatched else (f"fault: {', '.join(faults)}" if faults else "")
            self.on_request(self.requests, method, path, status, note)

    def summary(self) -> str:
        statuses = ", ".join(f"{k} x{v}" for k, v in sorted(self.statuses.items())) or "none"
        faults = "; faults injected: " + ", ".join(f"{k} x{v}" for k, v in sorted(self.faults.items())) if self.faults else ""
        unmatched = f"; {self.unmatched} unmatched ({UNMATCHED_STATUS})" if self.unmatched else ""
        return f"{self.requests} requests (statuses: {statuses}){unmatched}{faults}"


def create_replay_app(index: ReplayIndex, tally: Tally | None = None) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        from .format import CassetteError

        body = await request.read()
        try:
            hit = index.lookup(request.method, request.path_qs, body)
            if hit is None and not (request.method == "GET" and request.path == "/health"):
                resp = unmatched(request, body, index)
        except CassetteError as exc:  # an interaction read only now (a capture's lazy index) is malformed
            hit, resp = None, web.json_response({"error": f"the cassette cannot answer this request: {exc}"},
                                                status=UNMATCHED_STATUS)
        if hit is None:
            if request.method == "GET" and request.path == "/health":  # a load balancer's probe: healthy
                resp = web.Response(status=200)
            if tally is not None:
                tally.note(request.method, request.path, resp.status, unmatched=resp.status == UNMATCHED_STATUS)
            return resp
        if tally is not None:
            tally.note(request.method, request.path, hit.status)
        return await answer(request, hit)

    app = web.Application(client_max_size=256 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


class IndexedReplay:
    """Replay over captures on disk, through each one's request index (request_index.py): start-up does
    not read the captures, and an interaction is read from its file when a request asks for it. Answers
    as ReplayIndex does (recorded order for repeats, then the repeat policy; the closest on a miss)."""

    def __init__(self, sources: list, ignore=DEFAULT_IGNORE, repeat: str = "last"):
        if repeat not in REPEAT_POLICIES:
            raise ValueError(f"repeat policy must be one of {REPEAT_POLICIES}")
        self.sources, self.ignore, self.repeat = sources, tuple(ignore), repeat
        self.count = sum(s.count for s in sources)
        self._hits: dict[bytes, list] = {}
        self._served: dict[bytes, int] = defaultdict(int)

    def _for(self, key: bytes) -> list:
        hits = self._hits.get(key)
        if hits is None:
            hits = []
            for s in self.sources:
                if isinstance(s, ReplayIndex):
                    hits += [(None, i) for i in s._slots[key].interactions] if key in s._slots else []
                else:
                    hits += [(s, k) for k in s.find(key)]
            if hits:
                self._hits[key] = hits
        return hits

    def lookup(self, method: str, path_qs: str, body: bytes) -> Interaction | None:
        key = request_key(method, path_qs, body, self.ignore)
        hits = self._for(key)
        if not hits:
            return None
        n, served = len(hits), self._served[key]
        if served < n:
            pick = served
        elif self.repeat == "last":
            pick = n - 1
        elif self.repeat == "cycle":
            pick = served % n
        else:
            return None
        self._served[key] = served + 1
        src, k = hits[pick]
        return k if src is None else src.interaction(k)

    def closest(self, method: str, path_qs: str, body: bytes) -> dict:
        """Explain a miss from the recorded requests on the same route (at most 200 of them are read)."""
        route = f"{method.upper()} {urlsplit(path_qs).path}"
        cands = ReplayIndex(ignore=self.ignore, repeat=self.repeat)
        routes: set[str] = set()
        base = 0
        for s in self.sources:
            if isinstance(s, ReplayIndex):
                for (m, p), items in s._by_route.items():
                    routes.add(f"{m} {p}")
                for key, items in s._by_route.items():
                    if f"{key[0]} {key[1]}" == route:
                        cands._by_route[key] += [(base + k, i) for k, i in items]
            else:
                routes.update(s.route_names)
                for k in s.on_route(route):
                    i = s.interaction(k, resolve_blobs=False)
                    cands._by_route[(i.method.upper(), i.path)].append((base + k, i))
            base += s.count
        key = request_key(method, path_qs, body, self.ignore)
        cands._slots[key].interactions = [None] * len(self._hits.get(key, []))  # (how many: for its words)
        info = cands.closest(method, path_qs, body)
        if info.get("recorded_routes") is not None:
            info["recorded_routes"] = sorted(routes)[:50]
        return info


def load_index(paths, ignore=DEFAULT_IGNORE, repeat: str = "last") -> IndexedReplay:
    """What `harness replay` answers from: each capture through its request index beside it (built, or
    rebuilt when stale, first); a file laid out otherwise is loaded whole."""
    from .format import cassette_files
    from .request_index import open_index

    sources = []
    for f in (f for p in paths for f in cassette_files(p)):
        idx = open_index(f, tuple(ignore))
        sources.append(idx if idx is not None else ReplayIndex([Cassette.load(f)], ignore, repeat))
    return IndexedReplay(sources, ignore, repeat)


def run_replay(paths, host: str = "127.0.0.1", port: int = 8080, ignore=DEFAULT_IGNORE, repeat: str = "last",
               on_ready=None, tally: Tally | None = None) -> None:
    from ..serve import bind, serve_forever

    sock = bind(host, port)
    try:
        index = load_index(paths, ignore, repeat)
    except BaseException:
        sock.close()
        raise
    serve_forever(create_replay_app(index, tally), host, port,
                  (lambda bound: on_ready(bound, index)) if on_ready else None, sock=sock)
