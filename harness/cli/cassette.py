"""`harness cassette merge|recover|conversations|extract|export`: cassette files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.markup import escape

from .output import err, file_report, out, refuse_overwrite


def cmd_cassette_recover(args) -> int:
    """Finish an interrupted recording: the journal's exchanges in, an unfinished write cut off."""
    from ..recording.format import Cassette, CassetteError, cut_to_last_whole_batch
    from ..recording.journal import is_orphaned, journal_dir, recover

    path = Path(args.path)
    if path.is_dir() or not (path.exists() or journal_dir(path).is_dir()):
        err.print(f"[red]error:[/] {path}: {'a directory' if path.is_dir() else 'no such cassette'}; give a cassette file")
        return 2
    if journal_dir(path).is_dir() and not is_orphaned(path):
        err.print(f"[red]error:[/] a recorder is still recording into {path}; stop it first (Ctrl-C flushes)")
        return 2
    cut = cut_to_last_whole_batch(path) if path.exists() else 0
    try:
        added = recover(path, wait=args.wait) or 0
        kept = len(Cassette.load(path, resolve_blobs=False).interactions)
    except CassetteError as exc:
        err.print(f"[red]error:[/] {exc}")
        return 2
    cut_note = f"{cut} bytes of an unfinished write cut off; " if cut else ""
    print(f"{path}: {cut_note}{added} exchange(s) recovered from the journal; {kept} whole interactions kept")
    return 0


def cmd_cassette_merge(args) -> int:
    from ..recording.format import CassetteError
    from ..recording.merge import merge

    inputs = {Path(x).resolve() for x in args.shards}
    if Path(args.out).exists() and not args.force and Path(args.out).resolve() not in inputs:
        err.print(f"[red]error:[/] {args.out} exists; merging into it would replace it (its own exchanges are "
                  f"merged only if you name it among the inputs): pass --force to overwrite", highlight=False)
        return 2
    try:
        merged = merge(args.out, args.shards)
    except CassetteError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        return 2
    out.print(f"{len(merged.interactions)} exchanges from {len(args.shards)} cassette(s) merged into {args.out}, "
              f"ordered by arrival")
    return 0


def cmd_conversations(args) -> int:
    """Conversations are printed as they close (a capture is read once, in flat memory): those still open at
    the end come last, by id."""
    from ..captures import audit
    from ..recording.format import CassetteError

    first = [True]

    def show(c) -> None:
        if args.json:
            sys.stdout.write(("{\"conversations\": [" if first[0] else ", ") + json.dumps(c.to_dict()))
        else:
            if first[0]:
                out.print(f"[bold]{'id':>8}  {'turns':>5}  verdict  (exchanges)[/]")
            ex = ",".join(map(str, c.exchanges[:12])) + (",..." if len(c.exchanges) > 12 else "")
            out.print(f"{c.id:>8}  {len(c.turns):>5}  {escape(c.verdict())}  ({ex})", highlight=False)
        first[0] = False

    try:
        report = audit(args.path, keep=False, on_conversation=show)
    except CassetteError as exc:
        if not first[0]:
            sys.stdout.write("\n")
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        return 2
    if args.json:
        sys.stdout.write(("{\"conversations\": [" if first[0] else "") + "]}\n")
    else:
        out.print(f"{report.conversation_count} conversations, {report.turns} turns in {escape(args.path)}",
                  highlight=False)
    return 0


def cmd_extract(args) -> int:
    from ..captures import extract, parse_exchanges
    from ..recording.format import CassetteError

    if refuse_overwrite(args.out, args.force):
        return 2
    try:
        exchanges = parse_exchanges(args.exchanges) if args.exchanges else []
        cut = extract(args.path, args.out, args.conversation or [], exchanges, args.anomaly)
    except (CassetteError, ValueError) as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        return 2
    picked = cut.meta["extracted_from"]["exchanges"]
    out.print(f"{len(picked)} exchange(s) ({', '.join(map(str, picked[:12]))}{' ...' if len(picked) > 12 else ''}) "
              f"of {escape(args.path)} written to {escape(args.out)}", highlight=False)
    return 0


def cmd_export(args) -> int:
    from ..captures import export_parquet
    from ..recording.format import CassetteError

    if args.dataset:
        from ..captures.export import export_dataset

        if refuse_overwrite(args.dataset, args.force):
            return 2
        try:
            parts = export_dataset(args.path, args.dataset)
        except (CassetteError, ValueError) as exc:
            err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
            return 2
        for name, rows in parts.items():
            out.print(f"{rows} exchange(s) written to {escape(args.dataset)}/capture={escape(name)}/part-0.parquet",
                      highlight=False)
        return 0
    if len(args.path) > 1:
        err.print("[red]error:[/] --parquet writes one capture: give --dataset DIR for several", highlight=False)
        return 2
    if refuse_overwrite(args.parquet, args.force):
        return 2
    try:
        rows = export_parquet(args.path[0], args.parquet)
    except (CassetteError, ValueError) as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        return 2
    out.print(f"{rows} exchange(s) of {escape(args.path[0])} written to {escape(args.parquet)} (one row each)",
              highlight=False)
    return 0


def add_parsers(sub) -> None:
    """cassette merge, conversations, extract, export, recover."""
    cs = sub.add_parser("cassette", help="cassette files")
    csub = cs.add_subparsers(dest="cassette_command", required=True)
    cm = csub.add_parser("merge", help="merge shards into one cassette, ordered by arrival time")
    cm.add_argument("out")
    cm.add_argument("shards", nargs="+")
    cm.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    cm.set_defaults(func=cmd_cassette_merge)
    file_report(csub, "conversations", "the rollouts in a capture: each conversation's exchanges, turns, verdict",
                 cmd_conversations)
    ce = csub.add_parser("extract", help="cut a small cassette out of a capture: conversations, exchanges or an anomaly")
    ce.add_argument("path")
    ce.add_argument("-o", "--out", required=True)
    ce.add_argument("--conversation", type=int, action="append", help="a conversation id (its first exchange); repeatable")
    ce.add_argument("--exchanges", default=None, help="exchange indices and ranges, e.g. 3,7-9")
    ce.add_argument("--anomaly", default=None, help="every conversation with an anomaly of this kind (harness audit)")
    ce.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    ce.set_defaults(func=cmd_extract)
    cx = csub.add_parser("export", help="one row per exchange (conversation, turn, mode, status, ids, logprobs, "
                         "latency) as Parquet, for DuckDB, Spark or Trino")
    cx.add_argument("path", nargs="+", help="a capture: a file, a run's segments, a folder or a glob (several "
                                            "with --dataset)")
    to = cx.add_mutually_exclusive_group(required=True)
    to.add_argument("--parquet", metavar="OUT", help="one Parquet file")
    to.add_argument("--dataset", metavar="DIR", help="a Parquet dataset partitioned by capture (hive style: "
                                                    "DIR/capture=NAME/part-0.parquet)")
    cx.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    cx.set_defaults(func=cmd_export)
    cr = csub.add_parser("recover", help="finish an interrupted (killed) recording: put its journal into the cassette")
    cr.add_argument("path")
    cr.add_argument("--wait", type=float, default=10.0, help="seconds to wait for a dying recorder's writer")
    cr.set_defaults(func=cmd_cassette_recover)
