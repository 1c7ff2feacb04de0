"""Cassettes: vcrpy's YAML format (version 1), readable, plus our `meta`.

Stock vcrpy and pytest-recording load these files (they read `interactions` and `version`, and
ignore the top-level `meta` and the extra `x_tito` key of a response). Readability: JSON bodies
are stored pretty-printed, one key per line, when compacting them again gives the recorded bytes
exactly (`x_tito.compact: true`); otherwise the exact text is kept. A streamed (SSE) answer keeps
its exact text and `x_tito.chunks`, the size in bytes of each chunk as it arrived, so replay sends
the same chunking. Writes are atomic: temp file, fsync, rename.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from ..wire import sse

SCHEMA_VERSION = 2  # 2: every write ends with the end line (truncation is told); x_tito.id
VCR_VERSION = 1

try:  # libyaml when present: 10x faster on large cassettes
    _Dumper = yaml.CSafeDumper
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _Dumper, _Loader = yaml.SafeDumper, yaml.SafeLoader


class _ReadableDumper(_Dumper):
    def ignore_aliases(self, data):  # no &id001 anchors: every message spelled out, for review
        return True


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _str(dumper, data: str):
    if "\n" in data and not _CONTROL.search(data) and not data.endswith((" ", "\t")):
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_ReadableDumper.add_representer(str, _str)


# called with a cassette's path before it is read (journal.py registers the recovery of an interrupted
# recording here, so that every tool loads the whole of it)
BEFORE_LOAD: list = []


class CassetteError(ValueError):
    """A file that is not a cassette we can read; the message says what is wrong."""


def _compact(value) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


_SCALAR_LIST = re.compile(rb"\[\n(?:[ ]+(?:-?[0-9][0-9.eE+-]*|true|false|null),?\n)+[ ]*\]")


def _one_line(m: re.Match) -> bytes:
    return b"[" + b", ".join(x.strip().rstrip(b",") for x in m.group(0)[1:-1].split(b"\n") if x.strip()) + b"]"


def pretty_json(value) -> str:
    """One key per line; lists of numbers (token ids, logprobs) stay on one line."""
    text = orjson.dumps(value, option=orjson.OPT_INDENT_2)
    return _SCALAR_LIST.sub(_one_line, text).decode("utf-8")


def readable_json(body: bytes) -> tuple[str | None, bool]:
    """(text to store, compact flag): pretty JSON when compacting it restores `body` exactly."""
    if not body:
        return ("" if body == b"" else None), False
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None, False
    stripped = text.lstrip()
    if stripped[:1] in ("{", "[") and len(body) < 4 * 1024 * 1024:
        try:
            value = orjson.loads(body)
            if orjson.dumps(value) == body and _compact(value) == body:  # orjson's pretty form reads back the same
                return pretty_json(value), True
        except (orjson.JSONDecodeError, orjson.JSONEncodeError, TypeError):
            pass
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):  # (nested past the parser's depth: kept as the exact text)
            return text, False
        if _compact(value) == body:
            try:
                pretty = pretty_json(value)
                if _compact(json.loads(pretty)) == body:  # e.g. NaN or huge ints would not survive
                    return pretty, True
            except (TypeError, ValueError, orjson.JSONEncodeError):
                pass
    return text, False


@dataclass
class Interaction:
    method: str
    uri: str
    request_headers: dict[str, list[str]]
    request_body: bytes
    status: int
    reason: str
    response_headers: dict[str, list[str]]
    response_body: bytes
    chunks: list[int] | None = None  # SSE: byte sizes of the chunks as they arrived
    duration_ms: float | None = None
    recorded_at: float | None = None  # epoch seconds when the request arrived (orders merged shards)
    blobs: list[str] | None = None  # digests of the blobs taken out of the response body (blobs.py)
    faults: list[str] | None = None  # catalogue faults injected into this exchange (harness chaos)
    xid: str | None = None  # the recorder's journal id (journal.py): recovery adds only what the cassette lacks

    @property
    def path(self) -> str:
        from urllib.parse import urlsplit

        return urlsplit(self.uri).path

    def request_json(self) -> Any:
        try:
            return json.loads(self.request_body) if self.request_body else None
        except (ValueError, RecursionError):  # (not JSON, or nested past the parser's depth)
            return None

    def response_json(self) -> Any:
        try:
            return json.loads(self.response_body)
        except (ValueError, RecursionError):
            return None

    def is_stream(self) -> bool:
        ctype = ",".join(self.response_headers.get("content-type", self.response_headers.get("Content-Type", [])))
        return "text/event-stream" in ctype.lower() or self.chunks is not None

    def sse_chunks(self) -> list[dict]:
        return sse.chunks(self.response_body.decode("utf-8", "replace"))

    # -- vcrpy dicts ---------------------------------------------------------------------------
    def to_vcr(self) -> dict:
        req_text, req_compact = readable_json(self.request_body)
        req_raw = None
        if req_text is None and self.request_body:  # not UTF-8: readable text for review, exact bytes beside
            req_text = self.request_body.decode("latin-1")
            import base64

            req_raw = base64.b64encode(self.request_body).decode()
        if self.chunks is not None:  # streamed: exact text, so the chunk sizes still add up
            try:
                resp_text, resp_compact = self.response_body.decode("utf-8"), False
            except UnicodeDecodeError:
                resp_text, resp_compact = None, False
        else:
            resp_text, resp_compact = readable_json(self.response_body)
        extra: dict[str, Any] = {}
        if resp_text is None and self.response_body:
            import base64

            extra["base64"] = base64.b64encode(self.response_body).decode()
        if resp_compact:
            extra["compact"] = True
        if req_compact:
            extra["request_compact"] = True
        if req_raw is not None:
            extra["request_base64"] = req_raw
        if self.chunks is not None:
            extra["chunks"] = list(self.chunks)
        if self.duration_ms is not None:
            extra["duration_ms"] = round(self.duration_ms, 2)
        if self.recorded_at is not None:
            extra["recorded_at"] = round(self.recorded_at, 6)
        if self.blobs:
            extra["blobs"] = list(self.blobs)
        if self.faults:
            extra["faults"] = list(self.faults)
        if self.xid:
            extra["id"] = self.xid
        response = {"status": {"code": self.status, "message": self.reason},
                    "headers": self.response_headers, "body": {"string": resp_text}}
        if extra:
            response["x_tito"] = extra
        return {"request": {"body": req_text if self.request_body else None, "headers": self.request_headers,
                            "method": self.method, "uri": self.uri},
                "response": response}

    @classmethod
    def from_vcr(cls, d: dict) -> "Interaction":
        try:
            req, resp = d["request"], d["response"]
            extra = resp.get("x_tito") or {}
            if extra.get("base64"):
                import base64

                raw = base64.b64decode(extra["base64"])
            else:
                raw = _stored_bytes(resp.get("body", {}).get("string"), extra.get("compact"))
            if extra.get("request_base64"):
                import base64

                rraw = base64.b64decode(extra["request_base64"])
            else:
                rraw = _stored_bytes(req.get("body"), extra.get("request_compact"))
            status = resp["status"]
            code = int(status["code"])
            if not 100 <= code <= 999:
                raise ValueError(f"status {code} is no HTTP status")
            return cls(_typed(req["method"], str, "method"), _typed(req["uri"], str, "uri"),
                       _headers(req.get("headers")), rraw, code, str(status.get("message") or ""),
                       _headers(resp.get("headers")), raw,
                       _typed(extra.get("chunks"), list, "chunks", int), _typed(extra.get("duration_ms"), (int, float),
                       "duration_ms"), _typed(extra.get("recorded_at"), (int, float), "recorded_at"),
                       _typed(extra.get("blobs"), list, "blobs", str), _typed(extra.get("faults"), list, "faults", str),
                       _typed(extra.get("id"), str, "id"))
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RecursionError) as exc:
            raise CassetteError(f"malformed interaction ({type(exc).__name__}: {exc})") from None


def _typed(value, kind, name: str, item=None):
    """`value` when None or of `kind` (a list's items of `item`); a TypeError naming the field otherwise."""
    if value is None or (isinstance(value, kind) and type(value) is not bool and (
            item is None or all(type(v) is item for v in value))):
        return value
    raise TypeError(f"{name} is {type(value).__name__} {str(value)[:40]!r}")


_EXPONENT = re.compile(rb"[0-9][eE][-+0-9]")


def _stored_bytes(text, compact: bool) -> bytes:
    """The recorded bytes of a stored body (pretty JSON is compacted back when flagged)."""
    if text is None:
        return b""
    if isinstance(text, bytes):
        return text
    if not compact:
        return text.encode("utf-8")
    try:
        value = orjson.loads(text)
        fast = orjson.dumps(value)
        # the same bytes as the stdlib's compact form unless a float is written with an exponent (1e-05 / 1e-5)
        return fast if not _EXPONENT.search(fast) else _compact(value)
    except (orjson.JSONDecodeError, TypeError):  # (NaN, integers past 64 bits, deep nesting: the stdlib reads them)
        return _compact(json.loads(text))


def _headers(h) -> dict[str, list[str]]:
    if not h:
        return {}
    return {str(k): [str(x) for x in (v if isinstance(v, list) else [v])] for k, v in h.items()}


def _exists(p: Path) -> None:
    if p.is_dir():
        raise CassetteError(f"{p} is a directory: give a cassette file (.yaml)")
    if not p.exists():
        raise CassetteError(f"no cassette at {p}")


@dataclass
class Cassette:
    interactions: list[Interaction] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | os.PathLike, resolve_blobs: bool = True, recover_journal: bool = True) -> "Cassette":
        """Read a cassette; blobs stored beside it are put back into the bodies (with
        `resolve_blobs=False` the bodies keep their markers and `Interaction.blobs` its digests).
        The journal of an interrupted recording beside it is put into it first (journal.py), and a
        file cut off mid-write is refused with where it was cut."""
        p = Path(path)
        _exists(p)
        if recover_journal:
            for hook in BEFORE_LOAD:
                hook(p)
        raw = p.read_bytes()
        truncated = truncation(raw)
        if truncated:
            raise CassetteError(f"{p} {truncated}")
        try:
            data = yaml.load(raw.decode("utf-8"), Loader=_Loader)
        except UnicodeDecodeError as exc:
            raise CassetteError(f"{p} is not a cassette: not UTF-8 text (byte {exc.start})") from None
        except yaml.YAMLError as exc:
            raise CassetteError(f"{p} is not valid YAML: {exc}") from None
        if not isinstance(data, dict) or "interactions" not in data:
            raise CassetteError(f"{p} is not a vcrpy cassette (no 'interactions')")
        if data.get("version") != VCR_VERSION:
            raise CassetteError(f"{p}: cassette version {data.get('version')!r}, expected {VCR_VERSION}")
        if not isinstance(data.get("meta") or {}, dict) or not isinstance(data["interactions"] or [], list):
            raise CassetteError(f"{p}: 'meta' must be a mapping and 'interactions' a list")
        interactions = []
        store = None
        for i, d in enumerate(data["interactions"] or []):
            try:
                inter = Interaction.from_vcr(d)
                if inter.blobs and resolve_blobs:  # the exact base64 text back from the blob folder beside the file
                    from .blobs import BlobStore, blob_dir

                    store = store or BlobStore(blob_dir(p))
                    inter.response_body = store.put_back(inter.response_body)
                    inter.blobs = None
                interactions.append(inter)
            except (CassetteError, FileNotFoundError) as exc:
                raise CassetteError(f"{p}: interaction {i}: {exc}") from None
        return cls(interactions, data.get("meta") or {})

    def to_yaml(self) -> str:
        meta = {"schema_version": SCHEMA_VERSION, **{k: v for k, v in self.meta.items() if k != "schema_version"}}
        head = yaml.dump({"version": VCR_VERSION, "meta": meta}, Dumper=_ReadableDumper, sort_keys=False,
                         allow_unicode=True, width=120)
        items = items_yaml(self.interactions)
        return head + ("interactions:\n" + items if items else "interactions: []\n") + end_line(len(self.interactions))

    def save(self, path: str | os.PathLike, blob_threshold: int | None = None) -> None:
        """Write atomically; large base64 blobs go to the blob folder beside the file (blobs.py)."""
        from .blobs import DEFAULT_THRESHOLD, BlobStore, blob_dir

        store = BlobStore(blob_dir(path), blob_threshold or DEFAULT_THRESHOLD)
        disk = [store.out_of_line(i) for i in self.interactions]
        atomic_write(Path(path), Cassette(disk, self.meta).to_yaml().encode("utf-8"))


