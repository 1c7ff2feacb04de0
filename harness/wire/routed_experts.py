"""Routed-experts payloads on the wire: encode an array in each format a server version sends; cut the
base64 blob out of a raw body, then decode it to numpy.

Encoding (WIRE.md, "Routed experts"): the engine keeps one routing array per answer, one row per token of
prompt + completion. The last sampled token was never forwarded, so every format carries `tokens - 1` rows;
a request's `routed_experts_prompt_start: N` drops the first N prompt rows.

Decoding:

A 32k-token, 48-layer, top-8 answer carries ~16 MB of base64. `split_body` finds each
`"routed_experts"` member at JSON structure level (never inside a string). For the object forms
(`{data, shape, start?, dtype?}`: prime-rl, Dynamo + vLLM) it locates the object's own `"data"`
member whatever the key order and whatever nested objects hold `data` keys of their own; for the
string forms (upstream vLLM's base64 `.npy`, SGLang's base64 of raw int32) it takes the string
itself. Each blob is replaced by a short placeholder, so `orjson.loads` parses only the small
remainder, and stays a zero-copy memoryview of the body until `decode_payload` turns it into an
array with pybase64 (an `.npy` header is read in place; the array is a view of the decoded bytes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import orjson
import pybase64

from . import npy
from .profiles import EXPERTS_FORMATS

KEY = b'"routed_experts"'
PLACEHOLDER_PREFIX = "<routed_experts_blob:"  # never valid base64
DTYPES = {"uint8": np.uint8, "uint16": np.uint16, "int16": np.int16, "int32": np.int32}

_WS = b" \t\r\n"
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_BACKSLASH_RUN_QUOTE = re.compile(rb'(\\+)"')
_SCALAR = re.compile(rb'[^,}\]\s]+')


class RoutedExpertsError(ValueError):
    """A routed-experts payload that cannot be decoded; the message says why."""


@dataclass
class RoutedExperts:
    """Expert ids per token: `array[i, layer, k]` is the k-th expert of row `start + i`."""

    array: np.ndarray
    start: int = 0

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)


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


def _in_string(body: bytes, pos: int) -> bool:
    """Is byte `pos` inside a JSON string? Parity of the unescaped quotes before it."""
    quotes = body.count(b'"', 0, pos)
    if quotes and body.find(b"\\", 0, pos) != -1:
        for m in _BACKSLASH_RUN_QUOTE.finditer(body, 0, pos):
            if len(m.group(1)) % 2:
                quotes -= 1
    return quotes % 2 == 1


def _skip_ws(body: bytes, i: int) -> int:
    n = len(body)
    while i < n and body[i] in _WS:
        i += 1
    return i


def _skip_value(body: bytes, i: int) -> int:
    """Index just past the JSON value starting at `i` (strings, containers, scalars)."""
    c = body[i:i + 1]
    if c == b'"':
        m = _STRING.match(body, i)
        if not m:
            raise RoutedExpertsError("unterminated string inside routed_experts")
        return m.end()
    if c in (b"{", b"["):
        depth, j, n = 0, i, len(body)
        while j < n:
            ch = body[j]
            if ch == 0x22:  # '"'
                m = _STRING.match(body, j)
                if not m:
                    raise RoutedExpertsError("unterminated string inside routed_experts")
                j = m.end()
                continue
            if ch in (0x7B, 0x5B):
                depth += 1
            elif ch in (0x7D, 0x5D):
                depth -= 1
                if depth == 0:
                    return j + 1
            j += 1
        raise RoutedExpertsError("unterminated object inside routed_experts")
    m = _SCALAR.match(body, i)
    if not m:
        raise RoutedExpertsError(f"unexpected byte {c!r} inside routed_experts")
    return m.end()


def _data_span(body: bytes, obj_start: int) -> tuple[int, int] | None:
    """(start, end) of the base64 text of the object's own `data` member, or None."""
    i = obj_start + 1
    n = len(body)
    while True:
        i = _skip_ws(body, i)
        if i >= n:
            raise RoutedExpertsError("routed_experts object is not closed")
        if body[i] == 0x7D:  # '}'
            return None
        if body[i] == 0x2C:  # ','
            i += 1
            continue
        m = _STRING.match(body, i)
        if not m:
            raise RoutedExpertsError("malformed key inside routed_experts")
        key = m.group()
        i = _skip_ws(body, m.end())
        if body[i:i + 1] != b":":
            raise RoutedExpertsError("missing ':' inside routed_experts")
        i = _skip_ws(body, i + 1)
        if key == b'"data"' and body[i:i + 1] == b'"':
            end = _closing_quote(body, i + 1)
            if end == -1:
                raise RoutedExpertsError("routed_experts data string is not closed")
            return i + 1, end
        i = _skip_value(body, i)


