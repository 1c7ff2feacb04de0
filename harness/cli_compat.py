"""Moved to `harness.cli.compat`; this path stays importable for one release."""

import warnings

from .cli.compat import COLORS, add_parsers, cmd_compat  # noqa: F401

add_parser = add_parsers
warnings.warn("harness.cli_compat moved to harness.cli.compat", DeprecationWarning, stacklevel=2)
