"""`harness demo`, `rollout`, `parity`, `fake`: running the client and the fakes."""

from __future__ import annotations

import asyncio
import json
import os
import time

from rich.table import Table

from .output import err, out


def rollout_table(report, title: str) -> Table:
    t = Table(title=title, title_justify="left")
    for col in ("turn", "mode", "reason", "route", "prompt", "completion", "logprobs", "finish", "note"):
        t.add_column(col, justify="right" if col in ("turn", "prompt", "completion") else "left")
    for r in report.turns:
        note = (r.tokens_dropped or (r.fallback_detail if r.fallback_reason not in (None, "no_prior_turn") else "")
                or next((n for n in r.notes if "404" in n), ""))
        t.add_row(str(r.index + 1), "[green]tito[/]" if r.mode == "tito" else "[yellow]mito[/]",
                  r.fallback_reason or "", r.route, str(len(r.prompt_ids or [])), str(len(r.completion_ids or [])),
                  "yes" if r.completion_logprobs is not None else "[red]missing[/]", r.finish_reason or "",
                  note[:60])
    return t


def print_report(report, title: str) -> None:
    out.print(rollout_table(report, title))
    s = report.summary
    cont = "ok" if report.continuity_ok() else "[red]BROKEN[/]"
    parity = report.parity
    if parity is None:
        verdict = "not checked"
    elif parity["ok"]:
        verdict = "ok"
    elif parity.get("affects_stitching", True):
        verdict = f"[red]MISMATCH[/] at token {parity['first_diff']}: {parity['cause']}"
    else:  # vllm_generate: bridges come from the server's /tokenize
        verdict = (f"local tokenizer differs from the engine at token {parity['first_diff']} ({parity['cause']}); "
                   f"information only: bridge tokens come from the server's /tokenize, stitched prompts are unaffected")
    out.print(f"TITO turns: {s['tito_turns']}, MITO turns: {s['mito_turns']}; token continuity: {cont}; "
              f"tokenizer parity: {verdict}")
    for note in report.notes:
        out.print(f"[yellow]note:[/] {note}", highlight=False)


def cmd_rollout(args) -> int:
    from ..client import ClientConfig, TitoError
    from ..rollout import run_rollout

    config = ClientConfig(base_url=args.base_url, model=args.model, renderer_transport=args.transport,
                          tito_route=args.tito_route, tokenizer=args.tokenizer, api_key=args.api_key,
                          max_retries=args.retries, timeout=args.timeout, template=args.template)
    try:
        report = asyncio.run(run_rollout(config, args.turns, args.max_tokens, args.seed, tools=not args.no_tools))
    except TitoError as exc:
        err.print(f"[red]rollout failed:[/] {type(exc).__name__}: {exc}")
        return 2
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print_report(report, f"{args.transport} rollout against {args.base_url} ({args.model})")
    return 0


def cmd_parity(args) -> int:
    from ..client import ClientConfig, TitoError
    from ..parity_probe import probe

    config = ClientConfig(base_url=args.base_url, model=args.model, renderer_transport=args.transport,
                          tokenizer=args.tokenizer, template=args.template, api_key=args.api_key, parity_policy="off")
    try:
        rows = asyncio.run(probe(config))
    except TitoError as exc:
        err.print(f"[red]parity probe failed:[/] {type(exc).__name__}: {exc}")
        return 2
    mismatches = sum(1 for r in rows if r.verdict == "MISMATCH")
    if args.json:
        print(json.dumps({"transport": args.transport, "base_url": args.base_url, "model": args.model,
                          "rows": [r.to_dict() for r in rows], "mismatches": mismatches}))
    else:
        t = Table(title=f"tokenizer parity: local vs {args.base_url} ({args.transport})", title_justify="left")
        for col in ("conversation", "engine tokens", "local tokens", "verdict", "first difference"):
            t.add_column(col, justify="right" if "tokens" in col else "left")
        for r in rows:
            rep = r.report
            first = r.error or ("" if rep.ok else f"token {rep.first_diff}: engine id {rep.engine_token} vs local id "
                                                  f"{rep.local_token}; engine {rep.engine_text!r} vs local "
                                                  f"{rep.local_text!r} ({rep.cause})")
            color = {"match": "green", "MISMATCH": "red"}.get(r.verdict, "yellow")
            t.add_row(r.conversation, str(rep.engine_len) if rep else "-", str(rep.local_len) if rep else "-",
                      f"[{color}]{r.verdict}[/]", first)
        out.print(t)
        out.print(f"{mismatches} mismatch(es) in {len(rows)} conversations")
    unknown = sum(1 for r in rows if r.verdict == "unknown")
    return 1 if mismatches else (3 if unknown == len(rows) else 0)


