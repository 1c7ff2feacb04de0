"""A request as Rust's serde sees it: typed fields, strict types, integer ranges, untagged and tagged enums,
unknown-field policy, and serde_json's words for what went wrong (with where: line 1, column of the value's
end, as the frontend reports it).

A type is data: "bool", "string", "u8"/"u32"/"u64"/"i32"/"i64" (integers in range), "f32"/"f64" (any
number), "any", ("seq", T), ("map", V), ("option", T), ("struct", Name, {field: T}, deny_unknown) (a field
not of an option type is required),
("untagged", Name, [T...]), ("tagged", Name, tag key, {variant: struct}), ("variants", Name, [names]).
"""

from __future__ import annotations

import json
from json.decoder import scanstring

INT_RANGES = {"u8": (0, 2 ** 8 - 1), "u16": (0, 2 ** 16 - 1), "u32": (0, 2 ** 32 - 1), "u64": (0, 2 ** 64 - 1),
              "i32": (-(2 ** 31), 2 ** 31 - 1), "i64": (-(2 ** 63), 2 ** 63 - 1)}
EXPECTED = {"bool": "a boolean", "string": "a string", "f32": "f32", "f64": "f64"}


class SerdeError(Exception):
    """serde's complaint: `reason` (without location) about the value at `path`."""

    def __init__(self, reason: str, path: tuple, at_end_of: tuple | None = None):
        super().__init__(reason)
        self.reason, self.path = reason, path
        self.at_end_of = path if at_end_of is None else at_end_of  # the value whose end serde reports


