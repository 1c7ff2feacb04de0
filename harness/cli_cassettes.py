"""`harness` subcommands for cassettes: record, replay, inspect, repro, record-suite, conformance."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from .cli_output import err, out


def cmd_record(args) -> int:
    from .wire.faults import FaultSpecError

    from .reach import Unreachable
    from .recording.format import CassetteError
    from .recording.proxy import run_proxy
    from .recording.scrub import Scrubber
    from .serve import BindError

    if args.profile:
        from harness.wire.profiles import ProfileError, parse_label

        try:
            parse_label(args.profile)
        except ProfileError as exc:
            err.print(f"[red]error:[/] --profile: {exc}", highlight=False)
            return 2
    if args.workers > 1:
        return _record_workers(args)

    def ready(port, info):
        server = f"{info.get('server', 'unknown server')} {info.get('server_version', '')}".strip()
        faults = f"; injecting {', '.join(args.fault)}" if args.fault else ""
        print(f"recording {args.upstream} ({server}) into {args.cassette} [mode {args.mode}]{faults}; "
              f"send traffic to http://{args.host}:{port}/v1 ; Ctrl-C to stop", flush=True)

    def recorded(count, inter):
        if not args.quiet:
            ms = f"{inter.duration_ms:.0f} ms" if inter.duration_ms is not None else ""
            faults = f" [fault: {', '.join(inter.faults)}]" if inter.faults else ""
            err.print(escape(f"#{count} {inter.method} {inter.path} -> {inter.status} {ms}{faults}"), highlight=False)

    meta = {k: v for k, v in (("hardware", args.hardware), ("scenario", args.scenario), ("shard", args.shard),
                              ("profile", args.profile)) if v}
    try:
        rec = run_proxy(args.upstream, args.cassette, args.host, args.port, args.mode,
                        Scrubber(extra_patterns=args.scrub_pattern), meta, ready, recorded, args.fault or None,
                        args.fault_seed, args.writer, reuse_port=args.reuse_port, blob_threshold=args.blob_threshold,
                        wait_upstream=args.wait_upstream, on_wait=_waiting)
    except (CassetteError, FaultSpecError, BindError, Unreachable) as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        return 2
    waits = f"; the writer fell behind {rec.backpressure_waits} times" if rec.backpressure_waits else ""
    print(f"stopped: {rec.recorded} exchanges recorded, {rec.on_disk} in {args.cassette}{waits}")
    return 0


def _waiting(why: str) -> None:
    err.print(f"waiting for the upstream: {why}; retrying every second (Ctrl-C to give up)", highlight=False)


def _record_workers(args) -> int:
    """N recorder processes sharing one port (SO_REUSEPORT), one shard file each, merged on exit."""
    import sys

    from .reach import Unreachable, reach
    from .recording import workers
    from .serve import BindError, bind

    try:  # the port free and the upstream up before any worker writes a shard
        with bind(args.host, args.port) as s:
            port = s.getsockname()[1]
        if not args.wait_upstream:
            reach(args.upstream, "--upstream")
    except (BindError, Unreachable) as exc:
        suffix = ": start it first, or pass --wait-upstream to keep trying" if isinstance(exc, Unreachable) else ""
        err.print(f"[red]error:[/] {exc}{suffix}", highlight=False)
        return 2
    cassette = Path(args.cassette)
    shards = workers.shard_paths(cassette, args.workers)
    base = [sys.executable, "-m", "harness.cli", "record", "--upstream", args.upstream, "--host", args.host,
            "--port", str(port), "--mode", args.mode, "--reuse-port", "--writer", args.writer, "--fault-seed",
            str(args.fault_seed), "--blob-threshold", str(args.blob_threshold)]
    for flag, values in (("--fault", args.fault), ("--scrub-pattern", args.scrub_pattern)):
        for v in values:
            base += [flag, v]
    for flag, v in (("--hardware", args.hardware), ("--scenario", args.scenario), ("--profile", args.profile)):
        if v:
            base += [flag, v]
    for flag, on in (("--quiet", args.quiet), ("--wait-upstream", args.wait_upstream)):
        if on:
            base.append(flag)
    procs = workers.spawn(base, shards)
    if procs is None:
        err.print("[red]error:[/] a worker did not start (its error is above)")
        return 2
    print(f"recording {args.upstream} with {args.workers} workers into {cassette} (shards {shards[0].name} ...); "
          f"send traffic to http://{args.host}:{port}/v1 ; Ctrl-C to stop", flush=True)
    merged = workers.wait_and_merge(procs, cassette, shards)
    print(f"stopped: {len(merged.interactions)} exchanges from {args.workers} workers merged into {cassette}")
    return 0


def cmd_chaos(args) -> int:
    from .wire.faults import FaultSpecError

    from .reach import Unreachable
    from .recording.proxy import run_proxy
    from .serve import BindError

    def ready(port, info):
        server = f"{info.get('server', 'unknown server')} {info.get('server_version', '')}".strip()
        print(f"forwarding to {args.upstream} ({server}) with faults {', '.join(args.fault)}; "
              f"send traffic to http://{args.host}:{port}/v1 ; Ctrl-C to stop", flush=True)

    from .recording.replay import Tally

    tally = Tally(None if args.quiet else _log_request)
    try:
        run_proxy(args.upstream, None, args.host, args.port, on_ready=ready, faults=args.fault,
                  fault_seed=args.fault_seed, wait_upstream=args.wait_upstream, on_wait=_waiting, tally=tally)
    except (FaultSpecError, BindError, Unreachable) as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        return 2
    print(f"stopped: forwarded {tally.summary()}")
    return 0


def _log_request(count: int, method: str, path: str, status: int, note: str) -> None:
    err.print(escape(f"#{count} {method} {path} -> {status}" + (f" [{note}]" if note else "")), highlight=False)


def cmd_cassette_recover(args) -> int:
    """Finish an interrupted recording: the journal's exchanges in, an unfinished write cut off."""
    from .recording.format import Cassette, CassetteError, cut_to_last_whole_batch
    from .recording.journal import is_orphaned, journal_dir, recover

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
    from .recording.format import CassetteError
    from .recording.merge import merge

    inputs = {Path(x).resolve() for x in args.shards}
    if Path(args.out).exists() and not args.force and Path(args.out).resolve() not in inputs:
        err.print(f"[red]error:[/] {args.out} exists; merging into it would replace it (its own exchanges are "
                  f"merged only if you name it among the inputs): pass --force to overwrite", highlight=False)
        return 2
    try:
        merged = merge(args.out, args.shards)
    except CassetteError as exc:
        err.print(f"[red]error:[/] {exc}")
        return 2
    out.print(f"{len(merged.interactions)} exchanges from {len(args.shards)} cassette(s) merged into {args.out}, "
              f"ordered by arrival")
    return 0


