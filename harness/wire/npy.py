"""The `.npy` format as routed experts travel in it (upstream vLLM's base64 `.npy`): write an array, find
and read the header in place (the array bytes are never touched)."""

from __future__ import annotations

import ast
import io

import numpy as np

MAGIC = b"\x93NUMPY"


class NpyError(ValueError):
    pass


def to_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def header_span(raw: bytes) -> tuple[int, int]:
    """(offset, length) of the header text of an `.npy` file."""
    major = raw[6] if len(raw) > 7 else 0
    if major == 1:
        return 10, int.from_bytes(raw[8:10], "little")
    if major in (2, 3):
        return 12, int.from_bytes(raw[8:12], "little")
    raise NpyError(f".npy header has unknown version {major}")


def read_header(raw: bytes) -> tuple[dict, int]:
    """(header dict, offset of the array bytes), read without touching the array."""
    at, size = header_span(raw)
    try:
        header = ast.literal_eval(raw[at:at + size].decode("latin-1").strip())
    except (ValueError, SyntaxError) as exc:
        raise NpyError(f".npy header is not readable: {exc}") from None
    if not isinstance(header, dict) or not isinstance(header.get("shape"), tuple):
        raise NpyError(f".npy header has no shape: {header!r:.200}")
    return header, at + size