def unexpected(v) -> str:
    """serde's `Unexpected` for a JSON value."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"boolean `{str(v).lower()}`"
    if isinstance(v, int):
        return f"integer `{v}`" if -(2 ** 63) <= v < 2 ** 64 else f"floating point `{float(v)!r}`"
    if isinstance(v, float):
        return f"floating point `{v!r}`"
    if isinstance(v, str):
        return "string " + json.dumps(v, ensure_ascii=False)
    return "sequence" if isinstance(v, list) else "map"


def expected(t) -> str:
    if isinstance(t, str):
        return EXPECTED.get(t, t)
    kind = t[0]
    if kind == "seq":
        return "a sequence"
    if kind == "map":
        return "a map"
    if kind == "option":
        return expected(t[1])
    if kind == "struct":
        return f"struct {t[1]}"
    if kind == "tagged":
        return f"internally tagged enum {t[1]}"
    if kind == "variants":
        return "variant identifier"
    return f"untagged enum {t[1]}"


def check(v, t, path: tuple = ()) -> None:
    """Raise SerdeError where serde would refuse `v` as type `t`."""
    if t == "any":
        return
    if isinstance(t, tuple) and t[0] == "option":
        if v is not None:
            check(v, t[1], path)
        return
    if isinstance(t, str):
        if t == "bool" and isinstance(v, bool) or t == "string" and isinstance(v, str):
            return
        if t in INT_RANGES:
            big = isinstance(v, int) and not isinstance(v, bool) and not -(2 ** 63) <= v < 2 ** 64
            if isinstance(v, int) and not isinstance(v, bool) and not big:
                lo, hi = INT_RANGES[t]
                if not lo <= v <= hi:
                    raise SerdeError(f"invalid value: integer `{v}`, expected {t}", path)
                return
        elif t in ("f32", "f64") and isinstance(v, (int, float)) and not isinstance(v, bool):
            return
        raise SerdeError(f"invalid type: {unexpected(v)}, expected {expected(t)}", path)
    kind = t[0]
    if kind == "seq":
        if not isinstance(v, list):
            raise SerdeError(f"invalid type: {unexpected(v)}, expected a sequence", path)
        for k, item in enumerate(v):
            check(item, t[1], path + (k,))
    elif kind == "map":
        if not isinstance(v, dict):
            raise SerdeError(f"invalid type: {unexpected(v)}, expected a map", path)
        for k, item in v.items():
            check(item, t[1], path + (k,))
    elif kind == "struct":
        _, name, fields, deny = t
        if isinstance(v, list):  # serde fills a struct from a sequence too, field by field in declared order
            types = list(fields.values())
            for k, item in enumerate(v):
                if k == len(types):
                    raise SerdeError("trailing characters", path + (k,))
                check(item, types[k], path + (k,))
            if any(not (isinstance(ft, tuple) and ft[0] == "option") for ft in types[len(v):]):
                raise SerdeError(f"invalid length {len(v)}, expected struct {name} with {len(types)} elements", path)
            return
        if not isinstance(v, dict):
            raise SerdeError(f"invalid type: {unexpected(v)}, expected struct {name}", path)
        for k, item in v.items():  # in the order the document has them, as serde reads
            if k in fields:
                check(item, fields[k], path + (k,))
            elif deny:
                names = ", ".join(f"`{f}`" for f in fields)
                raise SerdeError(f"unknown field `{k}`, expected one of {names}", path + (k,), path)
        for k, ft in fields.items():  # a field not Option-typed must be there (told at the object's end)
            if k not in v and not (isinstance(ft, tuple) and ft[0] == "option"):
                raise SerdeError(f"missing field `{k}`", path)
    elif kind == "untagged":
        for variant in t[2]:
            try:
                check(v, variant, path)
                return
            except SerdeError:
                continue
        raise SerdeError(f"data did not match any variant of untagged enum {t[1]}", path)
    elif kind == "tagged":
        _, name, tag, variants = t
        if not isinstance(v, dict):
            raise SerdeError(f"invalid type: {unexpected(v)}, expected internally tagged enum {name}", path)
        if tag not in v:
            raise SerdeError(f"missing field `{tag}`", path)
        if not isinstance(v[tag], str):
            raise SerdeError(f"invalid type: {unexpected(v[tag])}, expected variant identifier", path + (tag,))
        if v[tag] not in variants:
            names = ", ".join(f"`{n}`" for n in variants)
            raise SerdeError(f"unknown variant `{v[tag]}`, expected one of {names}", path + (tag,), path)
        check({k: x for k, x in v.items() if k != tag}, variants[v[tag]], path)
    elif kind == "variants":
        if not isinstance(v, str):
            raise SerdeError(f"invalid type: {unexpected(v)}, expected variant identifier", path)
        if v not in t[2]:
            names = ", ".join(f"`{n}`" for n in t[2])
            raise SerdeError(f"unknown variant `{v}`, expected one of {names}", path)


def _ws(raw: str, i: int) -> int:
    while i < len(raw) and raw[i] in " \t\n\r":
        i += 1
    return i


def _value_start(raw: str, path: tuple) -> int | None:
    """Index where the value at `path` starts in the JSON text, or None."""
    dec = json.JSONDecoder()
    i = _ws(raw, 0)
    for key in path:
        if raw[i] == "{" and isinstance(key, str):
            i = _ws(raw, i + 1)
            while raw[i] != "}":
                k, i = scanstring(raw, i + 1)
                i = _ws(raw, _ws(raw, i) + 1)
                if k == key:
                    break
                _, i = dec.raw_decode(raw, i)
                i = _ws(raw, i)
                i = _ws(raw, i + 1) if raw[i] == "," else i
            else:
                return None
        elif raw[i] == "[" and isinstance(key, int):
            i = _ws(raw, i + 1)
            for _ in range(key):
                _, i = dec.raw_decode(raw, i)
                i = _ws(raw, _ws(raw, i) + 1)
        else:
            return None
    return i


def value_end(raw: str, path: tuple) -> int | None:
    """Index just past the value at `path` in the JSON text (serde's column for it), or None."""
    try:
        i = _value_start(raw, path)
        return None if i is None else json.JSONDecoder().raw_decode(raw, i)[1]
    except (ValueError, IndexError, RecursionError):
        return None


def key_end(raw: str, path: tuple) -> str | None:
    """serde_json's "line L column C" just past the key of the field at `path` (where a struct read in place, not
    from a buffered copy, tells an unknown field), or None where it cannot be found."""
    try:
        i = _value_start(raw, path[:-1])
        if i is None or raw[i] != "{":
            return None
        dec = json.JSONDecoder()
        i = _ws(raw, i + 1)
        while raw[i] != "}":
            k, i = scanstring(raw, i + 1)
            if k == path[-1]:
                line_start = raw.rfind("\n", 0, i) + 1
                return f"line {raw.count(chr(10), 0, i) + 1} column {len(raw[line_start:i].encode())}"
            _, i = dec.raw_decode(raw, _ws(raw, _ws(raw, i) + 1))
            i = _ws(raw, i)
            i = _ws(raw, i + 1) if raw[i] == "," else i
    except (ValueError, IndexError, RecursionError):
        return None
    return None


def where(raw: str, path: tuple = (), past: int = 0) -> str:
    """serde_json's "line L column C" for the end of the value at `path` (the text's end where it cannot be
    found; `()`: the end of the whole document), `past` characters further (a value read whole and then
    converted is told where the reader stands: one past it)."""
    end = value_end(raw, path)
    end = len(raw) if end is None else min(end + past, len(raw))
    line_start = raw.rfind("\n", 0, end) + 1
    return f"line {raw.count(chr(10), 0, end) + 1} column {len(raw[line_start:end].encode())}"


def located(err: SerdeError, raw: str, flattened: bool = False) -> str:
    """serde_json's message: the reason and where. A struct with `#[serde(flatten)]` members is read from a
    buffered copy of the whole object, so serde reports every error inside it at the object's end (`flattened`)."""
    if not flattened and err.reason.startswith(("invalid type: map", "invalid type: sequence")):
        start = _value_start_safe(raw, err.at_end_of)  # (serde fails on the bracket it peeks, before reading on)
        if start is not None:
            line_start = raw.rfind("\n", 0, start) + 1
            return f"{err.reason} at line {raw.count(chr(10), 0, start) + 1} column {len(raw[line_start:start].encode())}"
    return f"{err.reason} at {where(raw, () if flattened else err.at_end_of)}"


def _value_start_safe(raw: str, path: tuple) -> int | None:
    try:
        return _value_start(raw, path)
    except (ValueError, IndexError, RecursionError):
        return None
