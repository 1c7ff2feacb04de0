"""`harness conformance`: recorded answers against a fake or a live server, by structure."""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from .output import err, out


def cmd_conformance(args) -> int:
    from ..conformance import run_conformance, run_drift

    from ..reach import Unreachable
    from ..recording.format import CassetteError

    if args.live and args.fake:
        err.print("[red]error:[/] --live and --fake are exclusive: compare with a live server or with a fake")
        return 2
    try:
        report = run_drift(args.cassettes, args.live) if args.live else run_conformance(args.cassettes, args.fake)
    except (CassetteError, Unreachable) as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        return 2
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report.to_dict(), indent=1))
    against = f"live {args.live}" if args.live else f"fake {args.fake}" if args.fake else "each cassette's profile"
    t = Table(title=f"conformance: {against} vs {args.cassettes}", title_justify="left")
    for col in ("profile", "cassette", "#", "request", "status real/fake", "verdict", "differences"):
        t.add_column(col)
    for c in report.checks:
        if c.ok and not args.all:
            continue
        verdict = "[green]same[/]" if c.ok else ("[yellow]allowed[/]" if c.allowed_only else "[red]DIFFERS[/]")
        t.add_row(c.profile, c.cassette, str(c.index), c.request, f"{c.real_status}/{c.fake_status}", verdict,
                  "\n".join(c.problems + [f"(allowed) {a}" for a in c.allowed])[:400])
    if t.rows:
        out.print(t)
    s = Table(title="per profile", title_justify="left")
    for col in ("profile", "exchanges", "differ"):
        s.add_column(col)
    for prof, (n, failed) in sorted(report.per_profile().items()):
        s.add_row(prof, str(n), f"[red]{failed}[/]" if failed else "0")
    out.print(s)
    for name, why in report.unknown:
        out.print(f"[yellow]not compared[/] {name}: {why}")
    out.print(f"{report.failed} difference(s) outside the allowlist in {len(report.checks)} exchanges"
              + (f"; {len(report.unknown)} cassette(s) whose server cannot be told" if report.unknown else "")
              + (f"; JSON report: {args.json_out}" if args.json_out else ""))
    return 1 if report.failed else 0


def add_parsers(sub) -> None:
    """conformance."""
    cf = sub.add_parser("conformance", help="send recorded requests to a fake and compare answers by structure")
    cf.add_argument("--cassettes", required=True, help="a directory of cassettes (searched recursively) or a file")
    cf.add_argument("--fake", choices=("vllm", "dynamo"), default=None,
                    help="compare every cassette against this fake (default: each cassette's meta.profile)")
    cf.add_argument("--json-out", default=None, metavar="FILE", help="also write the report as JSON")
    cf.add_argument("--all", action="store_true", help="list every exchange, not only those that differ")
    cf.add_argument("--live", default=None, metavar="URL",
                    help="drift: send every recorded request to this live deployment instead of a fake")
    cf.set_defaults(func=cmd_conformance)
