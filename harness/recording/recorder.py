"""The recorder: exchanges in, a cassette on disk out, without holding up the proxy that feeds it.

`Recorder.add` only queues an exchange; a writer (a thread, or a process of its own off the proxy's
GIL) hands batches (already scrubbed and journaled) to a `CassetteWriter`, which cuts large blobs out
(blobs.py), serializes and appends them with one write and an fsync. Modes: `once` records into a new (or empty) cassette
and refuses an existing one; `new_episodes` answers requests the cassette already holds and records
the rest; `all` records everything afresh.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

from .blobs import DEFAULT_THRESHOLD, BlobStore, blob_dir
from .format import Cassette, CassetteError, Interaction, append_durably, atomic_write, interactions_yaml
from .replay import ReplayIndex
from .scrub import Scrubber

log = logging.getLogger("harness.recording")
MODES = ("once", "new_episodes", "all")


class CassetteWriter:
    """Turns exchanges (scrubbed on the hot path) into what the file holds, blobs out to the blob
    folder, and keeps the file in step: one append + fsync per batch, the whole file atomically on
    `flush`. Runs on the recorder's writer thread, or in its writer process."""

    def __init__(self, path: Path, blob_threshold: int, cassette: Cassette, rotation=None):
        self.path, self.cassette = path, cassette
        self.blobs = BlobStore(blob_dir(path), blob_threshold)
        self.errors = 0
        self.rotation = rotation  # segments.Rotation: a run written as segments (None: one file)

    def _rotate(self) -> None:
        """The segment is full: the next batch starts the next one (a whole cassette of its own)."""
        self.path = self.rotation.next(len(self.cassette.interactions))
        meta = {**self.cassette.meta, "segment": len(self.rotation.counts) - 1}
        self.cassette = Cassette([], meta)
        self.blobs = BlobStore(blob_dir(self.path), self.blobs.threshold)

    def write(self, batch: list[Interaction]) -> list[Interaction]:
        try:
            if self.rotation is not None and self.cassette.interactions and \
                    self.rotation.due(len(self.cassette.interactions)):
                self._rotate()
            disk = [self.blobs.out_of_line(i) for i in batch]
            first = not self.cassette.interactions
            self.cassette.interactions.extend(disk)
            if first:  # `interactions: []` on disk cannot be appended to: write the file whole
                atomic_write(self.path, self.cassette.to_yaml().encode("utf-8"))
            else:
                append_durably(self.path, interactions_yaml(disk, len(self.cassette.interactions)).encode("utf-8"))
            return disk
        except Exception as exc:  # never stop the writer: say it loudly, keep serving
            self.errors += 1
            log.error("could not write cassette %s: %s", self.path, exc)
            return []

    def flush(self) -> None:
        try:
            atomic_write(self.path, self.cassette.to_yaml().encode("utf-8"))
            if self.rotation is not None:
                self.rotation.close(len(self.cassette.interactions))
        except Exception as exc:  # the file as it was stays; the journal keeps what it lacks
            self.errors += 1
            log.error("could not write cassette %s: %s", self.path, exc)


def _summary(i: Interaction) -> Interaction:
    """What `on_record` needs of an exchange, without its bodies (cheap to send between processes)."""
    return Interaction(i.method, i.uri, {}, b"", i.status, i.reason, {}, b"", None, i.duration_ms, i.recorded_at,
                       None, i.faults, i.xid)


def _writer_process(conn, path, blob_threshold, cassette, journal, rotation=None) -> None:
    """The writer process: batches in, acknowledgements out, until told to close. It holds the
    journal's lock too, so no recovery starts while it may still append. It ignores SIGINT and SIGTERM
    (started with them blocked, see `_start_quiet`): a signal to the recorder's process group (Ctrl-C,
    `timeout`, systemd) stops the recorder, which flushes through this process and then closes it."""
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    if journal is not None:
        from .journal import hold_lock

        hold_lock(journal)
    writer = CassetteWriter(path, blob_threshold, cassette, rotation)
    while True:
        try:
            kind, payload = conn.recv()
        except (EOFError, OSError):  # the recorder died (kill -9): everything received is on disk already
            return
        if kind == "batch":
            disk = writer.write(payload)
            conn.send(("written", (len(payload), [_summary(i) for i in disk], writer.errors)))
        elif kind == "flush":
            writer.flush()
            conn.send(("flushed", len(writer.cassette.interactions)))
        else:
            conn.send(("closed", None))
            return


