"""The `harness` command. Thin: each module parses one group of subcommands, calls the library and prints."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from . import captures, cassette, compat, conformance, info, record, rl_step, run
from .help import document
from .output import err, escape

GROUPS = (run, rl_step, record, cassette, captures, conformance, info, compat)  # in the order `harness --help` lists them


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness", description="TITO client test harness for vLLM and NVIDIA Dynamo",
                                epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logs (each turn's tito/mito decision)")
    sub = p.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_parsers(sub)
    return document(p)


EXIT_CODES = """exit codes: 0 done (nothing found), 1 the check found something (anomalies, differences,
failed turns), 2 bad input (a usage error, a missing or malformed file, an output that exists),
70 an internal error (a bug: please report it; -v shows the traceback), 130 interrupted, 141 output pipe
closed (a command's --help says which of these it gives)"""


def check_ports(parser: argparse.ArgumentParser, args) -> None:
    """A port outside 0..65535 is a usage error, told by name (the socket layer would raise OverflowError)."""
    for name, value in vars(args).items():
        if name.endswith("port") and type(value) is int and not 0 <= value <= 65535:
            parser.error(f"--{name.replace('_', '-')} {value}: a port is 0..65535 (0 picks a free one)")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_ports(parser, args)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.verbose:  # our own debug lines; the libraries' (httpcore, faker, asyncio, ...) stay at warnings
        for name in ("harness", "fake_servers"):
            logging.getLogger(name).setLevel(logging.DEBUG)
    from ..recording.format import CassetteError

    try:
        return args.func(args)
    except KeyboardInterrupt:  # Ctrl-C before a server was up (e.g. waiting for an upstream): nothing written
        err.print("interrupted", highlight=False)
        return 130
    except BrokenPipeError:  # `harness ... | head`: the reader left; say nothing more, as other tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except (CassetteError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        words = str(exc)
        if isinstance(exc, OSError) and exc.filename is not None:  # one wording for every command: "no cassette at X"
            words = f"{exc.strerror.lower() if exc.strerror else 'cannot open'}: {exc.filename}"
            if isinstance(exc, FileNotFoundError):
                words = f"no cassette at {exc.filename}"
        err.print(f"[red]error:[/] {escape(words)}", highlight=False)
        return 2
    except Exception as exc:  # a bug: one line that says so, the traceback with -v
        if args.verbose:
            raise
        err.print(f"[red]internal error:[/] {type(exc).__name__}: {escape(str(exc)[:500])} (a bug in harness "
                  f"{args.command}: please report it; -v shows the traceback)", highlight=False)
        return 70


if __name__ == "__main__":
    sys.exit(main())
