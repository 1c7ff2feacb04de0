"""The recorder's own layout of a cassette's interactions, written and read without a general YAML parser.

What the recorder writes is plain YAML that PyYAML and stock vcrpy load unchanged: each interaction a
block mapping in a fixed key order at fixed indents (two spaces a level), every string either plain (when
YAML reads it back as that same string), a literal block (`|-`, `|`, `|+`; multi-line text such as
pretty JSON and SSE streams) or double-quoted with JSON's escapes; numbers, booleans and null as YAML
writes them. `emit` writes one interaction so; `parse` reads one back from its text, and answers None for
anything it does not know (a file another tool wrote, a hand edit), which the caller then reads with
PyYAML. Writing and reading it costs a small fraction of what the general emitter and parser cost, and
the emitter never ends a batch with a document end marker (`...`), which PyYAML writes after a `|+`
block and which made a cassette whose next batch was appended after it invalid YAML.
"""

from __future__ import annotations

import re

import orjson
import yaml

_IMPLICIT = yaml.resolver.Resolver.yaml_implicit_resolvers
# plain in block context: no indicator first, no ': ' or ' #', no leading/trailing space, printable ASCII
_PLAIN = re.compile(r"(?![-?:](?: |$))[^\x00-\x20#,\[\]{}&*!|>'\"%@`\x7f-\U0010ffff]"
                    r"(?:[^\x00-\x1f:#\x7f-\U0010ffff]|:(?! )|(?<! )#)*(?<![ :])\Z")
# characters a literal block cannot hold as itself (YAML line breaks other than \n, non-printables, tab)
_NOT_LITERAL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\ufeff\ud800-\udfff\ufffe\uffff]| \n")
# characters a double-quoted string must not hold raw (orjson escapes only the C0 controls)
_NOT_QUOTED = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ud800-\udfff\ufffe\uffff]")
_CACHE: dict[str, bool] = {}


def _is_plain(s: str) -> bool:
    known = _CACHE.get(s)
    if known is None:
        known = bool(s) and (len(s) < 100 or " " not in s) and not s.startswith(("---", "...")) and _PLAIN.match(s) is not None \
            and not any(rx.match(s) for _, rx in ((t, r) for t, r in _IMPLICIT.get(s[0], ())))
        if len(_CACHE) < 65536:
            _CACHE[s] = known
    return known


_SINGLE = re.compile(r"[\x20-\x7e]{1,80}\Z")


def _quoted(s: str) -> str:
    """Single-quoted as PyYAML writes a short string (`'*/*'`, `'2389'`), else double-quoted with JSON's
    escapes (never folded over lines)."""
    if _SINGLE.match(s):
        return "'" + s.replace("'", "''") + "'"
    if _NOT_QUOTED.search(s):
        raise _Decline
    return orjson.dumps(s).decode("utf-8")


class _Decline(Exception):
    """A value this layout does not write: the caller writes the interaction with PyYAML."""


def _scalar(s: str) -> str:
    return s if _is_plain(s) else _quoted(s)


def _text(key: str, s: str | None, indent: int) -> str:
    """`key: value` at `indent` for a body's text: a literal block when it spans lines."""
    pad = " " * indent
    if s is None:
        return f"{pad}{key}: null\n"
    if "\n" in s and s[0] not in " \n" and not s.endswith(" ") and not _NOT_LITERAL.search(s):
        chomp = "-" if s[-1] != "\n" else ("+" if s.endswith("\n\n") or s == "\n" else "")
        inner = "\n" + " " * (indent + 2)
        body = (s if chomp == "-" else s[:-1]).replace("\n", inner)
        blank = inner + "\n"  # an empty line is written empty, not as spaces
        body = body.replace(blank, "\n\n").replace(blank, "\n\n")
        if body.endswith(inner):  # (|+: the last line is empty)
            body = body[:-len(inner)] + "\n"
        return f"{pad}{key}: |{chomp}{inner}{body}\n"
    return f"{pad}{key}: {_scalar(s) if s else chr(39) * 2}\n"


def _value(v) -> str:
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            raise _Decline
        text = repr(v).lower()
        return text.replace("e", ".0e", 1) if "." not in text and "e" in text else text
    if isinstance(v, str):
        return _scalar(v) if v else "''"
    raise _Decline


def _headers(key: str, headers: dict, indent: int) -> str:
    pad = " " * indent
    if not headers:
        return f"{pad}{key}: {{}}\n"
    out = [f"{pad}{key}:\n"]
    inner = " " * (indent + 2)
    for k, vs in headers.items():
        if not isinstance(k, str) or not k or not isinstance(vs, list):
            raise _Decline
        if not vs:
            out.append(f"{inner}{_scalar(k)}: []\n")
            continue
        out.append(f"{inner}{_scalar(k)}:\n")
        for v in vs:
            if not isinstance(v, str):
                raise _Decline
            out.append(f"{inner}- {_value(v)}\n")
    return "".join(out)