_FLUSH, _CLOSE = object(), object()  # control items on the writer's queue
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
BATCH_GATHER = 0.005  # s the writer lets exchanges queue before it takes a batch (the journal holds them meanwhile)


def _start_quiet(proc) -> None:
    """Start a child process with SIGINT and SIGTERM blocked (the mask is inherited through fork and
    exec, so no signal reaches it before it ignores them itself). multiprocessing's resource tracker is
    started first: starting it unblocks both signals."""
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        proc.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class Recorder:
    """Records exchanges into a cassette without holding up the proxy, and loses none that were answered.

    On the hot path an exchange is scrubbed and appended to the write-ahead journal (journal.py)
    before its answer goes out, then queued. A writer (a thread, or with `writer="process"` a process
    of its own, off the proxy's GIL) takes what has queued and hands it to a `CassetteWriter`, which
    cuts large base64 blobs out, serializes and appends the batch with one write and an fsync. The
    file is written whole (atomically) at start and on `flush`; a clean `close` removes the journal.
    Whatever kills the recorder, the journal holds every answered exchange the cassette lacks, and
    the next load, a restarted recorder or `harness cassette recover` puts them in. The queue is
    bounded (`max_pending`): when the disk falls behind, `add` waits for room, and
    `backpressure_waits` counts (and a log line says) how often: memory stays bounded.
    """

    def __init__(self, path: str | Path, mode: str = "once", scrubber: Scrubber | None = None, meta: dict | None = None,
                 on_record=None, blob_threshold: int = DEFAULT_THRESHOLD, max_pending: int = 1024,
                 writer: str = "thread", journal: bool = True, rotate: tuple | None = None):
        from .journal import Journal, is_orphaned, journal_dir, recover

        self.on_record = on_record  # called (off the event loop) with (count, exchange summary) once on disk
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if writer not in ("thread", "process"):
            raise ValueError(f"writer must be thread or process, got {writer!r}")
        self.path = Path(path)
        if self.path.is_dir():
            raise CassetteError(f"{self.path} is a directory: give a cassette file to record into")
        self.mode = mode
        if journal_dir(self.path).is_dir():
            if not is_orphaned(self.path):
                raise CassetteError(f"another recorder is recording into {self.path} (its journal "
                                    f"{journal_dir(self.path)} is held)")
            recover(self.path)
        self.scrubber = scrubber or Scrubber()
        existing = Cassette.load(self.path) if self.path.exists() else Cassette()
        if mode == "once" and existing.interactions:
            raise CassetteError(f"{self.path} already holds {len(existing.interactions)} interactions; "
                                f"mode 'once' never overwrites: use --mode new_episodes or all")
        self.replay = ReplayIndex([existing]) if mode == "new_episodes" else None
        rotation = None
        if rotate is not None:  # (max bytes, max exchanges) a segment: the run is a folder of segments
            from .segments import Rotation

            if mode == "new_episodes":
                raise CassetteError("--rotate records a new run: use --mode once or all")
            rotation = Rotation(self.path, *rotate)
        self.writer = CassetteWriter(rotation.path if rotation else self.path, blob_threshold,
                                     Cassette([], {**existing.meta, **(meta or {}), **({"segment": 0} if rotation
                                                                                       else {})}), rotation)
        if mode == "new_episodes":
            self.writer.cassette.interactions = [self.writer.blobs.out_of_line(i) for i in existing.interactions]
        self.writer.flush()
        self.journal = Journal(self.path, settings={"blob_threshold": blob_threshold}) if journal else None
        self._queue: queue.Queue = queue.Queue(max_pending)
        self._added = 0
        self._written = 0
        self._on_disk = len(self.writer.cassette.interactions)  # kept from before this recording
        self._done = threading.Condition()
        self._flushed = False  # set when the writer has done a flush (or close) asked of it
        self._writer_gone = False  # the writer process died: waits end, the journal is kept
        self._closed = False
        self._remote_errors = 0
        self.backpressure_waits = 0
        self._conn = self._proc = self._acks = None
        if writer == "process":
            import multiprocessing

            ctx = multiprocessing.get_context("spawn")
            self._conn, child = ctx.Pipe()
            self._proc = ctx.Process(target=_writer_process, name="cassette-writer", daemon=True,
                                     args=(child, self.writer.path, blob_threshold, self.writer.cassette,
                                           self.journal.dir if self.journal else None, rotation))
            _start_quiet(self._proc)
            child.close()
            self._acks = threading.Thread(target=self._ack_loop, name="cassette-acks", daemon=True)
            self._acks.start()
        self._thread = threading.Thread(target=self._write_loop, name="cassette-writer", daemon=True)
        self._thread.start()

    @property
    def recorded(self) -> int:
        return self._added

    @property
    def on_disk(self) -> int:
        """Interactions in the cassette file (kept from before, plus recorded and written)."""
        return self._on_disk

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    @property
    def write_errors(self) -> int:
        return self.writer.errors + self._remote_errors

    def scrubbed(self, i: Interaction) -> Interaction:
        """The exchange as it may touch disk (journal or cassette): no secret in URL, headers or bodies."""
        s = self.scrubber
        body = s.body(i.response_body)
        chunks = [len(body)] if i.chunks is not None and body is not i.response_body else i.chunks  # a secret cut
        return Interaction(i.method, s.url(i.uri), s.headers(i.request_headers), s.body(i.request_body), i.status,
                           i.reason, s.headers(i.response_headers), body, chunks, i.duration_ms, i.recorded_at,
                           i.blobs, i.faults, i.xid)

    async def add(self, interaction: Interaction) -> None:
        """Journal a whole exchange (call it before its answer is sent), then queue it for the writer;
        waits only when the queue is full (back-pressure)."""
        clean = self.scrubbed(interaction)
        if self.journal is not None:
            clean.xid = self.journal.whole(clean)
        await self._enqueue(clean)

    def stream_open(self, head: Interaction) -> tuple[int | None, Interaction]:
        """Journal a stream's request and response head (its body empty) before the first chunk goes
        out; returns its journal number and the scrubbed head, which `stream_close` completes."""
        clean = self.scrubbed(head)
        return (self.journal.head(clean) if self.journal is not None else None), clean

    def stream_chunk(self, number: int | None, data: bytes) -> None:
        """Journal a chunk just before it goes out."""
        if number is not None:
            self.journal.chunk(number, self.scrubber.body(data))

    async def stream_close(self, number: int | None, head: Interaction, chunks: list[bytes],
                           duration_ms: float) -> None:
        """The stream is over (whole, or cut): its end in the journal, the exchange to the writer.
        `head` is the scrubbed head `stream_open` returned; only the body is scrubbed here (whole: a
        secret may straddle two chunks)."""
        raw = b"".join(chunks)
        body = self.scrubber.body(raw)
        sizes = [len(c) for c in chunks] if body is raw else [len(body)]  # a secret cut: sizes changed
        clean = replace(head, response_body=body, chunks=sizes, duration_ms=duration_ms)
        if number is not None:
            clean.xid = self.journal.end(number, duration_ms)
        await self._enqueue(clean)

    async def _enqueue(self, interaction: Interaction) -> None:
        self._added += 1
        try:
            self._queue.put_nowait(interaction)
        except queue.Full:
            self.backpressure_waits += 1
            if self.backpressure_waits in (1, 10, 100) or self.backpressure_waits % 1000 == 0:
                log.warning("cassette writer is behind: %d exchanges queued; handlers wait for room (%d times so far)",
                            self._queue.maxsize, self.backpressure_waits)
            await asyncio.to_thread(self._queue.put, interaction)

    def _write_loop(self) -> None:
        """Batches of what has queued (at most 256) to the writer; a control item ends a batch."""
        while True:
            batch, control = [], None
            item = self._queue.get()
            if item is not _FLUSH and item is not _CLOSE:
                time.sleep(BATCH_GATHER)  # let a batch gather: one wake-up of this thread a batch, not one an exchange
            while True:
                if item is _FLUSH or item is _CLOSE:
                    control = item
                    break
                batch.append(item)
                if len(batch) >= 256:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            try:
                if batch and not self._writer_gone:
                    if self._conn is not None:
                        self._conn.send(("batch", batch))
                    else:
                        self._acknowledge(len(batch), self.writer.write(batch))
                if control is not None and not self._writer_gone:
                    self._send_control(control)
            except OSError:  # the writer process is gone (BrokenPipeError): the journal holds the rest
                with self._done:
                    self._writer_gone = True
                    self._done.notify_all()
            if control is _CLOSE:
                return

    def _send_control(self, item) -> None:
        if self._conn is not None:
            self._conn.send(("flush", None) if item is _FLUSH else ("close", None))
            return
        if item is _FLUSH:
            self.writer.flush()
        with self._done:
            self._flushed = True
            self._done.notify_all()

    def _ack_loop(self) -> None:
        while True:
            try:
                kind, payload = self._conn.recv()
            except (EOFError, OSError):  # the writer process is gone: nobody will acknowledge again
                with self._done:
                    self._writer_gone = True
                    self._done.notify_all()
                if self._proc is not None and self._proc.exitcode not in (0, None):
                    log.error("the cassette writer of %s died (exit %s): what it had not written stays in the "
                              "journal", self.path, self._proc.exitcode)
                return
            if kind == "written":
                n, disk, errors = payload
                self._remote_errors = errors
                self._acknowledge(n, disk)
            else:
                with self._done:
                    self._flushed = True
                    self._done.notify_all()
                if kind == "closed":
                    return

    def _acknowledge(self, n: int, disk: list[Interaction]) -> None:
        with self._done:
            start = self._written
            self._written += n
            self._on_disk += len(disk)
            self._done.notify_all()
        if self.journal is not None:
            for i in disk:
                self.journal.done(i.xid)
        if self.on_record:
            for k, i in enumerate(disk, 1):
                self.on_record(start + k, i)

    def wait_written(self, timeout: float | None = 30) -> bool:
        """Block until every exchange added so far is on disk."""
        target = self._added
        with self._done:
            return self._done.wait_for(lambda: self._written >= target or self._writer_gone, timeout)

    def _control(self, item, timeout: float | None) -> None:
        with self._done:
            self._flushed = False
        self._queue.put(item)
        with self._done:
            self._done.wait_for(lambda: self._flushed or self._writer_gone, timeout)

    def flush(self, timeout: float | None = None) -> None:
        """Write whatever is queued, then the whole cassette, atomically (on shutdown)."""
        if self._thread.is_alive():
            self._control(_FLUSH, timeout)

    def close(self, timeout: float | None = 60) -> None:
        """Flush, then stop the writer (and its process); the journal goes if everything is in the
        cassette, and stays (for recovery) if not."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            self.flush(timeout)
            self._control(_CLOSE, timeout)
            self._thread.join(timeout)
        if self._proc is not None:
            self._proc.join(timeout)
        if self.journal is not None:
            whole = self.write_errors == 0 and self._written >= self._added and not self._writer_gone
            self.journal.close(remove=whole)
            if not whole:
                log.error("cassette %s may lack exchanges (%d write errors): its journal %s is kept; "
                          "harness cassette recover %s puts them in", self.path, self.write_errors,
                          self.journal.dir, self.path)
