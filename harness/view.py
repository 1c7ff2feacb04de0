"""Moved to `harness.captures.view`; this path stays importable for one release."""

import warnings

from .captures.view import (CSS, ORIGINS, SPARK, STYLE, TurnView, conversation, decoder, only_conversation,  # noqa: F401
                            origins, print_view, render_html, sparkline, views)

warnings.warn("harness.view moved to harness.captures.view", DeprecationWarning, stacklevel=2)
