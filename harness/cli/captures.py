"""`harness audit`, `inspect`, `view`, `repro`: reading a capture."""

from __future__ import annotations

import json
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from .output import err, file_report, out, refuse_overwrite


def cmd_inspect(args) -> int:
    from ..captures.turns import inspect_cassette
    from ..recording.format import CassetteError

    try:
        report = inspect_cassette(args.path)
    except CassetteError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        return 2
    if args.json:
        print(json.dumps({"meta": report.meta, "routes": dict(report.routes), "statuses": dict(report.statuses),
                          "rows": [r.__dict__ for r in report.rows], "anomalies": exchange_anomalies(report),
                          "scope": INSPECT_SCOPE}))
        return 0
    meta = report.meta
    out.print(f"[bold]{escape(args.path)}[/]: {len(report.rows)} exchanges", highlight=False)
    prov = ", ".join(f"{k}: {meta[k]}" for k in ("server", "server_version", "model", "hardware", "scenario",
                                                   "recorded_at", "recorder", "upstream") if meta.get(k))
    out.print(f"provenance: {escape(prov) or 'none recorded'}", highlight=False)
    out.print("routes: " + escape(", ".join(f"{k} x{v}" for k, v in report.routes.items())), highlight=False)
    out.print("statuses: " + ", ".join(f"{k} x{v}" for k, v in sorted(report.statuses.items())))
    t = Table(title_justify="left")
    for col in ("#", "request", "status", "turn", "prompt", "completion", "logprobs", "finish", "anomalies"):
        t.add_column(col, justify="right" if col in ("#", "status", "prompt", "completion", "logprobs") else "left")
    fmt = lambda v: "" if v is None else escape(str(v))
    for r in report.rows:
        t.add_row(str(r.index), escape(f"{r.method} {r.path}"), str(r.status), fmt(r.kind), fmt(r.prompt_tokens),
                  fmt(r.completion_tokens), fmt(r.logprobs), fmt(r.finish_reason),
                  "[red]" + escape("; ".join(r.anomalies)) + "[/]" if r.anomalies else "")
    out.print(t)
    n = len(report.anomalies)
    out.print(f"{n} anomal{'y' if n == 1 else 'ies'} {INSPECT_SCOPE}", highlight=False)
    return 0


INSPECT_SCOPE = ("seen in single exchanges (what each shows by itself); `harness audit` also links turns into "
                 "conversations and adds the kinds only a conversation shows (silent_mito, continuity_break, "
                 "retried, ...)")


def exchange_anomalies(report) -> list[dict]:
    """inspect's findings in the audit's anomaly schema (Anomaly.to_dict; conversation, group and turn null: an
    exchange alone has none)."""
    from ..captures.kinds import kind_of
    from ..captures.linking import Anomaly

    return [{**Anomaly(-1, 0, n, kind_of(text)[0], text).to_dict(), "conversation": None, "turn": None}
            for n, text in report.anomalies]


def print_repro(report, title) -> None:
    s = report.script
    out.print(f"[bold]{title}[/]: {len(s.turns)} turns, transport {s.transport}"
              f"{' (route ' + s.tito_route + ')' if s.transport == 'vllm_generate' else ''}, model {escape(str(s.model))}",
              highlight=False)
    t = Table(title_justify="left")
    for col in ("turn", "mode", "reason", "prompt", "completion", "dropped tokens", "routed experts", "error"):
        t.add_column(col)
    for o in report.turns:
        t.add_row(str(o.index + 1), o.mode or "", o.fallback_reason or "", str(o.prompt_tokens or ""),
                  str(o.completion_tokens or ""), o.tokens_dropped or "",
                  (str(o.routed_experts) if o.routed_experts else "") + (o.routed_experts_error or ""),
                  escape(f"{o.error}: {o.error_message}") if o.error else "")
    out.print(t)


