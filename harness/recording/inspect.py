"""Moved to `harness.captures.turns`; this path stays importable for one release. The names resolve when first
used, so that recording (a lower floor) does not import captures."""

import importlib
import warnings

warnings.warn("harness.recording.inspect moved to harness.captures.turns", DeprecationWarning, stacklevel=2)

NAMES = {"TURN_ROUTES", "turn_kind", "parsed_answer", "turn_tokens", "Row", "Report", "analyze", "exchange_anomalies"}


def __getattr__(name):
    if name in NAMES:
        return getattr(importlib.import_module("harness.captures.turns"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
