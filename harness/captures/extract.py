"""Cutting conversations out of a capture: a selection (conversations, exchanges, an anomaly kind) read
through the capture's index, written as a small cassette with its blobs."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ..recording.blobs import blob_dir
from ..recording.format import Cassette, CassetteError, Interaction, Span, atomic_write, iter_interactions, read_meta
from .audit import audit
from .index import CaptureIndex


def parse_exchanges(spec: str) -> list[int]:
    """'3,7-9' -> [3, 7, 8, 9]; ValueError with what is wrong."""
    out: list[int] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"--exchanges {spec!r}: write indices and ranges, e.g. 3,7-9")
        a, b = int(lo), int(hi) if sep else int(lo)
        if b < a:
            raise ValueError(f"--exchanges {spec!r}: {part} runs backwards")
        out.extend(range(a, b + 1))
    return sorted(set(out))


def select(where: list[int], by_kind: dict[str, list[int]], conversations=(), exchanges=(),
           anomaly: str | None = None) -> tuple[list[int], dict]:
    """The exchange indices a selection names (whole conversations for --conversation and --anomaly),
    given each exchange's conversation (-1 for none) and the conversations showing each anomaly kind;
    and a note of what was selected for the extract's meta."""
    chosen: set[int] = set(exchanges)
    wanted = set(conversations)
    known = set(where)
    unknown = [c for c in conversations if c < 0 or c not in known]
    if unknown:
        raise ValueError(f"no conversation {unknown[0]} in this capture (ids: harness cassette conversations)")
    if anomaly:
        hit = by_kind.get(anomaly) or []
        if not hit:
            raise ValueError(f"no conversation with a {anomaly} anomaly in this capture")
        wanted.update(hit)
    if wanted:
        chosen.update(n for n, c in enumerate(where) if c in wanted)
    past = [n for n in chosen if n >= len(where)]
    if past:
        raise ValueError(f"exchange {past[0]} is past the end ({len(where)} exchanges)")
    return sorted(chosen), {"conversations": list(conversations) or None, "exchanges": sorted(exchanges) or None,
                            "anomaly": anomaly}


@dataclass
class Selection:
    indices: list[int]  # each exchange's place in the capture
    cassette: Cassette  # the selected exchanges, with the capture's meta
    what: dict  # what was asked for, for an extract's meta


def read_selection(path, conversations=(), exchanges=(), anomaly: str | None = None,
                   resolve_blobs: bool = True) -> Selection:
    """The exchanges a selection names (whole conversations for `conversations` and `anomaly`; the whole
    capture when nothing is named), read through the capture's index: a conversation comes out of a capture of
    any size without parsing the rest. The index is the one beside the capture while it is current, else built
    by one audit pass (a file whose layout has no index is read whole). ValueError names what the capture
    does not have."""
    if Path(path).is_dir():  # said as Cassette.load says it, before the index is looked for
        raise CassetteError(f"{path} is a directory: give a cassette file (.yaml)")
    idx = CaptureIndex.load(path)
    report = audit(path, keep=False) if idx is None else None
    idx = idx if report is None else report.index
    where, by_kind = (report.where, report.by_kind) if idx is None else (idx.conversation, idx.anomalies)
    if conversations or exchanges or anomaly:
        indices, what = select(where, by_kind, conversations, exchanges, anomaly)
    else:
        indices, what = list(range(len(where))), {}
    spans = [Span(idx.starts[n], idx.ends[n]) for n in indices] if idx is not None else None
    wanted = set(indices)
    chosen = []
    for n, _, i in iter_interactions(path, resolve_blobs=resolve_blobs, spans=spans):
        if spans is not None or n in wanted:
            chosen.append(i)
    return Selection(indices, Cassette(chosen, report.meta if report is not None else read_meta(path)), what)


def exchange_map(path) -> tuple[CaptureIndex | None, list[int], dict[str, list[int]]]:
    """The capture's index (None for a file whose layout needs a whole load), each exchange's conversation
    (-1: not a turn) and the conversations showing each anomaly kind."""
    idx = CaptureIndex.load(path)
    if idx is not None:
        return idx, idx.conversation, idx.anomalies
    report = audit(path, keep=False)
    return report.index, report.where, report.by_kind


def read_exchanges(source, indices: list[int], idx: CaptureIndex | None = None,
                   resolve_blobs: bool = False) -> tuple[list[Interaction], dict]:
    """Chosen exchanges of a capture and its meta (`idx`: the capture's index; None: a whole load)."""
    if idx is None:
        src = Cassette.load(source, resolve_blobs=resolve_blobs)
        return [src.interactions[n] for n in indices], src.meta
    spans = [Span(idx.starts[n], idx.ends[n]) for n in indices]
    return [i for _, _, i in iter_interactions(source, resolve_blobs=resolve_blobs, spans=spans)], read_meta(source)


def conversation_exchanges(path, conversations) -> tuple[list[int], list[Interaction], dict]:
    """The exchanges of whole conversations (indices, interactions with their blobs put back, the capture's
    meta); ValueError naming an id the capture does not have."""
    sel = read_selection(path, conversations)
    return sel.indices, sel.cassette.interactions, sel.cassette.meta


def extract(source, out, conversations=(), exchanges=(), anomaly: str | None = None) -> Cassette:
    """A small cassette cut out of a capture: the selected exchanges in their order, the capture's
    provenance plus where they came from, blobs copied beside it. The capture's index finds them."""
    if not (conversations or exchanges or anomaly):
        raise ValueError("nothing selected: pass --conversation ID, --exchanges 3,7-9 or --anomaly KIND")
    sel = read_selection(source, conversations, exchanges, anomaly, resolve_blobs=False)
    if not sel.indices:
        raise ValueError("nothing selected: pass --conversation ID, --exchanges 3,7-9 or --anomaly KIND")
    meta = {**sel.cassette.meta, "extracted_from": {"cassette": str(Path(source).name), "exchanges": sel.indices,
                                                    **{k: v for k, v in sel.what.items() if v}}}
    cut = Cassette(sel.cassette.interactions, meta)
    copy_blobs(Path(source), Path(out), cut)
    atomic_write(Path(out), cut.to_yaml().encode("utf-8"))
    return cut



def copy_blobs(source, out, cassette: Cassette) -> None:
    digests = {d for i in cassette.interactions for d in (i.blobs or [])}
    if not digests:
        return
    dst = blob_dir(out)
    dst.mkdir(parents=True, exist_ok=True)
    for f in blob_dir(source).iterdir():
        if f.name.split(".")[0] in digests:
            shutil.copy2(f, dst / f.name)