def rl_ports(app) -> str:
    """What a control plane adds to the start-up line: its plane, and Dynamo's system and RL ports."""
    from fake_servers.base import STATE

    c = app[STATE].control
    if c is None or c.plane is None:
        return ""
    ports = f"; system server http://127.0.0.1:{c.system_port}, /v1/rl/workers on port {c.rl_port}" \
        if c.system_port is not None else ""
    return f" (control plane {c.plane.name}{ports})"


def cmd_fake(args) -> int:
    from fake_servers.server import FakeConfig, build_app

    latency = [float(x) for x in args.latency.split(",")] if args.latency else [0.0, 0.0]
    cfg = FakeConfig(kind=args.kind, model=args.model, max_model_len=args.max_model_len, moe=args.moe,
                     faults=args.fault, fault_seed=args.fault_seed, ttft=latency[0],
                     per_token=latency[1] if len(latency) > 1 else 0.0, tokenizer=args.tokenizer,
                     empty_rate=args.empty_rate,
                     profile=args.profile, dynamo_backend=args.backend, native_generate=args.native_generate,
                     chat_tokens_route=False if args.no_chat_tokens else None,
                     generate_route=False if args.no_generate else None,
                     tool_parser=None if args.no_tool_parser else "hermes", enable_rl=args.enable_rl,
                     system_port=args.system_port, rl_port=args.rl_port, max_num_seqs=args.max_num_seqs)
    try:
        app = build_app(cfg)
        prof = cfg.resolve_profile()
    except ValueError as exc:
        err.print(f"[red]error:[/] {exc}")
        return 2
    from harness.wire.profiles import profile_label

    from ..serve import BindError, serve_forever

    try:
        serve_forever(app, args.host, args.port,
                      lambda port: print(f"fake {args.kind} ({profile_label(prof)}) serving {args.model} on "
                                         f"http://{args.host}:{port}/v1{rl_ports(app)}", flush=True))
    except BindError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        return 2
    return 0


def cmd_demo(args) -> int:
    from fake_servers.server import FakeConfig, RunningServer

    from ..client import ClientConfig
    from ..rollout import run_rollout

    t0 = time.perf_counter()
    out.print("[bold]Starting a fake vLLM and a fake Dynamo in process (real Qwen2.5 tokenizer)...[/]")
    with RunningServer(FakeConfig(kind="vllm")) as vllm, RunningServer(FakeConfig(kind="dynamo")) as dyn:
        runs = [("vllm_generate", vllm.base_url, "auto"), ("dynamo_chat", dyn.base_url, "auto")]
        ok = True
        for transport, url, route in runs:
            cfg = ClientConfig(base_url=url, model="tiny-qwen", renderer_transport=transport, tito_route=route)
            report = asyncio.run(run_rollout(cfg, args.turns, args.max_tokens))
            print_report(report, f"{transport} against the fake {'vLLM' if transport == 'vllm_generate' else 'Dynamo'} at {url}")
            ok = ok and report.continuity_ok()
    from ..captures.repro import repro_cassette
    from .captures import print_repro

    from ..recording.format import shipped

    for name in ("vllm-0.32-cpu", "dynamo-1.6.1-vllm-0.31-cpu"):
        path = shipped(f"real/{name}/rollout_4_turns_tools.yaml")
        out.print(f"[bold]Replaying a rollout recorded from a real server ({name}) through the client...[/]")
        report = repro_cassette(path)
        print_repro(report, f"cassettes/real/{name}/{path.name}")
        ok = ok and [t.mode for t in report.turns] == ["mito", "tito", "tito", "tito"]
    out.print(f"[bold]demo finished in {time.perf_counter() - t0:.1f} s[/]")
    return 0 if ok else 1