def cmd_replay(args) -> int:
    from .recording.format import CassetteError
    from .recording.replay import DEFAULT_IGNORE, run_replay

    def ready(port, index):
        print(f"replaying {index.count} interactions from {len(args.paths)} path(s) on http://{args.host}:{port}/v1 "
              f"(unmatched requests answer 422)", flush=True)

    from .recording.replay import Tally
    from .serve import BindError

    tally = Tally(None if args.quiet else _log_request)
    try:
        run_replay(args.paths, args.host, args.port, (*DEFAULT_IGNORE, *args.ignore_field), args.repeat, ready, tally)
    except (CassetteError, BindError) as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        return 2
    print(f"stopped: served {tally.summary()}")
    return 0


def cmd_inspect(args) -> int:
    from .recording.format import Cassette, CassetteError
    from .recording.inspect import analyze

    try:
        report = analyze(Cassette.load(args.path))
    except CassetteError as exc:
        err.print(f"[red]error:[/] {exc}")
        return 2
    if args.json:
        print(json.dumps({"meta": report.meta, "routes": dict(report.routes), "statuses": dict(report.statuses),
                          "rows": [r.__dict__ for r in report.rows], "anomalies": report.anomalies}))
        return 0
    meta = report.meta
    out.print(f"[bold]{args.path}[/]: {len(report.rows)} exchanges")
    prov = ", ".join(f"{k}: {meta[k]}" for k in ("server", "server_version", "model", "hardware", "scenario",
                                                   "recorded_at", "recorder", "upstream") if meta.get(k))
    out.print(f"provenance: {prov or 'none recorded'}")
    out.print("routes: " + ", ".join(f"{k} x{v}" for k, v in report.routes.items()))
    out.print("statuses: " + ", ".join(f"{k} x{v}" for k, v in sorted(report.statuses.items())))
    t = Table(title_justify="left")
    for col in ("#", "request", "status", "turn", "prompt", "completion", "logprobs", "finish", "anomalies"):
        t.add_column(col, justify="right" if col in ("#", "status", "prompt", "completion", "logprobs") else "left")
    fmt = lambda v: "" if v is None else str(v)
    for r in report.rows:
        t.add_row(str(r.index), f"{r.method} {r.path}", str(r.status), fmt(r.kind), fmt(r.prompt_tokens),
                  fmt(r.completion_tokens), fmt(r.logprobs), fmt(r.finish_reason),
                  "[red]" + "; ".join(r.anomalies) + "[/]" if r.anomalies else "")
    out.print(t)
    out.print(f"{len(report.anomalies)} anomal{'y' if len(report.anomalies) == 1 else 'ies'}")
    return 0


