"""The consoles every `harness` subcommand prints to, and the few lines they share."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402

from ..wire.safe_text import terminal  # noqa: E402


class SafeConsole(Console):
    """A console that shows every control character, ANSI/OSC escape and bidi mark in the text it is given as a
    visible escape (`\\x1b`), so a cassette's meta, paths, URIs or bodies cannot drive the terminal; the
    console's own styling is added after, as usual."""

    def render_str(self, text, **kwargs):
        return super().render_str(terminal(text, keep_layout=True), **kwargs)


err = SafeConsole(stderr=True, soft_wrap=True)  # an error is one line, however narrow the terminal
out = SafeConsole(width=None if sys.stdout.isatty() else 140)


def refuse_overwrite(path: str, force: bool) -> bool:
    """An output that is there and may not be replaced: said in one line."""
    if Path(path).exists() and not force:
        err.print(f"[red]error:[/] {escape(path)} exists: pass --force to overwrite it", highlight=False)
        return True
    return False


def file_report(sub, name: str, help: str, func) -> None:
    """A command that reads one cassette and reports on it (`--json` for one object)."""
    p = sub.add_parser(name, help=help)
    p.add_argument("path", help="the cassette or capture file (.yaml)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.set_defaults(func=func)
    return p
