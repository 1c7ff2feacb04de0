"""The house after captures moved: old import paths still work for one release, each with a warning that
names the new one, and hand out the very objects of the new modules."""

import importlib
import sys
import warnings

import pytest

OLD = {  # old path -> (name, new module)
    "harness.view": ("render_html", "harness.captures.view"),
    "harness.capture_repro": ("CaptureServer", "harness.captures.emit"),
    "harness.recording.inspect": ("turn_kind", "harness.captures.turns"),
    "harness.recording.repro": ("repro_cassette", "harness.captures.repro"),
    "harness.cli_cassettes": ("cmd_audit", "harness.cli.captures"),
    "harness.cli_compat": ("cmd_compat", "harness.cli.compat"),
    "harness.cli_output": ("err", "harness.cli.output"),
}


@pytest.mark.parametrize("old", sorted(OLD))
def test_an_old_path_warns_and_hands_out_the_new_object(old):
    name, new = OLD[old]
    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        mod = importlib.import_module(old)
        got = getattr(mod, name)
    assert got is getattr(importlib.import_module(new), name)
    assert any(issubclass(w.category, DeprecationWarning) and "moved to" in str(w.message) for w in seen), old


def test_the_old_captures_module_names_come_from_the_package():
    import harness.captures as c

    for name in ("audit", "Audit", "Linker", "Conversation", "Anomaly", "CaptureIndex", "index_path", "extract",
                 "export_parquet", "export_rows", "parse_exchanges", "conversation_exchanges", "select"):
        assert callable(getattr(c, name)) or isinstance(getattr(c, name), type), name


def test_an_old_path_refuses_a_name_it_never_had():
    mod = importlib.import_module("harness.recording.repro")
    with pytest.raises(AttributeError):
        mod.no_such_name  # noqa: B018


def test_the_new_modules_import_without_a_deprecated_path():
    code = ("import warnings; warnings.simplefilter('error', DeprecationWarning); "
            "import harness.cli, harness.captures.view, harness.captures.emit, harness.captures.repro, "
            "harness.conformance")
    import subprocess

    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