def _print_repro(report, title) -> None:
    s = report.script
    out.print(f"[bold]{title}[/]: {len(s.turns)} turns, transport {s.transport}"
              f"{' (route ' + s.tito_route + ')' if s.transport == 'vllm_generate' else ''}, model {s.model}")
    t = Table(title_justify="left")
    for col in ("turn", "mode", "reason", "prompt", "completion", "dropped tokens", "routed experts", "error"):
        t.add_column(col)
    for o in report.turns:
        t.add_row(str(o.index + 1), o.mode or "", o.fallback_reason or "", str(o.prompt_tokens or ""),
                  str(o.completion_tokens or ""), o.tokens_dropped or "",
                  (str(o.routed_experts) if o.routed_experts else "") + (o.routed_experts_error or ""),
                  f"{o.error}: {o.error_message}" if o.error else "")
    out.print(t)


def cmd_repro(args) -> int:
    from .recording.format import CassetteError

    if args.client == "ours":
        return _repro_ours(args)
    from .capture_repro import emit_test, resend

    if args.against and args.profile:
        err.print("[red]error:[/] give --against or --profile, not both")
        return 2
    if args.emit_test and (_exists(args.emit_test, args.force)
                           or _exists(str(Path(args.emit_test).with_suffix(".yaml")), args.force)):
        return 2
    try:
        if args.against:
            from .reach import Unreachable, reach

            try:
                reach(args.against, "--against")
            except Unreachable as exc:
                err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
                return 2
        report = resend(args.path, args.conversation, args.against, args.profile)
    except (CassetteError, ValueError) as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        return 2
    if args.json:
        print(json.dumps({"cassette": report.cassette, "target": report.target,
                          "turns": [t.to_dict() for t in report.turns]}))
    else:
        t = Table(title=f"{escape(args.path)} sent again to {escape(report.target)}", title_justify="left")
        for col in ("exchange", "route", "status", "ids", "logprobs", "anomalies recorded -> now", "error now"):
            t.add_column(col, overflow="fold")
        for d in report.turns:
            mark = "" if d.same else "[red]"
            t.add_row(str(d.exchange), d.path, f"{mark}{d.recorded_status} -> {d.now_status}",
                      {None: "-", True: "same", False: "[red]differ[/]"}[d.ids_same],
                      "-" if d.logprob_delta is None else f"max diff {d.logprob_delta:.2g}",
                      escape(f"{','.join(d.recorded_anomalies) or '-'} -> {','.join(d.now_anomalies) or '-'}"),
                      escape(d.error or ""))
        out.print(t)
        out.print(f"{len(report.turns) - len(report.differing)} of {len(report.turns)} turns answer as recorded",
                  highlight=False)
    if args.emit_test:
        try:
            test, cut = emit_test(args.path, args.emit_test, args.conversation, args.profile)
        except (CassetteError, ValueError) as exc:
            err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
            return 2
        (err if args.json else out).print(f"regression test written to {escape(str(test))} (its conversation: "
                                          f"{escape(str(cut))}); replace its rollout() with your client's",
                                          highlight=False)
    return 1 if report.differing else 0