def print_resend(report, path: str) -> None:
    t = Table(title=f"{escape(path)} sent again to {escape(report.target)}", title_justify="left")
    for col in ("exchange", "route", "status", "ids", "logprobs", "anomalies recorded -> now", "error now"):
        t.add_column(col, overflow="fold")
    for d in report.turns:
        mark = "" if d.same else "[red]"
        t.add_row(str(d.exchange), escape(d.path), f"{mark}{d.recorded_status} -> {d.now_status}",
                  {None: "-", True: "same", False: "[red]differ[/]"}[d.ids_same],
                  "-" if d.logprob_delta is None else f"max diff {d.logprob_delta:.2g}",
                  escape(f"{','.join(d.recorded_anomalies) or '-'} -> {','.join(d.now_anomalies) or '-'}"),
                  escape(d.error or ""))
    out.print(t)
    out.print(f"{len(report.turns) - len(report.differing)} of {len(report.turns)} turns answer as recorded",
              highlight=False)


def cmd_repro(args) -> int:
    from ..captures.emit import emit
    from ..captures.repro import repro
    from ..reach import Unreachable
    from ..recording.format import CassetteError

    if args.emit_test and (refuse_overwrite(args.emit_test, args.force)
                           or refuse_overwrite(str(Path(args.emit_test).with_suffix(".yaml")), args.force)):
        return 2
    try:
        report = repro(args.path, args.client, args.conversation, args.against, args.profile)
    except (CassetteError, ValueError, Unreachable) as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        return 2
    if args.json:
        print(json.dumps(report.to_dict()))
    elif args.client == "ours":
        print_repro(report, escape(args.path))
    else:
        print_resend(report, args.path)
    if args.emit_test:
        try:
            test, cut = emit(report, args.emit_test, args.conversation, args.profile,
                             warn=lambda msg: err.print(f"[yellow]warning:[/] {escape(msg)}", highlight=False))
        except (CassetteError, ValueError) as exc:
            err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
            return 2
        (err if args.json else out).print(f"regression test written to {escape(str(test))} (its conversation: "
                                          f"{escape(str(cut))}); replace its rollout() with your client's"
                                          if args.client != "ours" else
                                          f"regression test written to {escape(str(test))}", highlight=False)
    return 1 if report.differing else 0


def cmd_audit(args) -> int:
    from ..captures.bridge import audit_bridges
    from ..captures.gate import gate, parse_kinds
    from ..recording.format import CassetteError

    try:
        fail_on, ignore = parse_kinds(args.fail_on, "--fail-on"), parse_kinds(args.ignore, "--ignore") or frozenset()
        report = audit_bridges(args.path, args.tokenizer, keep=False)
    except (CassetteError, ValueError) as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        return 2
    g = gate(report.anomalies, fail_on, ignore)
    if args.json:
        print(json.dumps({**report.to_dict(), "gate": g.to_dict()}))
        return 1 if g.failed else 0
    turns = report.turns
    share = f"{100 * report.stitched / turns:.0f}%" if turns else "-"
    out.print(f"[bold]{escape(args.path)}[/]: {report.exchanges} exchanges, {report.conversation_count} conversations, "
              f"{turns} turns, {report.stitched} stitched ({share})", highlight=False)
    if report.meta.get("bug"):
        out.print(f"[yellow]bug recorded with this capture:[/] {escape(str(report.meta['bug']))}", highlight=False)
    fb = report.fallbacks()
    out.print("fallbacks to messages-in: " + (", ".join(f"{k} x{v}" for k, v in sorted(fb.items())) or "none"),
              highlight=False)
    if report.route_probes:
        out.print(f"route probes: {report.route_probes} (a tokens-in route answered 404; the turn went to another)",
                  highlight=False)
    reuse = report.cache_reuse()
    out.print("prefix-cache reuse: " + (f"{100 * reuse:.0f}% of {report.prompt_tokens} prompt tokens"
                                        if reuse is not None else "not reported by the server"), highlight=False)
    for step in report.steps:  # the RL control plane's steps (harness.captures.policy)
        out.print(f"step at exchange {step['pause_exchange']}: pause {step['mode']}, paused "
                  f"{step['paused_seconds']} s, {step['in_flight']} in flight, {step['updates']} update(s), "
                  f"versions {', '.join(map(str, step['versions'])) or '-'}", highlight=False)
    if report.anomalies:
        t = Table(title="anomalies", title_justify="left")
        for col in ("conversation", "turn", "exchange", "kind", "detail"):
            t.add_column(col, overflow="fold")
        for a in report.anomalies:
            t.add_row(str(a.conversation), str(a.turn), str(a.exchange), f"[red]{a.kind}[/]", escape(a.detail))
        out.print(t)
    n = len(report.anomalies)
    out.print(f"{n} anomal{'y' if n == 1 else 'ies'}: {len(g.failed)} fail the gate"
              + (f", {len(g.recovered)} a retry recovered" if g.recovered else "")
              + (f", {len(g.passed_over)} not gated (notes, --ignore, outside --fail-on)" if g.passed_over else ""),
              highlight=False)
    return 1 if g.failed else 0


