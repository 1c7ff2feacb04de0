"""The consoles every `harness` subcommand prints to, and the few lines they share."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402

err = Console(stderr=True, soft_wrap=True)  # an error is one line, however narrow the terminal
out = Console(width=None if sys.stdout.isatty() else 140)


def refuse_overwrite(path: str, force: bool) -> bool:
    """An output that is there and may not be replaced: said in one line."""
    if Path(path).exists() and not force:
        err.print(f"[red]error:[/] {escape(path)} exists: pass --force to overwrite it", highlight=False)
        return True
    return False


def file_report(sub, name: str, help: str, func) -> None:
    """A command that reads one cassette and reports on it (`--json` for one object)."""
    p = sub.add_parser(name, help=help)
    p.add_argument("path")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=func)