_INTERACTIONS = b"\ninteractions:\n"
_BLOCK = 8 << 20


@dataclass
class Span:
    """Where one interaction sits in a cassette file (bytes start:end)."""
    start: int
    end: int


def read_meta(path: str | os.PathLike) -> dict:
    """A cassette's provenance, read from its head alone (the `meta` block comes before `interactions`)."""
    _exists(Path(path))
    with open(path, "rb") as f:
        head = f.read(1 << 20)
    at = head.find(_INTERACTIONS)
    try:
        data = yaml.load(head[:at], Loader=_Loader) if at != -1 else None
    except yaml.YAMLError:
        data = None
    if not isinstance(data, dict):
        return Cassette.load(path, resolve_blobs=False).meta
    if not isinstance(data.get("meta") or {}, dict):
        raise CassetteError(f"{path}: 'meta' must be a mapping")
    return data.get("meta") or {}


def iter_spans(path: str | os.PathLike):
    """The byte span of each interaction, found by reading the file in blocks: memory stays flat however
    large the capture. Yields nothing for a file not laid out as the recorder and vcrpy write it
    (unindented `- request:` items under a last `interactions:` key); `iter_interactions` then falls
    back to a whole load."""
    with open(path, "rb") as f:
        buf, base, current = b"", 0, None  # base: file offset of buf[0]; current: start of the item being read
        while True:
            block = f.read(_BLOCK)
            buf += block
            if current is None:
                at = buf.find(_INTERACTIONS)
                first = at + len(_INTERACTIONS)
                if at == -1 or (block and len(buf) < first + 10):
                    if not block:
                        return
                    continue
                if not buf.startswith(b"- request:", first):
                    return
                current = base + first
            while True:
                nxt = buf.find(_ITEM, current - base + 1)
                if nxt == -1:
                    break
                yield Span(current, base + nxt + 1)
                current = base + nxt + 1
            if not block:
                yield Span(current, base + len(buf))
                return
            base, buf = current, buf[current - base:]