def cmd_view(args) -> int:
    from ..captures.view import open_view, print_view, render_html
    from ..recording.format import CassetteError

    if args.html and refuse_overwrite(args.html, args.force):
        return 2
    try:
        v = open_view(args.path, args.conversation)
    except (CassetteError, ValueError) as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        return 2
    if v.note:
        err.print(f"[yellow]note:[/] {escape(v.note)}", highlight=False)
    if args.html:
        Path(args.html).parent.mkdir(parents=True, exist_ok=True)
        Path(args.html).write_text(render_html(args.path, v.meta, v.cid, v.turns, v.decode), encoding="utf-8")
        out.print(f"conversation {v.cid} ({len(v.turns)} turns) written to {escape(args.html)}", highlight=False)
        return 0
    print_view(out, args.path, v.meta, v.turns, v.decode)
    return 0


def add_parsers(sub) -> None:
    """audit, inspect, repro, view."""
    au = file_report(sub, "audit", "TITO health of a capture of any client's traffic: conversations, stitched "
                     "share, fallbacks, anomalies (exit 1 when any fails the gate)", cmd_audit)
    au.add_argument("--fail-on", default=None, metavar="KIND,...",
                    help="fail (exit 1) only on these anomaly kinds (default: every kind but notes such as "
                         "history_edited; a retry that recovered an error never fails)")
    au.add_argument("--ignore", default=None, metavar="KIND,...", help="never fail on these anomaly kinds")
    au.add_argument("--tokenizer", default=None, metavar="DIR",
                    help="the deployment's tokenizer (a directory or name) for the bridge audit, over the one the "
                         "capture's meta names (default: the built-in Qwen2.5 with the meta's template)")
    file_report(sub, "inspect", "summarize a cassette and list its anomalies", cmd_inspect)

    rr = sub.add_parser("repro", help="send a capture's requests again as its client sent them, turn by turn, "
                                      "recorded against now (or drive our client with --client ours)")
    rr.add_argument("path")
    rr.add_argument("--conversation", type=int, action="append", default=[], metavar="ID",
                    help="only this conversation (ids: harness cassette conversations); repeatable")
    rr.add_argument("--against", default=None, metavar="URL",
                    help="send to this server (default: the capture's own replay)")
    rr.add_argument("--profile", default=None, help="send to a fake of this profile (harness profiles)")
    rr.add_argument("--client", choices=("as-sent", "ours"), default="as-sent",
                    help="as-sent: the recorded requests (any client's traffic); ours: rebuild the conversation "
                         "and drive our client through it")
    rr.add_argument("--json", action="store_true")
    rr.add_argument("--emit-test", default=None, metavar="FILE",
                    help="write a pytest file (and the conversation's cassette beside it) that serves the "
                         "conversation to a client and fails while its anomalies show")
    rr.add_argument("--force", action="store_true", help="overwrite --emit-test's files")
    rr.set_defaults(func=cmd_repro)

    vw = sub.add_parser("view", help="one conversation of a capture, turn by turn: prompt ids coloured by origin "
                                     "(reused, bridge, rendered, drift), decoded text, logprobs")
    vw.add_argument("path")
    vw.add_argument("--conversation", type=int, default=None, metavar="ID",
                    help="which (ids: harness cassette conversations); default: the only one")
    vw.add_argument("--html", default=None, metavar="OUT", help="write one static page instead")
    vw.add_argument("--force", action="store_true", help="overwrite --html's file")
    vw.set_defaults(func=cmd_view)