def _repro_ours(args) -> int:
    from .recording.format import CassetteError
    from .recording.repro import emit_test, repro_cassette

    try:
        report = repro_cassette(args.path)
    except (CassetteError, ValueError) as exc:
        err.print(f"[red]error:[/] {exc}")
        return 2
    _print_repro(report, args.path)
    if args.emit_test:
        path = emit_test(report, args.emit_test)
        out.print(f"regression test written to {path}")
    return 0


def cmd_record_suite(args) -> int:
    from .suite import record_suite

    try:
        results = record_suite(args.base_url, args.transport, args.model, args.out, args.hardware,
                               args.scenario or None, args.tokenizer, progress=lambda m: out.print(m),
                               profile=args.profile)
    except ValueError as exc:
        err.print(f"[red]error:[/] {exc}")
        return 2
    failed = [r for r in results if r[1] != "ok"]
    out.print(f"{len(results) - len(failed)} of {len(results)} scenarios recorded into {args.out}")
    return 1 if failed else 0


def cmd_conformance(args) -> int:
    from .conformance import run_conformance, run_drift

    from .reach import Unreachable
    from .recording.format import CassetteError

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


def _decoder():
    """ids -> text for anomaly details, the tokenizer loaded the first time a detail needs it."""
    tok: list = []

    def decode(ids):
        if not tok:
            try:
                from .tokenizer import load_tokenizer

                tok.append(load_tokenizer())
            except Exception:  # no tokenizer: ids only
                tok.append(None)
        return tok[0].decode(ids) if tok[0] is not None else None

    return decode


def cmd_audit(args) -> int:
    from .captures import audit
    from .recording.format import CassetteError

    try:
        report = audit(args.path, _decoder(), keep=False)
    except CassetteError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        return 2
    if args.json:
        print(json.dumps(report.to_dict()))
        return 1 if report.anomalies else 0
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
    if report.anomalies:
        t = Table(title="anomalies", title_justify="left")
        for col in ("conversation", "turn", "exchange", "kind", "detail"):
            t.add_column(col, overflow="fold")
        for a in report.anomalies:
            t.add_row(str(a.conversation), str(a.turn), str(a.exchange), f"[red]{a.kind}[/]", escape(a.detail))
        out.print(t)
    out.print(f"{len(report.anomalies)} anomal{'y' if len(report.anomalies) == 1 else 'ies'}")
    return 1 if report.anomalies else 0


def cmd_conversations(args) -> int:
    """Conversations are printed as they close (a capture is read once, in flat memory): those still open at
    the end come last, by id."""
    from .captures import audit
    from .recording.format import CassetteError

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


def _exists(path: str, force: bool) -> bool:
    """An output that is there and may not be replaced: said in one line."""
    if Path(path).exists() and not force:
        err.print(f"[red]error:[/] {escape(path)} exists: pass --force to overwrite it", highlight=False)
        return True
    return False


def cmd_extract(args) -> int:
    from .captures import extract, parse_exchanges
    from .recording.format import CassetteError

    if _exists(args.out, args.force):
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
    from .captures import export_parquet
    from .recording.format import CassetteError

    if _exists(args.parquet, args.force):
        return 2
    try:
        rows = export_parquet(args.path, args.parquet)
    except (CassetteError, ValueError) as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        return 2
    out.print(f"{rows} exchange(s) of {escape(args.path)} written to {escape(args.parquet)} (one row each)",
              highlight=False)
    return 0


