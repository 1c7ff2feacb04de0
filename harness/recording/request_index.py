"""Replay's request index on disk, beside the capture: a replay of any size starts at once.

`<capture>.rix` maps each request key (replay.request_key) to where its interactions sit in the file: an
open-addressing hash table of keys, each slot naming the first interaction with that key, a chain to the
next one, and every interaction's byte span and route. It is mapped, not read: start-up costs the same
at 10 or 10^6 exchanges, a lookup is a hash and a probe or two, and an interaction's bytes are read and
parsed only when a request asks for it. The index records the capture's size and modification time
(and the ignored fields it was keyed with); a stale one, or one of a capture still being written, is
rebuilt first, and a log line says so.

Layout (little-endian): magic `TITORIX1`, a header (u64 each: exchanges, slots, capture size, capture
mtime_ns, length of the trailing JSON), then keys (slots x 20 bytes, all zero: empty), heads (slots x
i64), next (n x i64), starts and ends (n x i64 each), routes (n x i32), then JSON: the route names and
the ignored fields.
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import os
import struct
import tempfile
from pathlib import Path

import numpy as np
import orjson

from .format import BEFORE_LOAD, CassetteError, Interaction, iter_spans, load_span

log = logging.getLogger("harness.recording")
MAGIC = b"TITORIX1"
HEAD = struct.Struct("<8s5Q")
KEY = 20
EMPTY = bytes(KEY)


def index_file(capture: Path, ignore: tuple) -> Path:
    from .replay import DEFAULT_IGNORE

    if tuple(ignore) == tuple(DEFAULT_IGNORE):
        return capture.with_name(capture.name + ".rix")
    tag = hashlib.blake2b(orjson.dumps(list(ignore)), digest_size=4).hexdigest()
    return capture.with_name(f"{capture.name}.{tag}.rix")


def _stat(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def build(capture: Path, out: Path, ignore: tuple) -> int:
    """Index a capture laid out as the recorder writes it (one pass over it); returns the exchanges
    indexed, or -1 for a file whose layout needs a whole load."""
    from .replay import request_key

    size, mtime = _stat(capture)
    keys, starts, ends, routes, route_ids = [], [], [], [], {}
    from urllib.parse import urlsplit

    from .layout import parse_request

    with open(capture, "rb") as f:
        for span in iter_spans(capture):
            f.seek(span.start)
            raw = f.read(span.end - span.start)
            # the key needs the request alone: its JSON body keys the same pretty or compact
            head = parse_request(raw.decode("utf-8", "replace")) if b"request_base64" not in raw else None
            if head is not None and not all(v is None or isinstance(v, str) for v in head):
                head = None  # a field of the wrong type: the full read below refuses it in words
            if head is None:
                f.seek(0)
                i = load_span(f, span, capture, None, resolve_blobs=False)
                method, uri, body = i.method, i.uri, i.request_body
            else:
                method, uri, text = head
                body = text.encode("utf-8") if text else b""
            keys.append(request_key(method, uri, body, ignore))
            starts.append(span.start)
            ends.append(span.end)
            routes.append(route_ids.setdefault(f"{method.upper()} {urlsplit(uri).path}", len(route_ids)))
    n = len(keys)
    if n == 0:
        return -1
    slots = 1 << max(4, (2 * n).bit_length())
    table = np.zeros((slots, KEY), dtype=np.uint8)
    heads = np.full(slots, -1, dtype=np.int64)
    nxt = np.full(n, -1, dtype=np.int64)
    tails: dict[bytes, int] = {}
    mask = slots - 1
    for k, key in enumerate(keys):  # interactions of one key chained in recorded order
        if key in tails:
            nxt[tails[key]] = k
            tails[key] = k
            continue
        tails[key] = k
        h = int.from_bytes(key[:8], "little") & mask
        while heads[h] != -1:
            h = (h + 1) & mask
        table[h] = np.frombuffer(key, dtype=np.uint8)
        heads[h] = k
    names = sorted(route_ids, key=route_ids.get)
    tail = orjson.dumps({"routes": names, "ignore": list(ignore)})
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as w:
            w.write(HEAD.pack(MAGIC, n, slots, size, mtime, len(tail)))
            for arr in (table, heads, nxt, np.asarray(starts, np.int64), np.asarray(ends, np.int64),
                        np.asarray(routes, np.int32)):
                w.write(arr.tobytes())
            w.write(tail)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return n


class FileIndex:
    """One capture's request index, mapped; interactions are read from the capture when asked for."""

    def __init__(self, capture: Path, rix: Path):
        self.capture = capture
        self._file = open(rix, "rb")
        self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        magic, self.count, self.slots, size, mtime, tail = HEAD.unpack_from(self._map, 0)
        if magic != MAGIC:
            raise ValueError("not a request index")
        self.stamp = (size, mtime)
        at = HEAD.size
        self._keys_at = at
        at += self.slots * KEY
        self.heads = np.frombuffer(self._map, np.int64, self.slots, at)
        at += self.slots * 8
        self.next = np.frombuffer(self._map, np.int64, self.count, at)
        at += self.count * 8
        self.starts = np.frombuffer(self._map, np.int64, self.count, at)
        at += self.count * 8
        self.ends = np.frombuffer(self._map, np.int64, self.count, at)
        at += self.count * 8
        self.routes = np.frombuffer(self._map, np.int32, self.count, at)
        at += self.count * 4
        info = orjson.loads(self._map[at:at + tail])
        self.route_names: list[str] = info["routes"]
        self.ignore = tuple(info["ignore"])
        self._store = None
        self._reader = None

    def find(self, key: bytes) -> list[int]:
        """The interactions recorded with this request key, in recorded order."""
        mask = self.slots - 1
        h = int.from_bytes(key[:8], "little") & mask
        m = self._map
        while True:
            at = self._keys_at + h * KEY
            slot = m[at:at + KEY]
            if slot == key:
                out, k = [], int(self.heads[h])
                while k != -1:
                    out.append(k)
                    k = int(self.next[k])
                return out
            if slot == EMPTY:
                return []
            h = (h + 1) & mask

    def interaction(self, k: int, resolve_blobs: bool = True) -> Interaction:
        from .blobs import BlobStore, blob_dir
        from .format import Span

        if self._reader is None:
            self._reader = open(self.capture, "rb")
            self._store = BlobStore(blob_dir(self.capture)) if blob_dir(self.capture).exists() else None
        return load_span(self._reader, Span(int(self.starts[k]), int(self.ends[k])), self.capture,
                         self._store if resolve_blobs else None, resolve_blobs)

    def on_route(self, route: str, limit: int = 200) -> list[int]:
        try:
            rid = self.route_names.index(route)
        except ValueError:
            return []
        return [int(k) for k in np.flatnonzero(self.routes == rid)[:limit]]