def load_span(f, span: Span, path=None, store=None, resolve_blobs: bool = True) -> Interaction:
    """One interaction read from an open cassette file at its span."""
    f.seek(span.start)
    raw = f.read(span.end - span.start)
    from .layout import parse

    try:
        fast = parse(raw.decode("utf-8"))
    except UnicodeDecodeError:
        fast = None
    try:
        items = [fast] if fast is not None else yaml.load(raw, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise CassetteError(f"{path}: the interaction at byte {span.start} is not valid YAML: {exc}") from None
    if not isinstance(items, list) or len(items) != 1:
        raise CassetteError(f"{path}: the interaction at byte {span.start} is not one vcrpy interaction")
    inter = Interaction.from_vcr(items[0])
    if inter.blobs and resolve_blobs and store is not None:
        inter.response_body = store.put_back(inter.response_body)
        inter.blobs = None
    return inter


def iter_interactions(path: str | os.PathLike, resolve_blobs: bool = True, spans: list | None = None):
    """(index, span, interaction) for every interaction of a cassette, one at a time: a capture of any size
    is read in flat memory. The checks of `Cassette.load` come first (journal recovery, a file cut off
    mid-write). `span` is None where the file's layout made a whole load necessary. With `spans` (an
    index's), only those are read."""
    p = Path(path)
    _exists(p)
    for hook in BEFORE_LOAD:
        hook(p)
    with open(p, "rb") as f:
        f.seek(max(0, p.stat().st_size - 64))
        tail = f.read()
        f.seek(0)
        head = f.read(4096)
    if not _written_whole(head, tail):
        raise CassetteError(f"{p} {truncation(p.read_bytes())}")
    from .blobs import BlobStore, blob_dir

    store = BlobStore(blob_dir(p)) if resolve_blobs and blob_dir(p).exists() else None
    given = spans is not None
    if spans is None:
        spans = iter_spans(p)
    n = -1
    with open(p, "rb") as f:
        for n, span in enumerate(spans):
            try:
                yield n, span, load_span(f, span, p, store, resolve_blobs)
            except (CassetteError, FileNotFoundError) as exc:
                raise CassetteError(f"{p}: interaction {n}: {exc}") from None
    if n == -1 and not given:
        whole = Cassette.load(p, resolve_blobs=resolve_blobs, recover_journal=False)
        for k, inter in enumerate(whole.interactions):
            yield k, None, inter


def shipped(relative: str) -> Path:
    """A cassette that ships with the package (the checkout's `cassettes/`, installed as
    `harness.cassettes`), e.g. `shipped("real/vllm-0.32-cpu/rollout_4_turns_tools.yaml")`."""
    from importlib.resources import files

    path = Path(str(files("harness.cassettes").joinpath(relative)))
    if not path.exists():
        raise CassetteError(f"the package carries no cassette {relative} (a broken install?)")
    return path


def cassette_files(path: str | os.PathLike) -> list[Path]:
    """The cassettes under a directory (recursively), or the one file; CassetteError when there are none."""
    p = Path(path)
    if any(c in str(path) for c in "*?[") and not p.exists():  # a glob: its files, in order
        import glob

        files = sorted(Path(f) for f in glob.glob(str(path), recursive=True) if f.endswith((".yaml", ".yml")))
        if not files:
            raise CassetteError(f"no cassettes match {path}")
        return files
    from .segments import MANIFEST, run_dir, segment_files

    if not p.exists() and (run_dir(p) / MANIFEST).is_file():  # a rotated run named by its cassette
        p = run_dir(p)
    if (p / MANIFEST).is_file():  # a run's segments, in the manifest's order
        return segment_files(p)
    if p.is_dir():
        files = sorted(p.rglob("*.yaml"))
        if not files:
            raise CassetteError(f"no cassettes (*.yaml) under {p}")
        return files
    if not p.exists():
        raise CassetteError(f"no cassette at {p}")
    return [p]


def interactions_yaml(interactions: list[Interaction], total: int) -> str:
    """Interactions as the tail of a cassette file: appending this text keeps the file a cassette
    (`interactions` is the last key, and PyYAML writes its items unindented); `total`: how many the
    file then holds, for its end line."""
    return items_yaml(interactions) + end_line(total)


def items_yaml(interactions) -> str:
    """Interactions as top-level sequence items, in the recorder's layout (layout.py); one a value of which
    that layout does not write goes through PyYAML (without the document end marker it may add)."""
    from .layout import emit

    out = []
    for i in interactions:
        d = i.to_vcr()
        text = emit(d)
        if text is None:
            text = yaml.dump([d], Dumper=_ReadableDumper, sort_keys=False, allow_unicode=True, width=120)
            if text.endswith("\n...\n"):
                text = text[:-4]
        out.append(text)
    return "".join(out)


_END = re.compile(rb"# end of cassette: ([0-9]+) interactions?\n\Z")
_ITEM = b"\n- request:"
_SCHEMA = re.compile(rb"\n  schema_version: ([0-9]+)\n")


def end_line(count: int) -> str:
    """Every write of a cassette (whole, or an appended batch) ends with this line: a file of schema 2
    or later that does not end with one was cut off mid-write."""
    return f"# end of cassette: {count} interaction{'s' if count != 1 else ''}\n"


def _written_whole(head: bytes, tail: bytes) -> bool:
    """From a file's first 4 KiB and last 64 bytes: written to its end (or from before end lines)?"""
    if _END.search(tail):
        return True
    schema = _SCHEMA.search(head)
    return not schema or int(schema.group(1)) < 2


def _cut_point(raw: bytes) -> tuple[int, int] | None:
    """None for a whole file (or one from before end lines); else (bytes that are whole, whole
    interactions): a cut file is whole up to the start of its last interaction."""
    if _written_whole(raw[:4096], raw[-64:]):
        return None
    last = raw.rfind(_ITEM)
    if last == -1:
        return len(raw), 0  # cut before the first interaction
    return last + 1, raw.count(_ITEM, 0, last)


def truncation(raw: bytes) -> str | None:
    """None for a whole file; else where it was cut, in words."""
    cut = _cut_point(raw)
    if cut is None:
        return None
    at, whole = cut
    return (f"is cut off (it was not written to its end): it ends at byte {len(raw)}, inside interaction {whole + 1}; "
            f"the {whole} before it are whole (`harness cassette recover` keeps them)")


def cut_to_last_whole_batch(path: Path) -> int:
    """Cut a file that was cut off mid-write back to its whole interactions (and end it properly);
    returns the bytes cut."""
    raw = path.read_bytes()
    cut = _cut_point(raw)
    if cut is None:
        return 0
    at, whole = cut
    with open(path, "r+b") as f:
        f.truncate(at)
        f.seek(at)
        f.write((("" if raw[:at].endswith(b"\n") else "\n") + end_line(whole)).encode())
        f.flush()
        os.fsync(f.fileno())
    return len(raw) - at


def append_durably(path: Path, data: bytes) -> None:
    """One write() of the whole batch, then fsync: a killed process leaves all of it or none."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so a reader (or a crash) sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def provenance(**kw) -> dict:
    """A `meta` mapping: server kind/version, model, hardware, scenario, when, and by what."""
    from .. import __version__

    return {"recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "recorder": f"tito-harness {__version__}", **{k: v for k, v in kw.items() if v is not None}}