def cmd_view(args) -> int:
    from .captures import capture_index
    from .recording.format import CassetteError
    from .view import _decoder, conversation, print_view, render_html

    if args.html and _exists(args.html, args.force):
        return 2
    try:
        cid = args.conversation
        if cid is None:
            idx = capture_index(args.path)
            ids = sorted({c for c in idx.conversation if c >= 0}) if idx is not None else []
            if len(ids) != 1:
                err.print(f"[red]error:[/] {escape(args.path)} holds {len(ids)} conversations: pick one with "
                          f"--conversation ID (ids: harness cassette conversations)", highlight=False)
                return 2
            cid = ids[0]
        meta, turns = conversation(args.path, cid)
    except (CassetteError, ValueError) as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        return 2
    decode = _decoder()
    if args.html:
        Path(args.html).parent.mkdir(parents=True, exist_ok=True)
        Path(args.html).write_text(render_html(args.path, meta, cid, turns, decode), encoding="utf-8")
        out.print(f"conversation {cid} ({len(turns)} turns) written to {escape(args.html)}", highlight=False)
        return 0
    print_view(out, args.path, meta, turns, decode)
    return 0


def _file_report(sub, name: str, help: str, func) -> None:
    """A command that reads one cassette and reports on it (`--json` for one object)."""
    p = sub.add_parser(name, help=help)
    p.add_argument("path")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=func)