def emit(d: dict) -> str | None:
    """One interaction (`Interaction.to_vcr()`'s dict) as a top-level sequence item of the recorder's layout,
    or None when one of its values needs the general emitter."""
    try:
        req, resp = d["request"], d["response"]
        parts = ["- request:\n", _text("body", req["body"], 4), _headers("headers", req["headers"], 4),
                 f"    method: {_value(req['method'])}\n", f"    uri: {_value(req['uri'])}\n", "  response:\n",
                 "    status:\n", f"      code: {_value(resp['status']['code'])}\n",
                 f"      message: {_value(resp['status']['message'])}\n", _headers("headers", resp["headers"], 4),
                 "    body:\n", _text("string", resp["body"]["string"], 6)]
        extra = resp.get("x_tito")
        if extra:
            parts.append("    x_tito:\n")
            for k, v in extra.items():
                if isinstance(v, list):
                    parts.append(f"      {k}:\n" + "".join(f"      - {_value(x)}\n" for x in v) if v else f"      {k}: []\n")
                elif isinstance(v, str) and "\n" in v:
                    raise _Decline
                else:
                    parts.append(f"      {k}: {_value(v)}\n")
        if set(d) != {"request", "response"} or set(req) != {"body", "headers", "method", "uri"} \
                or set(resp) - {"status", "headers", "body", "x_tito"}:
            raise _Decline
        return "".join(parts)
    except (_Decline, KeyError, TypeError, orjson.JSONEncodeError):
        return None


# -- reading ---------------------------------------------------------------------------------------

class _Unknown(Exception):
    """Text outside the layout: the caller reads the interaction with PyYAML."""


_INT = re.compile(r"-?(?:0|[1-9][0-9]*)\Z")
_FLOAT = re.compile(r"-?[0-9]+\.[0-9]*(?:e[-+][0-9]+)?\Z")
_WORDS = {"true": True, "false": False, "null": None, "''": ""}


def _plain_str(s: str) -> str:
    """A plain or quoted scalar that YAML reads as a string; _Unknown for anything else."""
    if s.startswith('"') and s.endswith('"') and len(s) > 1:
        return orjson.loads(s)
    if s.startswith("'") and s.endswith("'") and len(s) > 1:
        inner = s[1:-1]
        if "'" in inner.replace("''", ""):
            raise _Unknown
        return inner.replace("''", "'")
    if not _is_plain(s):
        raise _Unknown
    return s


def _read_value(s: str):
    """A scalar as `emit` writes it (and YAML reads it); _Unknown for any other spelling."""
    if s.startswith('"'):
        return orjson.loads(s)
    if s in _WORDS:
        return _WORDS[s]
    if _INT.match(s):
        return int(s)
    if _FLOAT.match(s):
        return float(s)
    return _plain_str(s)


def _block_end(indent: int) -> re.Pattern:
    rx = _ENDS.get(indent)
    if rx is None:
        rx = _ENDS[indent] = re.compile(r"\n(?!\n| {%d})" % indent)
    return rx


_ENDS: dict[int, re.Pattern] = {}


class _Lines:
    """The text's lines, read by position (nothing is split up front: a large body is scanned once)."""

    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def offset(self) -> int:
        return self.pos

    def seek(self, offset: int) -> None:
        self.pos = offset

    def peek(self) -> str | None:
        if self.pos >= len(self.text):
            return None
        end = self.text.find("\n", self.pos)
        return self.text[self.pos:end if end != -1 else len(self.text)]

    def next(self) -> str:
        line = self.peek()
        if line is None:
            raise _Unknown
        self.pos += len(line) + 1
        return line

    def skip(self) -> None:
        self.next()

    def expect(self, prefix: str) -> str:
        line = self.next()
        if not line.startswith(prefix):
            raise _Unknown
        return line[len(prefix):]


def _read_text(lines: _Lines, rest: str, indent: int):
    if not rest.startswith("|"):
        return _read_value(rest) if rest != "null" else None
    chomp = rest[1:]
    if chomp not in ("", "-", "+"):
        raise _Unknown  # an indentation indicator, or a comment: PyYAML reads it
    text, at = lines.text, lines.offset()
    stop = _block_end(indent).search(text, at - 1) if at > 0 else None
    end = stop.start() + 1 if stop else len(text)
    raw = text[at:end]  # the block's lines, each indented, up to the next key
    lines.seek(end)
    pad = " " * indent
    if not raw.startswith(pad) or raw.startswith(pad + " ") or " \n" in raw or "\t" in raw or raw.endswith(" "):
        raise _Unknown
    body = raw[indent:].replace("\n" + pad, "\n")
    content = body.rstrip("\n")
    if chomp == "-":
        return content
    if chomp == "":
        return content + "\n"
    if stop is None:  # the item's end: its last newline ends the text, not a blank line of the block
        body = body[:-1] if body.endswith("\n\n") else body
    return body


