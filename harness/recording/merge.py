"""`harness cassette merge`: shards recorded side by side (workers of one recorder, or one recorder
per frontend of a multi-node Dynamo) into one cassette, ordered by the time each request arrived.

Bodies, ids and headers are kept as recorded; blob files are copied (content-addressed, so shared
blobs are stored once), never decoded. The merged `meta` is the first shard's, plus `merged_from`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .blobs import blob_dir
from .format import Cassette, CassetteError, atomic_write


def merge(out: str | os.PathLike, shards: list[str | os.PathLike]) -> Cassette:
    out = Path(out)
    if not shards:
        raise CassetteError("nothing to merge: name at least one cassette")
    if any(Path(s).resolve() == out.resolve() for s in shards):
        raise CassetteError(f"{out} is also an input: merge into a new file")
    loaded = [(Path(s), Cassette.load(s, resolve_blobs=False)) for s in shards]
    rows = []
    for k, (path, c) in enumerate(loaded):
        for n, i in enumerate(c.interactions):
            rows.append((i.recorded_at if i.recorded_at is not None else float("inf"), k, n, path, i))
    rows.sort(key=lambda r: r[:3])  # by arrival; ties (and untimed exchanges) keep shard and file order
    target = blob_dir(out)
    for _, _, _, path, i in rows:
        for digest in i.blobs or []:
            src = next((p for p in (blob_dir(path) / f"{digest}.bin", blob_dir(path) / f"{digest}.z") if p.exists()), None)
            if src is None:
                raise CassetteError(f"{path}: blob {digest} is missing from {blob_dir(path)}")
            dst = target / src.name
            if not dst.exists():
                target.mkdir(parents=True, exist_ok=True)
                tmp = dst.with_name(f".{dst.name}.tmp")
                shutil.copyfile(src, tmp)
                os.replace(tmp, dst)
    meta = {**loaded[0][1].meta, "merged_from": [p.name for p, _ in loaded]}
    merged = Cassette([r[4] for r in rows], meta)
    atomic_write(out, merged.to_yaml().encode("utf-8"))
    return merged
