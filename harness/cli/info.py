"""`harness tokenizer`, `profiles`, `faults`: what ships with the harness."""

from __future__ import annotations

import json
import time

from rich.table import Table

from .output import out


def cmd_profiles(args) -> int:
    from harness.wire.profiles import DEFAULTS, PROFILES, differences_markdown

    if args.json:
        print(json.dumps({"defaults": DEFAULTS, "profiles": [p.describe() for p in PROFILES.values()]}))
        return 0
    t = Table(title="server profiles (harness fake KIND --profile NAME)", title_justify="left")
    for col in ("profile", "kind", "version", "facts from", "what it is"):
        t.add_column(col)
    for p in PROFILES.values():
        default = " (default)" if DEFAULTS.get(p.kind) == p.name else ""
        t.add_row(p.name + default, p.kind, p.version, p.source, p.summary)
    out.print(t)
    if args.differences:
        print(differences_markdown())
    return 0


def cmd_tokenizer_build(args) -> int:
    from ..tokenizer import build_tokenizer, default_tokenizer_dir, load_tokenizer

    t0 = time.perf_counter()
    path = build_tokenizer(args.dir, args.template) if args.dir else default_tokenizer_dir(args.template)
    tok = load_tokenizer(str(path))
    out.print(f"tokenizer ({args.template}) in {path} ({time.perf_counter() - t0:.1f} s): vocab {len(tok)}, "
              f"'Hello world' -> {tok.encode('Hello world')}")
    return 0


def cmd_faults(args) -> int:
    from ..wire.faults import CATALOGUE

    t = Table(title="fault catalogue (x-fake-fault: NAME[=VALUE][@PROBABILITY][*TIMES])", title_justify="left")
    for col in ("fault", "what the server does", "client behaviour exercised", "servers"):
        t.add_column(col)
    for f in CATALOGUE.values():
        t.add_row(f.name, f.does, f.exercises, ", ".join(f.servers))
    out.print(t)
    return 0


def add_parsers(sub) -> None:
    """tokenizer, profiles, faults: what ships with the harness."""
    t = sub.add_parser("tokenizer", help="the offline Qwen2.5 tokenizer")
    tsub = t.add_subparsers(dest="tokenizer_command", required=True)
    tb = tsub.add_parser("build", help="build the tokenizer (into DIR, or the cache) and check it")
    tb.add_argument("dir", nargs="?")
    tb.add_argument("--template", choices=("chatml", "thinking"), default="chatml")
    tb.set_defaults(func=cmd_tokenizer_build)

    pr = sub.add_parser("profiles", help="list the server profiles the fakes answer as")
    pr.add_argument("--json", action="store_true")
    pr.add_argument("--differences", action="store_true", help="also print the table of differences (Markdown)")
    pr.set_defaults(func=cmd_profiles)

    fl = sub.add_parser("faults", help="list the fake servers' fault catalogue")
    fl.set_defaults(func=cmd_faults)
