"""`harness rl-step`: does weight sync work against my deployment? (the library is harness.rl)."""

from __future__ import annotations

import asyncio
import json

from rich.markup import escape
from rich.table import Table

from .output import err, out


def print_report(report) -> None:
    d = report.to_dict()
    out.print(f"[bold]rl-step[/] {escape(report.kind)} at {escape(report.base_url)}: pause {report.mode}, "
              f"{report.rollouts} rollouts, engines {', '.join(map(escape, report.engines))}", highlight=False)
    drain = "-" if d["drain_seconds"] is None else f"{d['drain_seconds']:.2f} s"
    out.print(f"in flight at the pause {d['in_flight_at_pause']}; pause answered in {d['pause_seconds']:.2f} s; "
              f"drain {drain}; aborted {d['aborted']} (retried {d['retried']}), kept {d['kept']}, finished "
              f"{d['finished_while_pausing'] + d['ended_after_pause_answered']}; a request sent while paused: "
              f"{d['paused_request']}", highlight=False)
    out.print(f"version {d['version_before']!s} -> {d['version_after']!s}; versions per turn "
              f"{json.dumps(d['versions_per_turn'])}; off-policy turns {d['off_policy_turns']}; new weights answer "
              f"differently: {d['answers_differ']}", highlight=False)
    table = Table("promise", "held", "what happened")
    for c in report.checks:
        table.add_row(escape(c.promise), "[green]yes[/]" if c.ok else "[red]no[/]", escape(c.detail))
    out.print(table)
    for note in report.notes:
        out.print(f"[yellow]note:[/] {escape(note)}", highlight=False)


def cmd_rl_step(args) -> int:
    from ..reach import Unreachable as Unreached, reach
    from ..client import TitoError
    from ..rl.control import ControlError, Unreachable
    from ..rl.kinds import kind
    from ..rl.step import StepConfig, run_step

    try:
        reach(args.base_url, "--base-url")
        if args.discovery_url:
            reach(args.discovery_url, "--discovery-url")
        k = kind(args.kind)
        # --weights names a directory on the server (it is loaded there, not sent): the server says if it is not there
        if k.discovery and not args.discovery_url:
            raise ValueError(f"a {k.name} deployment lists its workers on its RL discovery listener: "
                             "pass --discovery-url http://HOST:DYN_RL_PORT")
        cfg = StepConfig(base_url=args.base_url, model=args.model, kind=k, rollouts=args.rollouts, turns=args.turns,
                         mode=args.mode or k.modes[-1], clear_cache=args.clear_cache, weights=args.weights,
                         version=args.version, discovery_url=args.discovery_url, engine_urls=args.engine_url,
                         inflight_tokens=args.inflight_tokens, settle=args.settle, timeout=args.timeout)
        report = asyncio.run(run_step(cfg))
    except (ValueError, Unreached, Unreachable) as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        return 2
    except ControlError as exc:
        err.print(f"[red]rl-step failed:[/] {type(exc).__name__}: {escape(str(exc))}", highlight=False)
        return 1
    except TitoError as exc:  # a rollout's request, not an admin call
        err.print(f"[red]rl-step failed:[/] a rollout request to {escape(args.base_url)} failed: {type(exc).__name__}: "
                  f"{escape(str(exc))} (does {escape(args.base_url)}/models list {escape(args.model)}?)", highlight=False)
        return 1
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print_report(report)
    return 0 if report.ok else 1


def add_parsers(sub) -> None:
    """rl-step: one training step's weight sync against a deployment."""
    from ..rl.kinds import KINDS

    p = sub.add_parser("rl-step", help="keep rollouts in flight, pause, update weights, resume: does the deployment "
                                       "behave as its kind promises?")
    p.add_argument("--base-url", required=True, help="OpenAI base URL, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--model", required=True)
    p.add_argument("--kind", choices=sorted(KINDS), default="vllm",
                   help="vllm (VLLM_SERVER_DEV_MODE=1), prime-rl (its server), dynamo (--enable-rl)")
    p.add_argument("--discovery-url", default=None, help="dynamo: the frontend's RL listener, http://HOST:DYN_RL_PORT")
    p.add_argument("--engine-url", action="append", default=None,
                   help="dynamo: a worker's system URL to use instead of the one discovery advertises (repeatable, in "
                        "discovery order), e.g. a harness record proxy in front of it")
    p.add_argument("--mode", choices=("abort", "wait", "keep"), default=None, help="pause mode (default: keep)")
    p.add_argument("--clear-cache", action="store_true", help="reset the prefix cache with the pause")
    p.add_argument("--weights", default=None, help="a model directory to load (default: only the version changes)")
    p.add_argument("--version", default="step-1", help="the new weights' version label")
    p.add_argument("--rollouts", type=int, default=4)
    p.add_argument("--turns", type=int, default=3, help="per rollout; the second is in flight at the pause")
    p.add_argument("--inflight-tokens", type=int, default=256, help="length of the turn in flight at the pause")
    p.add_argument("--settle", type=float, default=10.0,
                   help="longest wait for the engines to count the turns in flight (their /metrics)")
    p.add_argument("--timeout", type=float, default=300.0, help="per request and per admin call")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.set_defaults(func=cmd_rl_step)
