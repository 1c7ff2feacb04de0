"""`harness compat`: the client x server matrix (on the fakes, a live deployment, or a replay)."""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from .output import err, out

COLORS = {"pass": "green", "fail": "red", "n/a": "dim", "not installed": "yellow"}


def _split(value: str | None) -> list[str] | None:
    return [x.strip() for x in value.split(",") if x.strip()] if value else None


def cmd_compat(args) -> int:
    from ..compat import matrix as m

    clients, profiles = _split(args.clients), _split(args.profiles)

    def progress(cell):
        if not args.json:
            err.print(f"{cell.client} x {cell.target}: [{COLORS[cell.status]}]{cell.status}[/]"
                      + (f" ({cell.detail})" if cell.status == "fail" else ""), highlight=False)

    from rich.markup import escape

    from ..reach import Unreachable, reach
    from ..recording.format import CassetteError

    try:
        if args.base_url:
            if not args.server:
                err.print("[red]error:[/] --base-url needs --server vllm|dynamo")
                return 2
            reach(args.base_url, "--base-url")
            matrix = m.run_live(args.base_url, args.server, args.model, clients, args.label or "live", progress)
        elif args.cassettes:
            matrix = m.run_on_replay(args.cassettes, clients, args.server, args.model, args.label, progress)
        else:
            matrix = m.run_on_fakes(clients, profiles, args.model, progress)
    except (ValueError, CassetteError, Unreachable) as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        return 2
    if matrix.skipped and not args.json:
        names = ", ".join(sorted(matrix.skipped))
        err.print(f"skipped (not installed): {names}; add them with: " + escape("pip install 'tito-harness[compat]'"),
                  highlight=False)
    if args.junit:
        Path(args.junit).write_text(matrix.junit())
    fakes = not (args.base_url or args.cassettes)
    if fakes and args.update:
        out.print(f"expected matrix updated: {m.update_expected(matrix)}")
    changed = m.changes(matrix) if fakes and not args.update else []
    if args.json:
        print(json.dumps({**matrix.to_dict(), "changed": [{**c.to_dict(), "expected": e} for c, e in changed]}))
    else:
        t = Table(title="client x server: " + ("fake profiles" if fakes else matrix.targets[0]), title_justify="left")
        t.add_column("client")
        for target in matrix.targets:  # a label on several lines, never cut to `dynamo-1.6.1…`
            t.add_column(target.replace("+", "\n+"), overflow="fold")
        for client in matrix.clients:
            row = []
            for target in matrix.targets:
                c = matrix.cell(client, target)
                row.append(f"[{COLORS[c.status]}]{c.status}[/]" if c else "")
            t.add_row(client, *row)
        out.print(t)
        for c in matrix.cells:
            if c.status in ("fail", "not installed"):
                out.print(f"[{COLORS[c.status]}]{c.status}[/] {c.client} x {c.target}: {escape(c.detail)}",
                          highlight=False)
        for c, exp in changed:
            out.print(f"[red]CHANGED[/] {c.client} x {c.target}: expected {exp}, now {c.status}"
                      + (f" ({c.detail})" if c.detail else ""), highlight=False)
        if fakes and not args.update:
            out.print(f"{len(changed)} cell(s) differ from {m.EXPECTED.name}")
    return 1 if changed else 0


def add_parsers(sub) -> None:
    from .help import Lazy

    def names(what):  # the matrix's rows, imported only when --help shows them
        from ..compat import matrix

        return f"comma-separated subset of: {', '.join(matrix.client_names() if what == 'clients' else matrix.PROFILE_LABELS)}"

    c = sub.add_parser("compat", help="the ecosystem's TITO clients against every server profile (a matrix)")
    c.add_argument("--clients", default=None, help=Lazy(lambda: names("clients")))
    c.add_argument("--profiles", default=None, help=Lazy(lambda: names("profiles")))
    c.add_argument("--base-url", default=None, help="run against a live deployment instead of the fakes")
    c.add_argument("--server", choices=("vllm", "dynamo"), default=None, help="the live server's kind")
    c.add_argument("--cassettes", default=None, help="run against a replay of recorded traffic (file or directory)")
    c.add_argument("--model", default="tiny-qwen")
    c.add_argument("--label", default=None, help="column name for a live or replayed server")
    c.add_argument("--json", action="store_true")
    c.add_argument("--junit", default=None, metavar="FILE", help="also write a JUnit XML report")
    c.add_argument("--update", action="store_true", help="write the result into the reviewed expected.json")
    c.set_defaults(func=cmd_compat)