def add_parsers(sub) -> None:
    """The recording and cassette commands: record, chaos, cassette (merge, extract, export, recover,
    conversations), replay, audit, inspect, repro, view, record-suite, conformance."""
    from .client.config import TRANSPORTS

    rc = sub.add_parser("record", help="a recording reverse proxy in front of any vLLM or Dynamo")
    rc.add_argument("--upstream", required=True, help="the real server, e.g. http://gpu-node:8000")
    rc.add_argument("--cassette", required=True)
    rc.add_argument("--host", default="127.0.0.1")
    rc.add_argument("--port", type=int, default=8080, help="0 picks a free port (printed)")
    rc.add_argument("--mode", choices=("once", "new_episodes", "all"), default="once")
    rc.add_argument("--scrub-pattern", action="append", default=[], help="another regex to blank out; repeatable")
    rc.add_argument("--hardware", default=None, help="provenance: e.g. '8x H100'")
    rc.add_argument("--scenario", default=None, help="provenance: what the traffic is")
    rc.add_argument("--quiet", action="store_true", help="no line per recorded exchange")
    rc.add_argument("--fault", action="append", default=[],
                    help="inject a catalogue fault into live answers: NAME[=VALUE][@PROB][*TIMES]; repeatable")
    rc.add_argument("--fault-seed", type=int, default=0)
    rc.add_argument("--workers", type=int, default=1,
                    help="recorder processes sharing the port, one shard each, merged into --cassette on exit")
    rc.add_argument("--writer", choices=("process", "thread"), default="process",
                    help="where scrubbing, blob storage and disk writes run (default: a process of their own)")
    rc.add_argument("--blob-threshold", type=int, default=32 * 1024,
                    help="base64 strings at least this long (routed experts) go to the blob folder (default 32 KiB)")
    rc.add_argument("--wait-upstream", action="store_true",
                    help="start even when the upstream cannot be reached yet, and keep trying (default: refuse)")
    rc.add_argument("--profile", default=None, help="the server's profile, stored in meta (harness profiles; e.g. "
                    "dynamo-1.6.1+vllm): conformance then knows which fake to compare with")
    rc.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    rc.add_argument("--shard", default=None, help=argparse.SUPPRESS)
    rc.set_defaults(func=cmd_record)

    ch = sub.add_parser("chaos", help="forward to a live server, injecting catalogue faults (nothing recorded)")
    ch.add_argument("--upstream", required=True, help="the real server, e.g. http://gpu-node:8000")
    ch.add_argument("--host", default="127.0.0.1")
    ch.add_argument("--port", type=int, default=8080, help="0 picks a free port (printed)")
    ch.add_argument("--fault", action="append", required=True, help="NAME[=VALUE][@PROB][*TIMES]; repeatable")
    ch.add_argument("--fault-seed", type=int, default=0)
    ch.add_argument("--wait-upstream", action="store_true", help="keep trying until the upstream answers")
    ch.add_argument("--quiet", action="store_true", help="no line per forwarded request")
    ch.set_defaults(func=cmd_chaos)

    cs = sub.add_parser("cassette", help="cassette files")
    csub = cs.add_subparsers(dest="cassette_command", required=True)
    cm = csub.add_parser("merge", help="merge shards into one cassette, ordered by arrival time")
    cm.add_argument("out")
    cm.add_argument("shards", nargs="+")
    cm.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    cm.set_defaults(func=cmd_cassette_merge)
    _file_report(csub, "conversations", "the rollouts in a capture: each conversation's exchanges, turns, verdict",
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
    cx.add_argument("path")
    cx.add_argument("--parquet", required=True, metavar="OUT")
    cx.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    cx.set_defaults(func=cmd_export)
    cr = csub.add_parser("recover", help="finish an interrupted (killed) recording: put its journal into the cassette")
    cr.add_argument("path")
    cr.add_argument("--wait", type=float, default=10.0, help="seconds to wait for a dying recorder's writer")
    cr.set_defaults(func=cmd_cassette_recover)

    rp = sub.add_parser("replay", help="a server that answers from cassettes")
    rp.add_argument("paths", nargs="+", help="cassette files or directories")
    rp.add_argument("--host", default="127.0.0.1")
    rp.add_argument("--port", type=int, default=8080)
    rp.add_argument("--ignore-field", action="append", default=[], help="dotted body field left out of matching")
    rp.add_argument("--repeat", choices=("last", "cycle", "error"), default="last",
                    help="after the recorded answers to a repeated request run out")
    rp.add_argument("--quiet", action="store_true", help="no line per request")
    rp.set_defaults(func=cmd_replay)

    _file_report(sub, "audit", "TITO health of a capture of any client's traffic: conversations, stitched share, "
                 "fallbacks, anomalies (exit 1 when there are any)", cmd_audit)
    _file_report(sub, "inspect", "summarize a cassette and list its anomalies", cmd_inspect)

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

    rs = sub.add_parser("record-suite", help="record the scenario suite from a server, one cassette per scenario")
    rs.add_argument("--base-url", required=True, help="the server to record, e.g. http://gpu-node:8000/v1")
    rs.add_argument("--transport", choices=TRANSPORTS, required=True)
    rs.add_argument("--model", required=True)
    rs.add_argument("--out", required=True, help="directory, e.g. cassettes/real/my-cluster/")
    rs.add_argument("--hardware", default=None, help="provenance, e.g. '8x H100 80GB'")
    rs.add_argument("--scenario", action="append", default=[], help="only these scenarios (repeatable)")
    rs.add_argument("--tokenizer", default=None, help="HF tokenizer dir or name for dynamo_chat bridges")
    rs.add_argument("--profile", default=None, help="the server's profile, stored in each cassette's meta (e.g. "
                    "dynamo-1.6.1+vllm+native-generate; default: told from the server's /version)")
    rs.set_defaults(func=cmd_record_suite)

    cf = sub.add_parser("conformance", help="send recorded requests to a fake and compare answers by structure")
    cf.add_argument("--cassettes", required=True, help="a directory of cassettes (searched recursively) or a file")
    cf.add_argument("--fake", choices=("vllm", "dynamo"), default=None,
                    help="compare every cassette against this fake (default: each cassette's meta.profile)")
    cf.add_argument("--json-out", default=None, metavar="FILE", help="also write the report as JSON")
    cf.add_argument("--all", action="store_true", help="list every exchange, not only those that differ")
    cf.add_argument("--live", default=None, metavar="URL",
                    help="drift: send every recorded request to this live deployment instead of a fake")
    cf.set_defaults(func=cmd_conformance)
