"""Export: one row per exchange of a capture (where it sits, what it was, its tokens, the audit's
anomaly kinds), as columns or a Parquet file for DuckDB, Spark or Trino."""

from __future__ import annotations

from pathlib import Path

from .index import exchanges
from .linking import Linker
from .policy import PolicyTimeline


COLUMNS = ("exchange", "conversation", "turn", "mode", "method", "path", "status", "prompt_ids", "completion_ids",
           "completion_logprobs", "finish_reason", "duration_ms", "recorded_at", "faults", "anomalies", "weight_version",
           "group", "causes")


def deployment_of(source, decode="auto"):
    """The deployment whose template the bridges are checked against (`bridge.Deployment`), for "auto": the
    one the capture's meta names, or the built-in; None when it cannot be loaded (no causes, no bridge check)."""
    if decode != "auto":
        return decode
    from .bridge import Deployment
    from .index import capture_meta

    try:
        return Deployment.load(None, capture_meta(source))
    except (OSError, ValueError):
        return None


def export_rows(source, decode=None):
    """One row per exchange, in order, read once: where it sits (conversation, turn, group), what it was (mode,
    route, status, latency) and its tokens (ids and logprobs as lists), with the audit's anomaly kinds and their
    causes (one per kind, "" where none is told; `decode`: a bridge.Deployment, for bridge checks and causes)."""
    linker = Linker(decode, keep_tokens=True, on_close=lambda conv: None)
    policy = PolicyTimeline()  # the policy version each turn ended under (policy.py)
    for n, _, i in exchanges(source):
        placed = linker.add(n, i)
        conv, k, t, kinds = placed if placed else (None, None, None, [])
        policy.add(n, i, conv.id if conv else -1)
        yield {"exchange": n, "conversation": conv.id if conv else None, "turn": k, "mode": t.mode if t else None,
               "method": i.method, "path": i.path, "status": i.status, "prompt_ids": t.prompt_ids if t else None,
               "completion_ids": t.completion_ids if t else None,
               "completion_logprobs": t.completion_logprobs if t else None,
               "finish_reason": t.finish_reason if t else None, "duration_ms": i.duration_ms,
               "recorded_at": i.recorded_at, "faults": list(i.faults or []), "anomalies": kinds,
               "weight_version": policy.version_of(n) if t else None, "group": conv.group if conv else None,
               "causes": [a.cause or "" for a in conv.anomalies if a.exchange == n] if conv else []}
        if t is not None:  # the row has them; the conversation need not keep them
            t.prompt_ids = t.completion_ids = t.completion_logprobs = None


def export_columns(source, decode=None) -> dict[str, list]:
    cols: dict[str, list] = {name: [] for name in COLUMNS}
    for row in export_rows(source, decode):
        for key, v in row.items():
            cols[key].append(v)
    return cols


def export_parquet(source, out, batch: int = 4096, decode="auto") -> int:
    """Write `export_rows` as a Parquet file (pyarrow), a batch at a time; returns the rows written."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError("Parquet export needs pyarrow: pip install 'tito-harness[analytics]'") from None
    ids, lps, strs = pa.list_(pa.int32()), pa.list_(pa.float32()), pa.list_(pa.string())
    schema = pa.schema([("exchange", pa.int64()), ("conversation", pa.int64()), ("turn", pa.int32()),
                        ("mode", pa.string()), ("method", pa.string()), ("path", pa.string()), ("status", pa.int32()),
                        ("prompt_ids", ids), ("completion_ids", ids), ("completion_logprobs", lps),
                        ("finish_reason", pa.string()), ("duration_ms", pa.float64()), ("recorded_at", pa.float64()),
                        ("faults", strs), ("anomalies", strs), ("weight_version", pa.string()), ("group", pa.int64()),
                        ("causes", strs)])
    rows = 0
    with pq.ParquetWriter(out, schema, compression="zstd") as writer:
        pending: list[dict] = []
        for row in export_rows(source, deployment_of(source, decode)):
            pending.append(row)
            if len(pending) >= batch:
                writer.write_batch(pa.RecordBatch.from_pylist(pending, schema=schema))
                rows, pending = rows + len(pending), []
        if pending or not rows:
            writer.write_batch(pa.RecordBatch.from_pylist(pending, schema=schema))
            rows += len(pending)
    return rows

def capture_name(source) -> str:
    """A capture's partition value: a run's folder name, or a file's stem (`step1200`)."""
    import re

    from ..recording.segments import run_dir

    p = Path(str(source).split("*")[0].rstrip("/")) if "*" in str(source) else Path(source)
    if not p.exists() and run_dir(p).is_dir():
        p = run_dir(p)
    name = p.name if p.is_dir() else p.stem
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "capture"


def export_dataset(sources, out) -> dict[str, int]:
    """A Parquet dataset partitioned by capture, hive style (`OUT/capture=step1200/part-0.parquet`), one
    partition per capture given (a file, a run's segments, a folder or a glob); DuckDB, Spark and Trino read
    `capture` as a column. Returns each partition's rows."""
    out = Path(out)
    written: dict[str, int] = {}
    for source in sources:
        name = capture_name(source)
        if name in written:
            raise ValueError(f"two captures are both named {name}: export them to separate datasets")
        part = out / f"capture={name}"
        part.mkdir(parents=True, exist_ok=True)
        written[name] = export_parquet(source, part / "part-0.parquet")
    return written