def open_index(capture: str | os.PathLike, ignore: tuple) -> FileIndex | None:
    """The capture's request index: the one beside it while it is current, else rebuilt first (said in a log
    line); None for a file whose layout needs a whole load."""
    from .journal import journal_state

    capture = Path(capture)
    if not capture.is_file():
        raise CassetteError(f"no cassette at {capture}")
    for hook in BEFORE_LOAD:  # an interrupted recording's journal goes in first
        hook(capture)
    rix = index_file(capture, ignore)
    live = journal_state(capture) == "live"
    why = None
    if live:
        why = "the capture is still being written"
    else:
        try:
            idx = FileIndex(capture, rix)
            if idx.stamp == _stat(capture) and idx.ignore == tuple(ignore):
                return idx
            why = "its request index is stale (the capture changed since it was built)"
        except (OSError, ValueError, struct.error):
            why = None if not rix.exists() else "its request index is unreadable"
    if why:
        log.warning("%s: %s: rebuilding the request index first", capture, why)
    try:
        n = build(capture, rix, ignore)
    except OSError:  # a read-only place: the index goes to a temp folder for this run
        rix = Path(tempfile.mkdtemp(prefix="tito-rix-")) / rix.name
        n = build(capture, rix, ignore)
    return FileIndex(capture, rix) if n >= 0 else None
