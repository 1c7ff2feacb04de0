"""`harness record`, `chaos`, `replay`, `record-suite`: recording traffic and serving it again."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape

from .output import err, out


def cmd_record(args) -> int:
    from ..wire.faults import FaultSpecError

    from ..reach import Unreachable
    from ..recording.format import CassetteError
    from ..recording.proxy import run_proxy
    from ..recording.scrub import Scrubber
    from ..serve import BindError

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
    rotate = None
    if args.rotate:
        from ..recording.segments import parse_rotate

        try:
            rotate = parse_rotate(args.rotate)
        except ValueError as exc:
            err.print(f"[red]error:[/] {exc}", highlight=False)
            return 2
    try:
        rec = run_proxy(args.upstream, args.cassette, args.host, args.port, args.mode,
                        Scrubber(extra_patterns=args.scrub_pattern), meta, ready, recorded, args.fault or None,
                        args.fault_seed, args.writer, reuse_port=args.reuse_port, blob_threshold=args.blob_threshold,
                        wait_upstream=args.wait_upstream, on_wait=_waiting, rotate=rotate)
    except (CassetteError, FaultSpecError, BindError, Unreachable) as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        return 2
    waits = f"; the writer fell behind {rec.backpressure_waits} times" if rec.backpressure_waits else ""
    where = args.cassette
    if rotate:
        from ..recording.segments import run_dir

        where = f"the segments of {run_dir(args.cassette)}"
    print(f"stopped: {rec.recorded} exchanges recorded, {rec.on_disk} in {where}{waits}")
    return 0


def _waiting(why: str) -> None:
    err.print(f"waiting for the upstream: {why}; retrying every second (Ctrl-C to give up)", highlight=False)


def _record_workers(args) -> int:
    """N recorder processes sharing one port (SO_REUSEPORT), one shard file each, merged on exit."""
    import sys

    from ..reach import Unreachable, reach
    from ..recording import workers
    from ..serve import BindError, bind

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
    from ..wire.faults import FaultSpecError

    from ..reach import Unreachable
    from ..recording.proxy import run_proxy
    from ..serve import BindError

    def ready(port, info):
        server = f"{info.get('server', 'unknown server')} {info.get('server_version', '')}".strip()
        print(f"forwarding to {args.upstream} ({server}) with faults {', '.join(args.fault)}; "
              f"send traffic to http://{args.host}:{port}/v1 ; Ctrl-C to stop", flush=True)

    from ..recording.replay import Tally

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


def cmd_replay(args) -> int:
    from ..recording.format import CassetteError
    from ..recording.replay import DEFAULT_IGNORE, run_replay

    def ready(port, index):
        print(f"replaying {index.count} interactions from {len(args.paths)} path(s) on http://{args.host}:{port}/v1 "
              f"(unmatched requests answer 422)", flush=True)

    from ..recording.replay import Tally
    from ..serve import BindError

    tally = Tally(None if args.quiet else _log_request)
    try:
        run_replay(args.paths, args.host, args.port, (*DEFAULT_IGNORE, *args.ignore_field), args.repeat, ready, tally)
    except (CassetteError, BindError) as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        return 2
    print(f"stopped: served {tally.summary()}")
    return 0


def cmd_record_suite(args) -> int:
    from ..suite import record_suite

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


def add_parsers(sub) -> None:
    """record, chaos, replay, record-suite."""
    from ..wire.transports import TRANSPORTS

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
    rc.add_argument("--rotate", metavar="SIZE|COUNT", default=None,
                    help="write the run as segments of this many exchanges (10000) or bytes (256MB) in the folder "
                         "named after --cassette, with a manifest; every tool reads the folder as one capture")
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

    rp = sub.add_parser("replay", help="a server that answers from cassettes")
    rp.add_argument("paths", nargs="+", help="cassette files or directories")
    rp.add_argument("--host", default="127.0.0.1")
    rp.add_argument("--port", type=int, default=8080)
    rp.add_argument("--ignore-field", action="append", default=[], help="dotted body field left out of matching")
    rp.add_argument("--repeat", choices=("last", "cycle", "error"), default="last",
                    help="after the recorded answers to a repeated request run out")
    rp.add_argument("--quiet", action="store_true", help="no line per request")
    rp.set_defaults(func=cmd_replay)

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