def _closing_quote(body: bytes, start: int) -> int:
    """Index of the quote that closes the string starting at `start` (one memchr-speed scan:
    base64 holds no quotes; an escaped quote, which base64 never has, is stepped over)."""
    end = body.find(b'"', start)
    while end != -1 and body[end - 1] == 0x5C:  # '\"': count the backslashes before it
        k = end - 1
        while body[k] == 0x5C:
            k -= 1
        if (end - 1 - k) % 2 == 0:
            break
        end = body.find(b'"', end + 1)
    return end


def find_blobs(body: bytes) -> list[tuple[int, int]]:
    """Spans of every routed_experts `data` blob in a raw JSON body, in body order."""
    spans: list[tuple[int, int]] = []
    pos = 0
    while True:
        at = body.find(KEY, pos)
        if at == -1:
            return spans
        pos = at + len(KEY)
        j = _skip_ws(body, pos)
        if body[j:j + 1] != b":" or _in_string(body, at):
            continue
        j = _skip_ws(body, j + 1)
        opener = body[j:j + 1]
        if opener == b'"':  # the string forms: the whole string is the blob
            end = _closing_quote(body, j + 1)
            if end == -1:
                raise RoutedExpertsError("routed_experts string is not closed")
            spans.append((j + 1, end))
            pos = end + 1
            continue
        if opener != b"{":
            continue  # null or another non-object value
        span = _data_span(body, j)
        if span is not None:
            spans.append(span)
            pos = span[1]


def split_body(body: bytes) -> tuple[dict, list[memoryview]]:
    """Parse `body` with its routed-experts blobs cut out.

    Returns the parsed JSON (each blob's `data` replaced by a placeholder string) and the blobs as
    zero-copy memoryviews, in body order. Pass both to `decode_payload`.
    """
    if KEY not in body:
        return orjson.loads(body), []
    spans = find_blobs(body)
    if not spans:
        return orjson.loads(body), []
    view = memoryview(body)
    parts, blobs, last = [], [], 0
    for k, (s, e) in enumerate(spans):
        parts.append(view[last:s])
        parts.append(f"{PLACEHOLDER_PREFIX}{k}>".encode())
        blobs.append(view[s:e])
        last = e
    parts.append(view[last:])
    return orjson.loads(b"".join(parts)), blobs


def _blob(data, blobs: list[memoryview] | None):
    """The base64 bytes of `data`: a placeholder's blob, or the inline string."""
    if isinstance(data, str) and data.startswith(PLACEHOLDER_PREFIX):
        index = int(data[len(PLACEHOLDER_PREFIX):].rstrip(">"))
        if blobs is None or index >= len(blobs):
            raise RoutedExpertsError("routed_experts blob placeholder without its blob")
        return blobs[index]
    if isinstance(data, str):
        return data.encode("ascii", "replace")
    raise RoutedExpertsError(f"routed_experts data must be a base64 string, got {type(data).__name__}")


def _b64(raw) -> bytes:
    """Decode base64 (validated: a blob cut from the body holds its JSON escapes, e.g. `\\/`, which
    the validation refuses; such a rare blob is unescaped by the JSON parser and decoded again)."""
    try:
        return pybase64.b64decode(raw, validate=True)
    except ValueError as exc:
        blob = bytes(raw)
        if b"\\" in blob:
            try:
                return pybase64.b64decode(orjson.loads(b'"' + blob + b'"'), validate=True)
            except ValueError:
                pass
        raise RoutedExpertsError(f"routed_experts data is not valid base64: {exc}") from None


