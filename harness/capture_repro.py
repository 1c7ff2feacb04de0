"""Moved to `harness.captures.repro` (resend) and `harness.captures.emit` (CaptureServer, emit_test); this path
stays importable for one release, as the tests `harness repro --emit-test` wrote before import it."""

import warnings

from .captures.emit import TEST_TEMPLATE, CaptureServer, emit_test, profile_of, recorded_requests  # noqa: F401
from .captures.repro import HOP, ResendReport, TurnDiff, resend  # noqa: F401

warnings.warn("harness.capture_repro moved to harness.captures.repro and harness.captures.emit", DeprecationWarning,
              stacklevel=2)