_HEADER_END = re.compile(r"\n(?!      )")
_VALUES: dict[str, object] = {}


def _cached_value(s: str):
    v = _VALUES.get(s)
    if v is None:
        v = _read_value(s)
        if len(_VALUES) < 65536 and len(s) < 200:
            _VALUES[s] = v
    return v


def _read_headers(lines: _Lines, rest: str, indent: int) -> dict:
    """A header mapping at indent 6 (`Name:` then `- value` lines, or `Name: []`), read as one block."""
    if rest == "{}":
        return {}
    if rest or indent != 6:
        raise _Unknown
    text, at = lines.text, lines.offset()
    stop = _HEADER_END.search(text, at - 1)
    end = stop.start() + 1 if stop else len(text)
    lines.seek(end)
    out: dict = {}
    vals = None
    for line in text[at:end - 1].split("\n"):
        if line.startswith("      - "):
            if vals is None:
                raise _Unknown
            v = _cached_value(line[8:])
            if not isinstance(v, str):
                raise _Unknown
            vals.append(v)
            continue
        if line[6:7] == " " or not line.endswith(":") and not line.endswith(": []"):
            raise _Unknown
        if vals is not None and not vals:
            raise _Unknown
        empty = line.endswith(": []")
        key = _cached_value(line[6:-4] if empty else line[6:-1])
        if not isinstance(key, str) or key in out:
            raise _Unknown
        out[key] = vals = [] if not empty else None
        if empty:
            out[key] = []
    if vals is not None and not vals:
        raise _Unknown
    return out


def parse_request(text: str) -> tuple[str, str, str | None] | None:
    """An interaction's method, URI and request body text (as stored: pretty JSON reads as the same JSON),
    read from its head alone; None outside the layout."""
    try:
        lines = _Lines(text)
        if lines.next() != "- request:":
            raise _Unknown
        body = _read_text(lines, lines.expect("    body: "), 6)
        _read_headers(lines, lines.expect("    headers:").lstrip(" "), 6)
        return _plain_str(lines.expect("    method: ")), _plain_str(lines.expect("    uri: ")), body
    except (_Unknown, ValueError, orjson.JSONDecodeError):
        return None


def parse(text: str) -> dict | None:
    """One interaction's text (a top-level `- request:` item, as `emit` and PyYAML write it) back into the
    vcrpy dict, or None for text outside the layout (read it with PyYAML then)."""
    try:
        lines = _Lines(text)
        if lines.next() != "- request:":
            raise _Unknown
        req_body = _read_text(lines, lines.expect("    body: "), 6)
        rest = lines.expect("    headers:")
        req_headers = _read_headers(lines, rest.lstrip(" "), 6)
        method = _plain_str(lines.expect("    method: "))
        uri = _plain_str(lines.expect("    uri: "))
        if lines.next() != "  response:" or lines.next() != "    status:":
            raise _Unknown
        code = _read_value(lines.expect("      code: "))
        message = _read_value(lines.expect("      message: "))
        resp_headers = _read_headers(lines, lines.expect("    headers:").lstrip(" "), 6)
        if lines.next() != "    body:":
            raise _Unknown
        string = _read_text(lines, lines.expect("      string: "), 8)
        resp = {"status": {"code": code, "message": message}, "headers": resp_headers, "body": {"string": string}}
        line = lines.peek()
        if line == "    x_tito:":
            lines.skip()
            extra = {}
            while (line := lines.peek()) is not None and line.startswith("      ") and not line.startswith("       "):
                lines.skip()
                key, sep, value = line[6:].partition(":")
                if not sep or not key.isidentifier():
                    raise _Unknown
                if value == "":
                    items = []
                    while (line := lines.peek()) is not None and line.startswith("      - "):
                        items.append(_read_value(line[8:]))
                        lines.skip()
                    extra[key] = items
                elif value == " []":
                    extra[key] = []
                elif value.startswith(" ") and not value.startswith("  "):
                    extra[key] = _read_value(value[1:])
                else:
                    raise _Unknown
            resp["x_tito"] = extra
        while (line := lines.peek()) is not None:  # what may follow an item: end lines, a document end
            if line and not line.startswith("#") and line != "...":
                raise _Unknown
            lines.skip()
        if not isinstance(code, int) or not isinstance(message, str):
            raise _Unknown
        return {"request": {"body": req_body, "headers": req_headers, "method": method, "uri": uri},
                "response": resp}
    except (_Unknown, ValueError, orjson.JSONDecodeError):
        return None
