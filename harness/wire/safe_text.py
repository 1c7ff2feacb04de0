"""Making text from a cassette safe to show or to write into code.

A cassette is input from someone else: its meta, names, paths and bodies may hold terminal escapes
(ANSI CSI, OSC hyperlinks and title changes), control characters, bidirectional overrides, markup or
quotes. These pure functions are the one place that decides how such text leaves the harness:

- `terminal(text)`: every control, escape and bidi character shown as a visible `\\xNN`/`\\uNNNN`
  escape, so nothing a cassette holds can move the cursor, recolour, retitle or link the terminal;
- `html_text(text)`: the same, then HTML-escaped (quotes too), for a page's text and attributes;
- `py_literal(value)`: a Python literal of plain data (str, int, float, bool, None, list, tuple, dict),
  checked to read back as the same value with `ast.literal_eval`, so emitted code holds values, never code;
- `known_label(value, labels, what)`: a value that must be one of a known set, or a ValueError.
"""

from __future__ import annotations

import ast
import math
import re

# C0 controls but tab and newline, DEL, C1 controls, and the characters that reorder or hide text
# (bidi embeddings/overrides/isolates, zero-width marks, line/paragraph separators, BOM).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_UNSAFE_WITH_LAYOUT = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
LITERAL_TYPES = (str, int, float, bool, type(None), list, tuple, dict)


def _visible(m: re.Match) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def terminal(text, keep_layout: bool = False, limit: int | None = None) -> str:
    """`text` (any value: str() of it) with every control/escape/bidi character written as a visible escape.

    Tab and newline are escaped too unless `keep_layout`. `limit` cuts the result to that many
    characters, marking the cut, so one huge value cannot flood a terminal.
    """
    s = text if isinstance(text, str) else str(text)
    if limit is not None and len(s) > limit:
        s = s[:limit] + f"… ({len(s) - limit} more characters)"
    return (_UNSAFE if keep_layout else _UNSAFE_WITH_LAYOUT).sub(_visible, s)


def is_clean(text: str, keep_layout: bool = False) -> bool:
    """True when `text` holds no character `terminal` would escape."""
    return (_UNSAFE if keep_layout else _UNSAFE_WITH_LAYOUT).search(text) is None


def html_text(text, keep_layout: bool = True, limit: int | None = None) -> str:
    """`text` safe inside an HTML element or a quoted attribute: controls made visible, then &, <, >, ", ' escaped."""
    s = terminal(text, keep_layout=keep_layout, limit=limit)
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&#x27;"))


def _check_plain(value, depth: int = 0) -> None:
    if depth > 100:
        raise ValueError("value nested deeper than 100 levels")
    if type(value) not in LITERAL_TYPES:
        raise ValueError(f"a {type(value).__name__} cannot be written as a literal")
    if type(value) is float and not math.isfinite(value):
        raise ValueError(f"{value!r} has no Python literal")
    if isinstance(value, (list, tuple)):
        for v in value:
            _check_plain(v, depth + 1)
    elif isinstance(value, dict):
        for k, v in value.items():
            if type(k) not in (str, int, float, bool, type(None)):
                raise ValueError(f"a {type(k).__name__} key cannot be written as a literal")
            _check_plain(k, depth + 1)
            _check_plain(v, depth + 1)


def py_literal(value) -> str:
    """Python source for `value` that evaluates to an equal value and to nothing else (ValueError otherwise)."""
    _check_plain(value)
    src = repr(value)
    if ast.literal_eval(src) != value:  # pragma: no cover - repr of plain data always reads back
        raise ValueError("value does not read back as itself")
    return src


def known_label(value, labels, what: str = "value") -> str:
    """`value` when it is one of `labels` (strings), else a ValueError naming the choices."""
    allowed = sorted(labels)
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{what} {terminal(repr(value), limit=80)} is not one of: {', '.join(allowed)}")
    return value