def _npy_header(decoded: bytes) -> tuple[dict, int]:
    """(header dict, offset of the array bytes) of an `.npy` file, read without touching the array."""
    try:
        return npy.read_header(decoded)
    except npy.NpyError as exc:
        raise RoutedExpertsError(f"routed_experts {exc}") from None


def decode_npy(decoded: bytes) -> np.ndarray:
    """An `.npy` file's array as a view of `decoded` (the header is parsed in place, nothing copied).
    A header without `descr` is read as uint8, like the object form without `dtype`."""
    header, offset = _npy_header(decoded)
    try:
        dtype = np.dtype(header.get("descr", "|u1"))
    except TypeError as exc:
        raise RoutedExpertsError(f"routed_experts .npy dtype is not usable: {exc}") from None
    if dtype.name not in DTYPES:
        raise RoutedExpertsError(f"routed_experts dtype {dtype.name!r} is not one of {', '.join(DTYPES)}")
    shape = header["shape"]
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(decoded) - offset != expected:
        raise RoutedExpertsError(f"routed_experts .npy holds {len(decoded) - offset} bytes but shape {list(shape)} "
                                 f"of {dtype.name} needs {expected}")
    arr = np.frombuffer(decoded, dtype=dtype, offset=offset).reshape(shape)
    return arr.T.reshape(shape[::-1]).T if header.get("fortran_order") else arr


def decode_payload(payload, blobs: list[memoryview] | None = None, start: int = 0) -> RoutedExperts:
    """Decode a routed_experts payload in any wire format (WIRE.md, "Routed experts"):
    `{data, shape, start?, dtype?}` (data inline, or a placeholder into `blobs`), a base64 `.npy`
    string (upstream vLLM; `start` = the `routed_experts_prompt_start` the request asked), or a
    base64 string of raw int32 bytes (SGLang: a flat array)."""
    if isinstance(payload, str):
        decoded = _b64(_blob(payload, blobs))
        if decoded[:6] == npy.MAGIC:
            return RoutedExperts(decode_npy(decoded), start)
        if len(decoded) % 4:
            raise RoutedExpertsError(f"routed_experts string holds {len(decoded)} bytes: not a whole number of "
                                     f"int32 ids, and no .npy header")
        return RoutedExperts(np.frombuffer(decoded, dtype=np.int32), start)
    if not isinstance(payload, dict):
        raise RoutedExpertsError(f"routed_experts must be an object or a base64 string, got {type(payload).__name__}")
    data = payload.get("data")
    shape = payload.get("shape")
    dtype_name = payload.get("dtype") or "uint8"
    start = payload.get("start") or 0
    if data is None:
        raise RoutedExpertsError("routed_experts has no 'data'")
    if dtype_name not in DTYPES:
        raise RoutedExpertsError(f"routed_experts dtype {dtype_name!r} is not one of {', '.join(DTYPES)}")
    if (not isinstance(shape, list) or not shape
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise RoutedExpertsError(f"routed_experts shape must be a list of non-negative ints, got {shape!r}")
    if not isinstance(start, int) or isinstance(start, bool) or start < 0:
        raise RoutedExpertsError(f"routed_experts start must be a non-negative int, got {start!r}")
    decoded = _b64(_blob(data, blobs))
    dtype = np.dtype(DTYPES[dtype_name])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(decoded) != expected:
        raise RoutedExpertsError(
            f"routed_experts holds {len(decoded)} bytes but shape {shape} of {dtype_name} needs {expected}")
    return RoutedExperts(np.frombuffer(decoded, dtype=dtype).reshape(shape), start)


def find_payload(body: dict) -> dict | None:
    """The routed_experts payload of a parsed answer, wherever the server put it."""
    nvext = body.get("nvext") if isinstance(body.get("nvext"), dict) else {}
    ed = nvext.get("engine_data") if isinstance(nvext.get("engine_data"), dict) else {}
    for holder in (ed, nvext, *(c for c in body.get("choices") or [] if isinstance(c, dict))):
        payload = holder.get("routed_experts")
        if payload is not None:
            return payload
    return None
