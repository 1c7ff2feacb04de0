"""Routed experts on the wire, in each format a server version sends (WIRE.md, "Routed experts").

The engine keeps one routing array per answer, one row per token of prompt + completion. The last
sampled token was never forwarded, so every format carries `tokens - 1` rows; a request's
`routed_experts_prompt_start: N` drops the first N prompt rows.
"""

from __future__ import annotations

import numpy as np
import pybase64

from harness.wire import npy

from harness.wire.profiles import EXPERTS_FORMATS


def rows(array: np.ndarray, prompt_start: int = 0) -> np.ndarray:
    """The rows a server sends: all but the last token's, from `prompt_start` on."""
    return array[min(max(prompt_start, 0), max(len(array) - 1, 0)):max(len(array) - 1, 0)]


def encode(fmt: str, array: np.ndarray, prompt_start: int = 0):
    """The JSON value of `routed_experts` in format `fmt` (a string or an object)."""
    part = rows(array, prompt_start)
    start = min(max(prompt_start, 0), len(array))
    if fmt == "npy":
        return pybase64.b64encode(npy.to_bytes(part)).decode("ascii")
    if fmt in ("object", "nvext_object"):
        return {"data": pybase64.b64encode(np.ascontiguousarray(part).tobytes()).decode("ascii"),
                "shape": list(part.shape), "start": start, "dtype": part.dtype.name}
    if fmt == "b64_string":
        return pybase64.b64encode(np.ascontiguousarray(part, dtype=np.int32).tobytes()).decode("ascii")
    raise ValueError(f"unknown routed-experts format {fmt!r}; known: {', '.join(EXPERTS_FORMATS)}")


def cached(gen, fmt: str, prompt_start: int = 0):
    """`encode` once per answer, format and start (answers are cached by the engine)."""
    if gen.routed_experts is None:
        return None
    key = ("experts", fmt, prompt_start)
    value = gen.derived.get(key)
    if value is None:
        value = gen.derived[key] = encode(fmt, gen.routed_experts, prompt_start)
    return dict(value) if isinstance(value, dict) else value
