"""The recorder's write-ahead journal: every byte an answer sends to the client is appended here first.

The proxy writes an exchange into the journal *before* the client gets the answer (a whole answer in
one record; a stream head first, then each chunk just before it goes out), so whatever kills the
recorder, kill -9 of the process or of its whole process group, an exchange whose answer reached the
client is on disk: appends go to the page cache, which outlives the process (no fsync: only losing
power loses it). What reaches the journal is already scrubbed (headers, URL, bodies), so no secret
touches disk here either.

The cassette writer works as before, off the hot path (blobs, YAML, fsync). Each exchange carries a
journal id (`x_tito.id` in the cassette); once the writer has put it in the cassette, the journal no
longer needs it, and a segment file all of whose exchanges are in the cassette is deleted. A clean
stop leaves no journal. A journal left behind (its lock free: no recorder holds it) is an
interrupted recording: `recover` puts every exchange the cassette lacks into it; `Cassette.load`,
a restarted recorder and `harness cassette recover` all do so.

Segments are files mapped shared into the recorder's memory: an append is a copy into the page
cache, with no system call on the hot path. Record layout (little-endian): magic `TJ`, kind (1 byte), exchange number (u64), payload length (u32),
crc32 of the payload (u32), payload. Kinds: `X` a whole exchange, `H` a stream's head, `C` a stream
chunk, `E` a stream's end. A torn last record (the process died inside a write) fails its length or
crc check and is ignored: its bytes never reached the client.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
import shutil
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from .format import BEFORE_LOAD, Interaction

log = logging.getLogger("harness.recording")
HEADER = struct.Struct("<2sBQII")
MAGIC = b"TJ"
SEGMENT_BYTES = 64 * 1024 * 1024
LOCK = "lock"
SETTINGS = "settings.json"


def journal_dir(cassette: str | os.PathLike) -> Path:
    p = Path(cassette)
    return p.with_name(p.stem + ".journal")


def _pack(kind: bytes, number: int, payload: bytes) -> bytes:
    return HEADER.pack(MAGIC, kind[0], number, len(payload), zlib.crc32(payload)) + payload


def _head_payload(meta: dict, *bodies: bytes) -> bytes:
    meta = {**meta, "sizes": [len(b) for b in bodies]}
    blob = orjson.dumps(meta)
    return struct.pack("<I", len(blob)) + blob + b"".join(bodies)


def _read_head(payload: bytes) -> tuple[dict, list[bytes]]:
    (n,) = struct.unpack_from("<I", payload)
    meta = orjson.loads(payload[4:4 + n])
    bodies, at = [], 4 + n
    for size in meta.pop("sizes"):
        bodies.append(payload[at:at + size])
        at += size
    return meta, bodies


class Journal:
    """Appends (thread-safe, one copy into a mapped segment per record) into segment files under
    `<cassette>.journal/`; holds the folder's lock while the recording lives."""

    def __init__(self, cassette: str | os.PathLike, segment_bytes: int = SEGMENT_BYTES, settings: dict | None = None):
        self.dir = journal_dir(cassette)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = hold_lock(self.dir)
        # what recovery writes the cassette with, and who records (a load waits for a dead recorder's writer)
        (self.dir / SETTINGS).write_bytes(orjson.dumps({**(settings or {}), "pid": os.getpid()}))
        self.segment_bytes = segment_bytes
        self._mutex = threading.Lock()
        self._session = f"{os.getpid():x}{int(time.time() * 1000) % 0xFFFFFF:06x}"
        self._next = 0
        self._segment = -1
        self._fd = -1
        self._map: mmap.mmap | None = None
        self._capacity = 0
        self._size = 0
        self._refs: dict[int, int] = {}  # segment -> exchanges with records there that are not yet in the cassette
        self._touched: dict[int, set[int]] = {}  # exchange -> its segments
        self._closed = False
        self._rotate()

    def _rotate(self, at_least: int = 0) -> None:
        """A new segment: a file of `segment_bytes` (or the record's size), mapped shared, so an append
        is a copy into the page cache with no system call (a process's death leaves what it copied)."""
        if self._fd >= 0:
            self._unmap()
            old = self._segment
            if not self._refs.get(old):
                self._drop(old)
        self._segment += 1
        self._capacity = max(self.segment_bytes, at_least)
        self._fd = os.open(self.dir / f"{self._session}-{self._segment:06d}.tj", os.O_RDWR | os.O_CREAT, 0o600)
        os.ftruncate(self._fd, self._capacity)
        self._map = mmap.mmap(self._fd, self._capacity, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._size = 0

    def _unmap(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        os.ftruncate(self._fd, self._size)  # the unused tail goes
        os.close(self._fd)
        self._fd = -1

    def _drop(self, segment: int) -> None:
        self._refs.pop(segment, None)
        try:
            os.unlink(self.dir / f"{self._session}-{segment:06d}.tj")
        except FileNotFoundError:
            pass

    def _append(self, kind: bytes, number: int, payload: bytes) -> None:
        record = _pack(kind, number, payload)
        with self._mutex:
            if self._closed:
                return
            if self._size + len(record) > self._capacity:
                self._rotate(len(record))
            touched = self._touched.setdefault(number, set())
            if self._segment not in touched:
                touched.add(self._segment)
                self._refs[self._segment] = self._refs.get(self._segment, 0) + 1
            end = self._size + len(record)
            self._map[self._size:end] = record
            self._size = end

    def _number(self) -> int:
        with self._mutex:
            self._next += 1
            return self._next

    def xid(self, number: int) -> str:
        return f"{self._session}-{number}"

    # -- the hot path ----------------------------------------------------------------------------
    def whole(self, i: Interaction) -> str:
        """A whole exchange, before its answer is sent. Returns its journal id."""
        n = self._number()
        self._append(b"X", n, _head_payload(_meta(i), i.request_body, i.response_body))
        return self.xid(n)

    def head(self, i: Interaction) -> int:
        """A stream's request and response head, before the first chunk is sent."""
        n = self._number()
        self._append(b"H", n, _head_payload(_meta(i), i.request_body))
        return n

    def chunk(self, number: int, data: bytes) -> None:
        """A stream chunk, just before it is sent."""
        self._append(b"C", number, data)

    def end(self, number: int, duration_ms: float | None) -> str:
        self._append(b"E", number, orjson.dumps({"duration_ms": duration_ms}))
        return self.xid(number)

    # -- the writer's acknowledgements -----------------------------------------------------------
    def done(self, xid: str | None) -> None:
        """The exchange is in the cassette: its records are no longer needed."""
        if not xid or not xid.startswith(self._session + "-"):
            return
        number = int(xid.rsplit("-", 1)[1])
        with self._mutex:
            for seg in self._touched.pop(number, ()):
                left = self._refs.get(seg, 0) - 1
                self._refs[seg] = left
                if left <= 0 and seg != self._segment:
                    self._drop(seg)

    def close(self, remove: bool = True) -> None:
        """End of a clean recording (everything is in the cassette): the journal goes."""
        with self._mutex:
            self._closed = True
            if self._fd >= 0:
                self._unmap()
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)
        os.close(self._lock_fd)


def _meta(i: Interaction) -> dict:
    return {"method": i.method, "uri": i.uri, "request_headers": i.request_headers, "status": i.status,
            "reason": i.reason, "response_headers": i.response_headers, "recorded_at": i.recorded_at,
            "duration_ms": i.duration_ms, "faults": i.faults}


def hold_lock(directory: Path) -> int:
    """A shared lock on the journal folder, held for the life of the process that took it (the kernel
    lets go when it dies): recovery runs only when no recorder holds it."""
    fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def journal_state(cassette: str | os.PathLike) -> str:
    """"none" (no journal), "live" (a recorder holds it), "finishing" (the recorder is dead, its writer
    process is finishing a batch) or "orphaned" (an interrupted recording: recover it)."""
    d = journal_dir(cassette)
    if not d.is_dir():
        return "none"
    lock = d / LOCK
    if not lock.exists():
        return "orphaned" if any(d.glob("*.tj")) else "none"
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            pid = orjson.loads((d / SETTINGS).read_bytes())["pid"]
            os.kill(pid, 0)
        except ProcessLookupError:
            return "finishing"
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return "live"
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return "orphaned"
    finally:
        os.close(fd)


def is_orphaned(cassette: str | os.PathLike) -> bool:
    return journal_state(cassette) in ("orphaned", "finishing")


@dataclass
class _Open:
    meta: dict
    request: bytes
    chunks: list[bytes] = field(default_factory=list)
    ended: bool = False
    duration_ms: float | None = None


def read_journal(directory: Path) -> tuple[list[Interaction], int]:
    """The exchanges in a journal folder, in the order they started, and the count of torn records.
    A stream whose end never came is kept as far as it went (those chunks reached the client)."""
    exchanges: dict[tuple[str, int], _Open | Interaction] = {}
    torn = 0
    for seg in sorted(directory.glob("*.tj")):  # SESSION-NNNNNN: a session's segments in order
        session = seg.stem.rsplit("-", 1)[0]
        data = seg.read_bytes()
        at = 0
        while at < len(data):
            if len(data) - at < HEADER.size:
                torn += 1
                break
            magic, kind, number, size, crc = HEADER.unpack_from(data, at)
            if magic == b"\0\0":  # the unused (zero) tail of a mapped segment: its end
                break
            payload = data[at + HEADER.size:at + HEADER.size + size]
            if magic != MAGIC or len(payload) != size or zlib.crc32(payload) != crc:
                torn += 1
                break
            at += HEADER.size + size
            key = (session, number)
            kind = bytes([kind])
            if kind == b"X":
                meta, (req, resp) = _read_head(payload)
                exchanges[key] = _interaction(meta, req, resp, None, f"{session}-{number}")
            elif kind == b"H":
                meta, (req,) = _read_head(payload)
                exchanges[key] = _Open(meta, req)
            elif kind == b"C" and isinstance(exchanges.get(key), _Open):
                exchanges[key].chunks.append(payload)
            elif kind == b"E" and isinstance(exchanges.get(key), _Open):
                exchanges[key].ended = True
                exchanges[key].duration_ms = orjson.loads(payload).get("duration_ms")
    out = []
    for (session, number), e in exchanges.items():
        if isinstance(e, _Open):
            meta = {**e.meta, "duration_ms": e.duration_ms}
            if not e.ended:
                meta["faults"] = [*(meta.get("faults") or []), "recorder_killed_mid_stream"]
            e = _interaction(meta, e.request, b"".join(e.chunks), [len(c) for c in e.chunks], f"{session}-{number}")
        out.append(e)
    return out, torn


def _interaction(meta: dict, request: bytes, response: bytes, chunks, xid: str) -> Interaction:
    return Interaction(meta["method"], meta["uri"], meta["request_headers"], request, meta["status"], meta["reason"],
                       meta["response_headers"], response, chunks, meta.get("duration_ms"), meta.get("recorded_at"),
                       faults=meta.get("faults") or None, xid=xid)


def recover(cassette: str | os.PathLike, wait: float = 10.0) -> int | None:
    """Put every exchange of an interrupted recording's journal that the cassette lacks into it.
    Returns how many were added, or None when there is nothing to recover (no journal, or a live
    recorder holds it). Waits up to `wait` s for a dying recorder's writer to let go."""
    from .blobs import DEFAULT_THRESHOLD, BlobStore, blob_dir
    from .format import Cassette, atomic_write, cut_to_last_whole_batch

    path = Path(cassette)
    d = journal_dir(path)
    if not d.is_dir():
        return None
    lock = d / LOCK
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return None  # a live recorder: nothing to recover
                time.sleep(0.05)
        exchanges, torn = read_journal(d)
        from .segments import is_run, put_missing

        if is_run(path):  # a rotated run: what no segment holds goes into a segment of its own
            try:
                threshold = orjson.loads((d / SETTINGS).read_bytes()).get("blob_threshold")
            except (OSError, ValueError):
                threshold = None
            added = put_missing(path, exchanges, threshold or DEFAULT_THRESHOLD)
            if added:
                log.warning("%s: recovered %d exchange(s) from the journal of an interrupted recording into a "
                            "segment of their own", path, added)
            shutil.rmtree(d, ignore_errors=True)
            return added
        if not path.exists():
            cassette_obj = Cassette()
        else:
            cut_to_last_whole_batch(path)
            cassette_obj = Cassette.load(path, resolve_blobs=False, recover_journal=False)
        have = {i.xid for i in cassette_obj.interactions if i.xid}
        missing = [e for e in exchanges if e.xid not in have]
        missing.sort(key=lambda e: e.recorded_at or 0)
        if missing:
            try:
                settings = orjson.loads((d / SETTINGS).read_bytes())
            except (OSError, ValueError):
                settings = {}
            store = BlobStore(blob_dir(path), settings.get("blob_threshold") or DEFAULT_THRESHOLD)
            # scrubbed before they reached the journal; large blobs out of line as the recorder stores them
            cassette_obj.interactions.extend(store.out_of_line(i) for i in missing)
            atomic_write(path, cassette_obj.to_yaml().encode("utf-8"))
            log.warning("%s: recovered %d exchange(s) from the journal of an interrupted recording%s", path,
                        len(missing), f" ({torn} torn record(s) at the end of a segment ignored)" if torn else "")
        shutil.rmtree(d, ignore_errors=True)
        return len(missing)
    finally:
        os.close(fd)


def _recover_if_orphaned(path: Path) -> None:
    """Before a cassette is read: put in the journal of an interrupted recording beside it, if any."""
    if is_orphaned(path):
        try:
            recover(path)
        except OSError as exc:  # a read-only copy: the cassette loads as it is, and the user is told
            log.warning("%s: the journal of an interrupted recording is beside it but could not be put in (%s): "
                        "run harness cassette recover %s", path, exc, path)


BEFORE_LOAD.append(_recover_if_orphaned)
