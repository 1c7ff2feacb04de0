"""Moved to `harness.cli.output`; this path stays importable for one release."""

import warnings

from .cli.output import err, out  # noqa: F401

warnings.warn("harness.cli_output moved to harness.cli.output", DeprecationWarning, stacklevel=2)
