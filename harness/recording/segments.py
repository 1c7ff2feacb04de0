"""A training run's capture as segments: `harness record --rotate SIZE|COUNT`.

Recording into `step1200.yaml` with `--rotate 10000` (exchanges) or `--rotate 256MB` (bytes) writes the
folder `step1200/`: segments `000000.yaml`, `000001.yaml`, ..., each a whole cassette of its own (its meta
names its segment), and `manifest.json`, rewritten atomically at each rotation, listing them in order
with how many exchanges each holds. The recorder's journal stays beside the run (`step1200.journal`): a
kill -9 loses nothing, and recovery puts what no segment holds into a segment of its own. Every tool takes
the folder (or a glob, or a segment) as one capture, in segment order.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import orjson

from .blobs import BlobStore, blob_dir
from .format import BEFORE_LOAD, Cassette, CassetteError, Interaction, atomic_write

MANIFEST = "manifest.json"
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?i?b)\Z", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30,
          "tib": 2**40}


def parse_rotate(spec: str) -> tuple[int | None, int | None]:
    """'10000' -> (None, 10000 exchanges); '256MB' -> (256000000 bytes, None); ValueError with what is wrong."""
    text = spec.strip()
    if text.isdigit() and int(text) > 0:
        return None, int(text)
    m = _SIZE.match(text)
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"--rotate {spec!r}: give a count of exchanges (10000) or a size (256MB, 1GiB)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()]), None


def run_dir(cassette: str | os.PathLike) -> Path:
    p = Path(cassette)
    return p.with_name(p.stem) if p.suffix else p.with_name(p.name + ".segments")


def segment_path(run: Path, k: int) -> Path:
    return run / f"{k:06d}.yaml"


def is_run(cassette: str | os.PathLike) -> bool:
    return (run_dir(cassette) / MANIFEST).is_file()


def read_manifest(run: Path) -> dict:
    try:
        return orjson.loads((run / MANIFEST).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise CassetteError(f"{run}: no readable {MANIFEST} ({exc})") from None


def write_manifest(run: Path, name: str, counts: list[int]) -> None:
    atomic_write(run / MANIFEST, orjson.dumps({"run": name, "segments": [segment_path(run, k).name
                                                                         for k in range(len(counts))],
                                               "exchanges": counts}, option=orjson.OPT_INDENT_2))


class Rotation:
    """Where a rotating writer is: the segment it writes, and when to start the next."""

    def __init__(self, cassette: Path, max_bytes: int | None, max_count: int | None):
        self.cassette, self.run = cassette, run_dir(cassette)
        self.max_bytes, self.max_count = max_bytes, max_count
        if self.run.exists() and any(self.run.glob("*.yaml")):
            raise CassetteError(f"{self.run} already holds segments: record the run under another name")
        self.run.mkdir(parents=True, exist_ok=True)
        self.counts = [0]
        write_manifest(self.run, cassette.stem, self.counts)

    @property
    def path(self) -> Path:
        return segment_path(self.run, len(self.counts) - 1)

    def due(self, count: int) -> bool:
        if self.max_count is not None and count >= self.max_count:
            return True
        return self.max_bytes is not None and self.path.exists() and self.path.stat().st_size >= self.max_bytes

    def next(self, count: int) -> Path:
        self.counts[-1] = count
        self.counts.append(0)
        write_manifest(self.run, self.cassette.stem, self.counts)
        return self.path

    def close(self, count: int) -> None:
        self.counts[-1] = count
        write_manifest(self.run, self.cassette.stem, self.counts)


def segment_files(run: Path) -> list[Path]:
    """A run folder's segments in order (the manifest's, then any it does not list yet); the journal of an
    interrupted recording of the run goes in first."""
    _recover_run(run / "000000.yaml")
    listed = [run / name for name in read_manifest(run).get("segments", [])]
    rest = sorted(p for p in run.glob("*.yaml") if p not in set(listed))
    return [p for p in listed if p.exists()] + rest


def put_missing(cassette: Path, exchanges: list[Interaction], blob_threshold: int) -> int:
    """Recovery of a rotated run: the journal's exchanges that no segment holds go into a new segment."""
    from .format import iter_spans, load_span

    run = run_dir(cassette)
    listed = [run / name for name in read_manifest(run).get("segments", [])]
    files = [p for p in listed if p.exists()] + sorted(p for p in run.glob("*.yaml") if p not in set(listed))
    have = set()
    for f in files:
        with open(f, "rb") as fh:
            for span in iter_spans(f):
                have.add(load_span(fh, span, f, None, resolve_blobs=False).xid)
    missing = sorted((e for e in exchanges if e.xid not in have), key=lambda e: e.recorded_at or 0)
    if not missing:
        return 0
    manifest = read_manifest(run)
    counts = list(manifest.get("exchanges") or [])
    k = max(len(counts), len(files))
    path = segment_path(run, k)
    store = BlobStore(blob_dir(path), blob_threshold)
    atomic_write(path, Cassette([store.out_of_line(i) for i in missing],
                                {"segment": k, "recovered": True}).to_yaml().encode("utf-8"))
    write_manifest(run, manifest.get("run") or cassette.stem, [*counts, *([0] * (k - len(counts))), len(missing)])
    return len(missing)


def _recover_run(path: Path) -> None:
    """Before a segment is read: the journal of an interrupted rotated recording goes in first."""
    run = path.parent
    if (run / MANIFEST).is_file() and path.suffix == ".yaml":
        from .journal import is_orphaned, recover

        cassette = run.with_name(run.name + ".yaml")
        if is_orphaned(cassette):
            recover(cassette)


BEFORE_LOAD.append(_recover_run)


def is_capture_set(source) -> bool:
    """A directory, a glob or a rotated run: several files read as one capture."""
    if not isinstance(source, (str, os.PathLike)):
        return False
    p = Path(source)
    return p.is_dir() or (not p.exists() and (any(c in str(source) for c in "*?[") or is_run(p)))


def iter_capture(source, resolve_blobs: bool = True):
    """(index, None, interaction) over every file of a capture set in order, numbered as one capture, so a
    conversation that crosses from one segment into the next reads as one."""
    from .format import cassette_files, iter_interactions

    n = 0
    for f in cassette_files(source):
        for _, _, i in iter_interactions(f, resolve_blobs=resolve_blobs):
            yield n, None, i
            n += 1
