"""Every `harness` subcommand says what it does, what each option means and which exit codes it gives;
the CLI's main answers a bad port, a closed pipe and a bug in one line each."""

import argparse
import contextlib
import io
import os
import subprocess
import sys

import pytest

from harness.cli import build_parser, main
from harness.cli.help import walk

COMMANDS = [(path, p) for path, p, _ in walk(build_parser())]


def test_every_command_is_listed():
    names = {path for path, _ in COMMANDS}
    assert {"audit", "inspect", "view", "repro", "replay", "record", "fake", "conformance", "cassette extract",
            "cassette conversations", "cassette export", "cassette merge", "cassette recover"} <= names


@pytest.mark.parametrize("path,parser", COMMANDS, ids=[c for c, _ in COMMANDS])
def test_help_says_what_it_does_each_option_and_the_exit_codes(path, parser):
    assert parser.description and len(parser.description) > 15, f"harness {path} has no description"
    leaf = not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)
    if leaf:
        assert parser.epilog and "exit codes: 0" in parser.epilog, f"harness {path} names no exit codes"
    silent = [a.dest for a in parser._actions if not a.help and not isinstance(a, argparse._SubParsersAction)]
    assert not silent, f"harness {path}: options without help: {silent}"
    text = parser.format_help()
    assert "usage: harness" in text and parser.description.split()[0] in text


def run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:
            rc = exc.code
    return rc, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("argv", [["fake", "vllm", "--port", "70000"], ["replay", "x.yaml", "--port", "-1"],
                                  ["record", "--upstream", "http://127.0.0.1:1", "--cassette", "c.yaml",
                                   "--port", "65536"]])
def test_a_port_out_of_range_is_a_usage_error(argv):
    rc, out, err = run(argv)
    assert rc == 2 and "a port is 0..65535" in err and "Traceback" not in err and "OverflowError" not in err


def test_a_closed_pipe_ends_quietly():
    """`harness cassette conversations --json | head -c 1`: the reader leaves early; no BrokenPipeError."""
    capture = os.path.join(os.path.dirname(__file__), "..", "cassettes", "captures", "vllm-0.32-cpu", "capture.yaml")
    code = ("import sys; from harness.cli import main; sys.stdout.write('x' * (1 << 17)); "
            f"sys.exit(main(['cassette', 'conversations', {capture!r}, '--json']))")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.read(1)
    p.stdout.close()  # the reader left
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_a_bug_is_one_line_and_minus_v_shows_the_traceback(monkeypatch):
    import harness.cli.captures as captures

    def broken(args):
        raise RuntimeError("boom")

    parser_main = build_parser()
    monkeypatch.setattr(captures, "cmd_inspect", broken)
    monkeypatch.setattr("harness.cli.build_parser", lambda: _with(parser_main, "inspect", broken))
    rc, out, err = run(["inspect", "x.yaml"])
    assert rc == 70 and err.count("\n") == 1 and "internal error: RuntimeError: boom" in err
    with pytest.raises(RuntimeError):
        run(["-v", "inspect", "x.yaml"])


def _with(parser, name, func):
    for path, p, _ in walk(parser):
        if path == name:
            p.set_defaults(func=func)
    return parser


def test_a_missing_cassette_is_a_clear_error():
    for argv in (["inspect", "/nonexistent/c.yaml"], ["audit", "/nonexistent/c.yaml"],
                 ["view", "/nonexistent/c.yaml"], ["cassette", "conversations", "/nonexistent/c.yaml"]):
        rc, out, err = run(argv)
        assert rc == 2 and err.startswith("error:") and "Traceback" not in err, (argv, err)
