"""Reading a capture once: where each exchange sits in the file, and which conversation it belongs to.

The index is written beside the capture (`<file>.idx`) the first time it is audited, and trusted while the
file keeps its size and modification time; `extract`, `view` and `repro` then read only what they need.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import orjson

from ..recording.format import Cassette, Span, atomic_write, iter_interactions, read_meta

INDEX_VERSION = 2  # 2: auxiliary exchanges (/tokenize, /detokenize) carry their conversation


def index_path(path) -> Path:
    return Path(str(path) + ".idx")


@dataclass
class CaptureIndex:
    """Where each exchange sits in a capture file and which conversation it belongs to (-1: not a turn),
    with the conversations that show each anomaly kind: `extract` reads only what it needs. Written
    beside the capture (`<file>.idx`) the first time a capture is audited, listed or extracted from, and
    trusted while the file keeps its size and modification time."""
    size: int
    mtime_ns: int
    starts: list[int]
    ends: list[int]
    conversation: list[int]
    anomalies: dict[str, list[int]]

    @classmethod
    def load(cls, path) -> "CaptureIndex | None":
        p, idx = stat(path), index_path(path)
        try:
            data = orjson.loads(idx.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        if not isinstance(data, dict) or data.get("version") != INDEX_VERSION \
                or (data.get("size"), data.get("mtime_ns")) != p:
            return None
        try:
            return cls(data["size"], data["mtime_ns"], data["starts"], data["ends"], data["conversation"],
                       data["anomalies"])
        except KeyError:
            return None

    def save(self, path) -> bool:
        try:
            atomic_write(index_path(path), orjson.dumps({"version": INDEX_VERSION, **self.__dict__}))
            return True
        except OSError:  # a read-only place: the index lives in memory for this run
            return False

    def spans(self, exchanges) -> list:
        return [Span(self.starts[n], self.ends[n]) for n in exchanges]



def stat(path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def capture_meta(source) -> dict:
    """The meta of a Cassette, or of a capture file (read without its exchanges)."""
    if isinstance(source, Cassette):
        return source.meta
    from ..recording.format import cassette_files
    from ..recording.segments import is_capture_set

    return read_meta(cassette_files(source)[0] if is_capture_set(source) else source)


def exchanges(source):
    """(index, Span or None, Interaction) of a Cassette, or of a capture file read one exchange at a time."""
    if isinstance(source, Cassette):
        return ((n, None, i) for n, i in enumerate(source.interactions))
    from ..recording.segments import is_capture_set, iter_capture

    if is_capture_set(source):  # segments, a folder or a glob: one capture, conversations across files
        return iter_capture(source)
    return iter_interactions(source)
