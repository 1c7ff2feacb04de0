"""The structure of a JSON value: key paths and JSON types, values left out.

Used to compare a fake server's answer with a real capture: same keys, same types, same nesting.
Lists are summarised by the union of their items' structures (`path[]`).
"""

from __future__ import annotations


def json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


# Objects whose keys are data, not schema (vLLM /v1/completions: {token text: logprob}; a vLLM worker's
# prompt_logprobs: {token id: {logprob, rank}}).
MAP_PATHS = ("$.choices[].logprobs.top_logprobs[]", "$.prompt_logprobs[]")


def structure(value, path: str = "$", maps=MAP_PATHS) -> dict[str, set[str]]:
    """{key path: {json types seen there}} for every node of `value` (keys of `maps` become `*`)."""
    out: dict[str, set[str]] = {}

    def walk(v, p):
        out.setdefault(p, set()).add(json_type(v))
        if isinstance(v, dict):
            for k, child in v.items():
                walk(child, f"{p}.*" if p in maps else f"{p}.{k}")
        elif isinstance(v, list):
            for child in v:
                walk(child, f"{p}[]")

    walk(value, path)
    return out


def _ancestors(path: str):
    while True:
        cut = max(path.rfind("."), path.rfind("[]"))
        if cut <= 0:
            return
        path = path[:cut]
        yield path


def diff(real, fake, ignore_null: bool = True, sides: tuple[str, str] = ("real", "fake")) -> list[str]:
    """Differences of structure between a real and a fake answer, as readable lines.

    With `ignore_null`, a node that is null on one side and typed on the other is not a
    difference, nor is anything below it (which optional fields were filled may differ).
    """
    a, b = structure(real), structure(fake)

    def null_above(tree, p):
        return ignore_null and any(tree.get(q) == {"null"} for q in _ancestors(p))

    lines = []
    for p in sorted(set(a) | set(b)):
        if p not in b:
            if not null_above(b, p):
                lines.append(f"missing in {sides[1]}: {p} ({'/'.join(sorted(a[p]))})")
        elif p not in a:
            if not null_above(a, p):
                lines.append(f"extra in {sides[1]}: {p} ({'/'.join(sorted(b[p]))})")
        else:
            ta, tb = a[p], b[p]
            if ignore_null and ("null" in ta or "null" in tb):
                ta, tb = ta - {"null"}, tb - {"null"}
                if not ta or not tb:
                    continue
            if ta != tb:
                lines.append(f"type differs at {p}: {sides[0]} {'/'.join(sorted(ta))}, {sides[1]} {'/'.join(sorted(tb))}")
    return lines
