"""The consoles every `harness` subcommand prints to (one floor below the CLI modules)."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from rich.console import Console  # noqa: E402

err = Console(stderr=True, soft_wrap=True)  # an error is one line, however narrow the terminal
out = Console(width=None if sys.stdout.isatty() else 140)