def add_parsers(sub) -> None:
    """demo, rollout, parity, fake: running the client and the fakes."""
    from ..wire.transports import TRANSPORTS


    d = sub.add_parser("demo", help="fake vLLM + fake Dynamo in process, a rollout on each transport, a cassette replay")
    d.add_argument("--turns", type=int, default=4)
    d.add_argument("--max-tokens", type=int, default=96)
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser("rollout", help="drive a scripted multi-turn tool-using conversation against any server")
    r.add_argument("--base-url", required=True, help="OpenAI base URL, e.g. http://127.0.0.1:8000/v1")
    r.add_argument("--model", required=True)
    r.add_argument("--transport", choices=TRANSPORTS, default="vllm_generate")
    r.add_argument("--tito-route", choices=("auto", "chat_tokens", "generate"), default="auto",
                   help="vllm_generate: where stitched turns go (default: probe)")
    r.add_argument("--turns", type=int, default=4)
    r.add_argument("--max-tokens", type=int, default=96)
    r.add_argument("--tokenizer", default=None, help="HF tokenizer dir or name (default: built-in Qwen2.5)")
    r.add_argument("--template", choices=("chatml", "thinking"), default="chatml")
    r.add_argument("--api-key", default=os.environ.get("HARNESS_API_KEY"))
    r.add_argument("--retries", type=int, default=3)
    r.add_argument("--timeout", type=float, default=120.0)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    r.add_argument("--no-tools", action="store_true",
                   help="run the conversation without tools (servers started without tool calling)")
    r.set_defaults(func=cmd_rollout)

    pa = sub.add_parser("parity", help="does the local tokenizer render exactly what the engine renders?")
    pa.add_argument("--base-url", required=True)
    pa.add_argument("--model", required=True)
    pa.add_argument("--transport", choices=TRANSPORTS, default="vllm_generate")
    pa.add_argument("--tokenizer", default=None, help="HF tokenizer dir or name (default: built-in Qwen2.5)")
    pa.add_argument("--template", choices=("chatml", "thinking"), default="chatml")
    pa.add_argument("--api-key", default=os.environ.get("HARNESS_API_KEY"))
    pa.add_argument("--json", action="store_true")
    pa.set_defaults(func=cmd_parity)

    f = sub.add_parser("fake", help="run a fake vLLM or Dynamo server")
    f.add_argument("kind", choices=("vllm", "dynamo"))
    f.add_argument("--host", default="127.0.0.1")
    f.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed)")
    f.add_argument("--model", default="tiny-qwen")
    f.add_argument("--max-model-len", type=int, default=4096)
    f.add_argument("--fault", action="append", default=[], help="NAME[=VALUE][@PROB][*TIMES]; repeatable")
    f.add_argument("--fault-seed", type=int, default=0)
    f.add_argument("--moe", default=None, help="LAYERS,TOP_K,EXPERTS: answer with routed experts")
    f.add_argument("--latency", default=None, help="TTFT,PER_TOKEN seconds")
    f.add_argument("--empty-rate", type=float, default=None,
                   help="share of answers that are only the stop token (default: the real servers' rate for a "
                        "seeded request at temperature > 0)")
    f.add_argument("--tokenizer", default=None)
    f.add_argument("--profile", default=None, help="server version to answer as (harness profiles; default: "
                   "vllm-0.32 / dynamo-1.6.1)")
    f.add_argument("--backend", choices=("vllm", "mocker", "sglang"), default=None,
                   help="dynamo: the worker behind the frontend (default vllm)")
    f.add_argument("--native-generate", action="store_true",
                   help="dynamo: serve /inference/v1/generate (DYN_VLLM_ENABLE_INFERENCE_V1_GENERATE=1)")
    f.add_argument("--no-chat-tokens", action="store_true", help="vllm: no /v1/chat/completions/tokens even if the profile has it")
    f.add_argument("--no-generate", action="store_true", help="vllm: no /inference/v1/generate")
    f.add_argument("--no-tool-parser", action="store_true", help="vllm: refuse tools as a server without --enable-auto-tool-choice")
    f.add_argument("--enable-rl", action="store_true", default=None,
                   help="dynamo: the worker's RL engine routes and the frontend's /v1/rl/workers (or DYN_ENABLE_RL=1); "
                        "vLLM's come with VLLM_SERVER_DEV_MODE=1, prime-rl profiles always have theirs")
    f.add_argument("--system-port", type=int, default=None, help="dynamo: the worker's system server (or "
                   "DYN_SYSTEM_PORT; default a free port, printed)")
    f.add_argument("--rl-port", type=int, default=None, help="dynamo: the RL discovery listener (or DYN_RL_PORT; "
                   "default a free port, printed)")
    f.add_argument("--max-num-seqs", type=int, default=256, help="requests running at once; the excess waits")
    f.set_defaults(func=cmd_fake)
