"""Moved to `harness.captures.repro` (repro_cassette), `harness.captures.script` (rebuild, parse_chatml) and
`harness.captures.emit` (emit_test: `emit_ours_test`); this path stays importable for one release, as the tests
`harness repro --client ours --emit-test` wrote before import it. Names resolve when first used, so that
recording (a lower floor) does not import captures."""

import importlib
import warnings

warnings.warn("harness.recording.repro moved to harness.captures.repro", DeprecationWarning, stacklevel=2)

WHERE = {"repro_cassette": ("repro", "repro_cassette"), "ReproReport": ("repro", "ReproReport"),
         "TurnOutcome": ("repro", "TurnOutcome"), "rebuild": ("script", "rebuild"),
         "parse_chatml": ("script", "parse_chatml"), "Script": ("script", "Script"), "Turn": ("script", "ScriptTurn"),
         "IM_START": ("script", "IM_START"), "IM_END": ("script", "IM_END"),
         "CLIENT_FIELDS": ("script", "CLIENT_FIELDS"), "emit_test": ("emit", "emit_ours_test"),
         "TEST_TEMPLATE": ("emit", "OURS_TEMPLATE")}


def __getattr__(name):
    if name in WHERE:
        module, attr = WHERE[name]
        return getattr(importlib.import_module(f"harness.captures.{module}"), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
