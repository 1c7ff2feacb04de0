"""The `harness` command. Thin: each module parses one group of subcommands, calls the library and prints."""

from __future__ import annotations

import argparse
import logging
import sys

from . import captures, cassette, compat, conformance, info, record, rl_step, run
from .output import err

GROUPS = (run, rl_step, record, cassette, captures, conformance, info, compat)  # in the order `harness --help` lists them


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness", description="TITO client test harness for vLLM and NVIDIA Dynamo")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logs (each turn's tito/mito decision)")
    sub = p.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_parsers(sub)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.verbose:  # our own debug lines; the libraries' (httpcore, faker, asyncio, ...) stay at warnings
        for name in ("harness", "fake_servers"):
            logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        return args.func(args)
    except KeyboardInterrupt:  # Ctrl-C before a server was up (e.g. waiting for an upstream): nothing written
        err.print("interrupted", highlight=False)
        return 130


if __name__ == "__main__":
    sys.exit(main())
