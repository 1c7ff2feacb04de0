"""Large base64 blobs (routed experts, in all four wire formats) stored out of line.

A recorded answer can carry megabytes of base64 (a 32k-token MoE answer: 16 MB). Kept in the
YAML it costs 1.36x its raw bytes and makes the file slow to load; here each such string is
decoded to its raw bytes and written once to a content-addressed file in a folder beside the
cassette (`run42.yaml` -> `run42.blobs/<sha256>.bin`, zlib-compressed `.z` where that pays). The
recorded body keeps a short marker in the string's place, `"<tito-blob:SHA256:LENGTH>"`, so it stays
valid JSON; loading the cassette puts the exact original base64 text back (a blob is taken out only
when re-encoding its bytes gives that text exactly).

Stock vcrpy, which knows nothing of the folder, loads such a cassette fine and sees the marker
string where the base64 was.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import zlib
from dataclasses import replace
from pathlib import Path

import pybase64

MARKER = re.compile(rb"<tito-blob:([0-9a-f]{64}):([0-9]+)>")
DEFAULT_THRESHOLD = 32 * 1024  # base64 characters
_B64_EDGE = re.compile(rb"[A-Za-z0-9+/]{16}")


def blob_dir(cassette: str | os.PathLike) -> Path:
    p = Path(cassette)
    return p.with_name(p.stem + ".blobs")


def _strings(body: bytes, threshold: int):
    """(start, end) of every JSON string of at least `threshold` bytes, in body order."""
    from ..wire.routed_experts import _closing_quote

    pos, n = 0, len(body)
    while pos < n:
        start = body.find(b'"', pos)
        if start == -1:
            return
        end = _closing_quote(body, start + 1)
        if end == -1:
            return
        if end - start - 1 >= threshold:
            yield start + 1, end
        pos = end + 1


class BlobStore:
    """Content-addressed raw bytes beside a cassette. Thread-safe for writers (files are written
    to a temp name and renamed: a reader or a crash never sees half a blob)."""

    def __init__(self, directory: str | os.PathLike, threshold: int = DEFAULT_THRESHOLD, compress: bool = True):
        self.dir = Path(directory)
        self.threshold = threshold
        self.compress = compress
        self.stored_bytes = 0  # raw bytes taken out of bodies
        self.disk_bytes = 0  # what they cost on disk (new files only)

    def _path(self, digest: str) -> Path | None:
        for suffix in (".bin", ".z"):
            p = self.dir / f"{digest}{suffix}"
            if p.exists():
                return p
        return None

    def put(self, raw: bytes) -> str:
        digest = hashlib.sha256(raw).hexdigest()
        self.stored_bytes += len(raw)
        if self._path(digest) is not None:
            return digest
        data, suffix = raw, ".bin"
        if self.compress and len(raw) >= 4096:
            sample = raw[:65536]
            if len(zlib.compress(sample, 1)) < 0.75 * len(sample):  # compress only where it pays (routing ids rarely do)
                data, suffix = zlib.compress(raw, 1), ".z"
        self.dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".blob.", dir=self.dir)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.dir / f"{digest}{suffix}")
        self.disk_bytes += len(data)
        return digest

    def get(self, digest: str) -> bytes:
        p = self._path(digest)
        if p is None:
            raise FileNotFoundError(f"blob {digest} is missing from {self.dir}")
        data = p.read_bytes()
        return zlib.decompress(data) if p.suffix == ".z" else data

    def out_of_line(self, interaction):
        """The exchange as the file holds it: its response's long base64 strings stored here and
        replaced by markers (`blobs` names them). A streamed answer keeps its exact text (its chunk
        sizes must still add up)."""
        if interaction.chunks is not None:
            return interaction
        body, digests = self.take_out(interaction.response_body)
        return replace(interaction, response_body=body, blobs=digests) if digests else interaction

    def take_out(self, body: bytes) -> tuple[bytes, list[str]]:
        """The body with every long base64 string replaced by a marker, and the digests stored."""
        if len(body) < self.threshold:
            return body, []
        parts, digests, last = [], [], 0
        view = memoryview(body)
        for s, e in _strings(body, self.threshold):
            if not (_B64_EDGE.match(body, s) and _B64_EDGE.fullmatch(body, max(s, e - 18), e - 2)):
                continue  # not base64 at its edges (quick test before decoding)
            try:
                raw = pybase64.b64decode(view[s:e], validate=True)
            except ValueError:
                continue
            if pybase64.b64encode(raw) != view[s:e]:
                continue  # not canonical base64: keep it inline so replay stays byte-identical
            digest = self.put(raw)
            parts += [view[last:s], b"<tito-blob:%s:%d>" % (digest.encode(), e - s)]
            digests.append(digest)
            last = e
        if not digests:
            return body, []
        parts.append(view[last:])
        return b"".join(parts), digests

    def put_back(self, body: bytes) -> bytes:
        """The recorded body with each marker replaced by its exact original base64 text."""
        if b"<tito-blob:" not in body:
            return body
        return MARKER.sub(lambda m: pybase64.b64encode(self.get(m.group(1).decode())), body)
