"""Record a real server's RL control plane (pause, resume, weight updates, versions, /metrics, LoRA) through
`harness record`, for the fakes to be held to.

    # vLLM 0.31/0.32 started with VLLM_SERVER_DEV_MODE=1 (scripts/real_servers.sh: DEV_MODE=1 ... vllm)
    python scripts/record_rl.py --kind vllm --upstream http://127.0.0.1:8011 --profile vllm-0.32 \
        --out cassettes/real/vllm-0.32-cpu --model-dir2 ~/.cache/tito-harness/real/tiny-qwen-2
    # Dynamo 1.6.1 + vLLM worker with --enable-rl (scripts/real_servers.sh dynamo-vllm-rl)
    python scripts/record_rl.py --kind dynamo --upstream http://127.0.0.1:8035 --system http://127.0.0.1:8036 \
        --rl http://127.0.0.1:8037 --profile dynamo-1.6.1+vllm --out cassettes/real/dynamo-1.6.1-vllm-0.31-cpu \
        --model-dir2 ~/.cache/tito-harness/real/tiny-qwen-2

Writes `rl_*.yaml` into --out. Each scenario runs with its own recorders (one per upstream: on Dynamo the frontend,
the worker's system server and the frontend's RL discovery listener are three servers, so a scenario writes
`rl_NAME.yaml`, `rl_NAME.engine.yaml` and `rl_NAME.discovery.yaml`); exchanges within a cassette are in the order
they were answered, and each carries its time, so a scenario's cassettes interleave by time.

Scenarios: `routes` (every control route, good and bad bodies), `pause_abort`, `pause_wait`, `pause_keep` (streamed
and whole answers in flight, then a pause in that mode, a request sent while paused, an update in between for keep,
then resume), `update` (a seeded request before and after an update from disk to --model-dir2, and a version tag),
`update_missing` (an update from a directory that is not there, then a chat; run it last), `cache` (a prompt twice, then a pause that clears the cache, then the prompt again: cached tokens), `generation_config` (Dynamo with --enable-rl started on a model whose
generation_config.json sets top_k 1: messages-in answers follow it, token-in answers sample with vLLM's defaults), `metrics`
(/metrics at rest and with requests in flight), `lora` (load and unload an adapter, where the build allows).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from harness.serve import wait_port

PROMPT = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Recorders:
    """One `harness record` per upstream, each into its own cassette; stopped (flushed) on exit."""

    def __init__(self, out: Path, name: str, upstreams: dict[str, str], profile: str):
        self.procs, self.urls = [], {}
        for role, upstream in upstreams.items():
            port = free_port()
            suffix = "" if role == "api" else f".{role}"
            cassette = out / f"rl_{name}{suffix}.yaml"
            cassette.unlink(missing_ok=True)
            self.procs.append(subprocess.Popen(
                ["harness", "record", "--upstream", upstream, "--cassette", str(cassette), "--port", str(port),
                 "--mode", "all", "--quiet", "--profile", profile,
                 "--scenario", f"RL control plane: {name} ({role}; scripts/record_rl.py)"]))
            self.urls[role] = f"http://127.0.0.1:{port}"
        for url in self.urls.values():
            wait_port(int(url.rsplit(":", 1)[1]))

    def stop(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGINT)
        for p in self.procs:
            p.wait(120)


def chat_body(model: str, stream: bool, max_tokens: int = 300, **extra) -> dict:
    body = {"model": model, "messages": PROMPT, "max_tokens": max_tokens, "temperature": 1.0, "seed": 1, "logprobs": True,
            "ignore_eos": True, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    body.update(extra)
    return body


async def chat(http: httpx.AsyncClient, body: dict, log: list, tag: str, first_tokens: asyncio.Event | None = None):
    """Send one chat; note what came back (status, finish_reason, completion token count)."""
    t0 = time.monotonic()
    if body.get("stream"):
        chunks, finish = 0, None
        async with http.stream("POST", "/v1/chat/completions", json=body) as r:
            async for line in r.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                ev = json.loads(line[6:])
                for ch in ev.get("choices") or []:
                    chunks += 1
                    finish = ch.get("finish_reason") or finish
                if first_tokens is not None and chunks >= 5:
                    first_tokens.set()
            log.append((tag, r.status_code, finish, f"{chunks} chunks", round(time.monotonic() - t0, 2)))
    else:
        r = await http.post("/v1/chat/completions", json=body)
        j = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        ch = (j.get("choices") or [{}])[0]
        log.append((tag, r.status_code, ch.get("finish_reason"), (j.get("usage") or {}).get("completion_tokens"),
                    round(time.monotonic() - t0, 2)))


class Admin:
    """The control calls, as each kind of server takes them."""

    def __init__(self, kind: str, api: httpx.AsyncClient, engine: httpx.AsyncClient | None):
        self.kind, self.api, self.engine = kind, api, engine

    async def call(self, what: str, **kw) -> httpx.Response:
        if self.kind == "vllm":
            if what == "pause":
                q = f"?mode={kw['mode']}" + (f"&clear_cache={str(kw['clear_cache']).lower()}" if "clear_cache" in kw else "")
                return await self.api.post("/pause" + q)
            if what == "resume":
                return await self.api.post("/resume")
            if what == "version":
                return await self.api.post("/update_weight_version", json={"new_version": kw["version"]})
            if what == "get_version":
                return await self.api.get("/weight_info")
            if what == "update_from_disk":
                return await self.api.post("/collective_rpc", json={"method": "reload_weights",
                                                                    "kwargs": {"weights_path": kw["path"]}})
            if what == "is_paused":
                return await self.api.get("/is_paused")
        else:
            names = {"pause": "pause_generation", "resume": "resume_generation", "version": "set_weight_version",
                     "get_version": "get_weight_version", "update_from_disk": "update_weights_from_disk",
                     "is_paused": "liveness_probe", "flush": "flush_cache"}
            body = {"pause": lambda: {"mode": kw["mode"], **({"clear_cache": kw["clear_cache"]} if "clear_cache" in kw else {})},
                    "version": lambda: {"weight_version": kw["version"]},
                    "update_from_disk": lambda: {"model_path": kw["path"], **({"weight_version": kw["version"]}
                                                                              if kw.get("version") else {})},
                    }.get(what, lambda: {})()
            return await self.engine.post(f"/engine/{names[what]}", json=body)
        raise ValueError(what)


async def in_flight_pause(a, admin: Admin, http: httpx.AsyncClient, mode: str, update_dir: str | None) -> list:
    log: list = []
    first = asyncio.Event()
    tasks = [asyncio.create_task(chat(http, chat_body(a.model, True), log, f"stream{i}", first)) for i in range(2)]
    tasks += [asyncio.create_task(chat(http, chat_body(a.model, False), log, f"whole{i}")) for i in range(2)]
    await asyncio.wait_for(first.wait(), 120)
    t0 = time.monotonic()
    r = await admin.call("pause", mode=mode)
    log.append(("pause", r.status_code, r.text[:200], round(time.monotonic() - t0, 2)))
    log.append(("is_paused", (await admin.call("is_paused")).text[:200]))
    held = asyncio.create_task(chat(http, chat_body(a.model, False, max_tokens=8), log, "sent_while_paused"))
    await asyncio.sleep(1.5)
    log.append(("held_after_1.5s", not held.done()))
    if update_dir:
        r = await admin.call("update_from_disk", path=update_dir, version="step-2")
        log.append(("update", r.status_code, r.text[:300]))
        if a.kind == "vllm":
            r = await admin.call("version", version="step-2")
            log.append(("version", r.status_code, r.text[:200]))
    await asyncio.sleep(0.5)
    r = await admin.call("resume")
    log.append(("resume", r.status_code, r.text[:200]))
    await asyncio.wait_for(asyncio.gather(*tasks, held), 600)
    return log


async def scenario(a, name: str) -> list:
    ups = {"api": a.upstream}
    if a.kind == "dynamo":
        ups |= {"engine": a.system, "discovery": a.rl}
    rec = Recorders(Path(a.out), name, ups, a.profile)
    log: list = []
    try:
        async with httpx.AsyncClient(base_url=rec.urls["api"], timeout=600) as http, \
                httpx.AsyncClient(base_url=rec.urls.get("engine", rec.urls["api"]), timeout=600) as eng, \
                httpx.AsyncClient(base_url=rec.urls.get("discovery", rec.urls["api"]), timeout=60) as disc:
            admin = Admin(a.kind, http, eng)
            await http.get("/v1/models")
            if name == "routes":
                await routes(a, http, eng, disc, log)
            elif name.startswith("pause_"):
                log += await in_flight_pause(a, admin, http, name.split("_", 1)[1],
                                             a.model_dir2 if name == "pause_keep" else None)
            elif name == "update":
                det = dict(max_tokens=16, ignore_eos=True, temperature=1.0, seed=3, logprobs=True)
                for tag, step in (("before", None), ("after", a.model_dir2), ("back", a.model_dir1)):
                    if step:
                        if a.kind == "dynamo":  # the worker refuses an update unless paused first
                            await admin.call("pause", mode="keep")
                        r = await admin.call("update_from_disk", path=step, version=f"v-{tag}")
                        log.append((f"update_{tag}", r.status_code, r.text[:300]))
                        if a.kind == "dynamo":
                            await admin.call("resume")
                    r = await http.post("/v1/chat/completions", json={"model": a.model, "messages": PROMPT, **det})
                    log.append((tag, r.status_code, r.json()["choices"][0]["message"]["content"][:60]))
                    log.append(("version", (await admin.call("get_version")).text[:200]))
                r = await admin.call("version", version="step-7")
                log.append(("set_version", r.status_code, r.text[:200]))
                log.append(("version", (await admin.call("get_version")).text[:200]))
            elif name == "update_missing":  # last: on vLLM a reload from a missing directory leaves the engine dead
                if a.kind == "dynamo":
                    await admin.call("pause", mode="keep")
                r = await admin.call("update_from_disk", path="/nonexistent/model-dir", version="v-missing")
                log.append(("update_missing_dir", r.status_code, r.text[:300]))
                if a.kind == "dynamo":
                    r = await admin.call("resume")
                    log.append(("resume", r.status_code, r.text[:300]))
                r = await http.post("/v1/chat/completions", json={"model": a.model, "messages": PROMPT, "max_tokens": 4})
                log.append(("chat_after", r.status_code, r.text[:300]))
                log.append(("health_after", (await http.get("/health")).status_code))
            elif name == "cache":
                body = {"model": a.model, "messages": [{"role": "user", "content": "cache me " * 200}], "max_tokens": 4}
                for tag in ("first", "second"):
                    r = await http.post("/v1/chat/completions", json=body)
                    log.append((tag, r.json().get("usage")))
                r = await (http.post("/reset_prefix_cache") if a.kind == "vllm" else admin.call("flush"))
                log.append(("reset", r.status_code, r.text[:200]))
                r = await http.post("/v1/chat/completions", json=body)
                log.append(("after_reset", r.json().get("usage")))
                r = await admin.call("pause", mode="abort", clear_cache=True)
                await admin.call("resume")
                r = await http.post("/v1/chat/completions", json=body)
                log.append(("after_pause_clear_cache", r.json().get("usage")))
            elif name == "metrics":
                r = await http.get("/metrics")
                log.append(("at_rest", r.status_code, len(r.text)))
                if a.kind == "dynamo":
                    r = await eng.get("/metrics")
                    log.append(("worker_at_rest", r.status_code, len(r.text)))
                first = asyncio.Event()
                tasks = [asyncio.create_task(chat(http, chat_body(a.model, True, max_tokens=200), log, f"s{i}", first))
                         for i in range(6)]
                await asyncio.wait_for(first.wait(), 120)
                await asyncio.sleep(1)
                r = await http.get("/metrics")
                log.append(("under_load", r.status_code, len(r.text)))
                if a.kind == "dynamo":
                    r = await eng.get("/metrics")
                    log.append(("worker_under_load", r.status_code, len(r.text)))
                await asyncio.gather(*tasks)
                r = await http.get("/metrics")
                log.append(("after", r.status_code, len(r.text)))
            elif name == "generation_config":  # Dynamo --enable-rl, a model whose generation_config sets top_k 1
                nv = {"extra_fields": ["engine_data", "completion_token_ids"]}
                base = {"model": a.model, "messages": PROMPT, "max_tokens": 6, "ignore_eos": True}
                prompt_ids = None
                for k in range(4):  # messages-in: the model's generation_config applies (greedy: the same ids)
                    r = await http.post("/v1/chat/completions", json=dict(base, nvext=nv))
                    j = r.json()
                    prompt_ids = j["nvext"]["engine_data"]["prompt_token_ids"]
                    log.append((f"messages_in{k}", r.status_code, j["nvext"]["completion_token_ids"]))
                for k in range(4):  # token-in: vLLM's defaults (temperature 1, no top_k), so the ids vary
                    body = dict(base, messages=[{"role": "user", "content": "(token_data)"}],
                                nvext=dict(nv, token_data=prompt_ids))
                    r = await http.post("/v1/chat/completions", json=body)
                    log.append((f"token_in{k}", r.status_code, r.json()["nvext"]["completion_token_ids"]))
            elif name == "lora":
                await lora(a, http, eng, log)
    finally:
        rec.stop()
    return log


async def routes(a, http, eng, disc, log) -> None:
    """Every control route with a good body, then the bad bodies the real server refuses."""
    if a.kind == "vllm":
        calls = [("GET", "/is_paused", None), ("GET", "/weight_info", None), ("GET", "/get_world_size", None),
                 ("GET", "/get_world_size?include_dp=false", None), ("GET", "/server_info", None),
                 ("GET", "/is_sleeping", None), ("POST", "/pause?mode=bogus", None), ("POST", "/pause?clear_cache=maybe", None),
                 ("POST", "/pause?mode=keep&clear_cache=false", None), ("GET", "/is_paused", None),
                 ("POST", "/resume", None), ("POST", "/pause", None), ("POST", "/resume", None),
                 ("POST", "/pause?mode=wait&wait_for_inflight_requests=true", None), ("POST", "/resume", None),
                 ("POST", "/abort_requests", {}), ("POST", "/abort_requests", {"request_ids": ["nope"]}),
                 ("POST", "/abort_requests", [1, 2]), ("POST", "/abort_requests", "raw:{not json"),
                 ("POST", "/update_weights", {}), ("POST", "/update_weights", {"update_info": {}}),
                 ("POST", "/update_weights", "raw:[1]"),
                 ("POST", "/init_weight_transfer_engine", {}), ("POST", "/init_weight_transfer_engine", {"init_info": {}}),
                 ("POST", "/start_weight_update", None), ("POST", "/finish_weight_update", {"weight_version": 5}),
                 ("POST", "/finish_weight_update", {"weight_version": "step-1"}), ("GET", "/weight_info", None),
                 ("POST", "/update_weight_version", {}), ("POST", "/update_weight_version", {"new_version": 3}),
                 ("POST", "/update_weight_version", {"new_version": "step-3"}), ("GET", "/weight_info", None),
                 ("POST", "/shutdown_weight_transfer_engine", None),
                 ("POST", "/weight_checker", {}), ("POST", "/weight_checker", {"action": "bogus"}),
                 ("POST", "/weight_checker", {"action": "compare"}), ("POST", "/weight_checker", {"action": "checksum"}),
                 ("POST", "/reset_prefix_cache", None), ("POST", "/reset_prefix_cache?reset_running_requests=true", None),
                 ("POST", "/collective_rpc", {}), ("POST", "/collective_rpc", {"method": "no_such_method"}),
                 ("POST", "/load_lora_adapter", {"lora_name": "a", "lora_path": "/nonexistent"}),
                 ("POST", "/v1/load_lora_adapter", {"lora_name": "a", "lora_path": "/nonexistent"}),
                 ("POST", "/v1/unload_lora_adapter", {"lora_name": "a"}), ("GET", "/metrics", None),
                 ("GET", "/load", None), ("POST", "/pause?mode=abort", "raw:not a body"), ("POST", "/resume", None)]
        for method, path, body in calls:
            await send(http, method, path, body, log)
    else:
        r = await disc.get("/v1/rl/workers")
        log.append(("workers", r.status_code, r.text[:400]))
        await send(disc, "GET", "/v1/rl/nope", None, log)
        await send(disc, "GET", "/metrics", None, log)
        names = ["liveness_probe", "get_weight_version", "pause_generation", "liveness_probe", "resume_generation",
                 "flush_cache", "abort_request", "set_weight_version", "get_weight_version",
                 "update_weights_from_disk", "update_weights_from_distributed", "update_weights_from_tensor",
                 "init_weights_update_group", "destroy_weights_update_group", "load_lora", "unload_lora", "nope"]
        for n in names:
            await send(eng, "POST", f"/engine/{n}", {}, log)
        bad = [("pause_generation", {"mode": "bogus"}), ("pause_generation", {"mode": "keep", "clear_cache": True}),
               ("resume_generation", {}), ("pause_generation", "raw:[1]"), ("pause_generation", "raw:{oops"),
               ("resume_generation", None), ("set_weight_version", {"weight_version": 7}),
               ("set_weight_version", {"weight_version": "step-3"}), ("get_weight_version", None),
               ("abort_request", {"request_id": "nope"}), ("update_weights_from_disk", {"model_path": "/nonexistent"}),
               ("load_lora", {"lora_name": "a", "lora_path": "/nonexistent"}), ("unload_lora", {"lora_name": "a"}),
               ("pause_generation", {"mode": "wait"}), ("resume_generation", {})]
        for n, body in bad:
            await send(eng, "POST", f"/engine/{n}", body, log)
        await send(eng, "GET", "/engine/liveness_probe", None, log)
        await send(eng, "GET", "/health", None, log)
        await send(eng, "GET", "/metrics", None, log)
        await send(http, "GET", "/metrics", None, log)
        await send(http, "POST", "/pause", None, log)


async def lora(a, http, eng, log) -> None:
    if a.kind == "vllm":
        chat_a = {"model": "adapter-a", "messages": PROMPT, "max_tokens": 8, "temperature": 1.0, "seed": 3,
                  "logprobs": True, "ignore_eos": True}
        for method, path, body in (
                ("POST", "/v1/load_lora_adapter", {"lora_name": "adapter-a", "lora_path": a.lora_dir}),
                ("POST", "/v1/load_lora_adapter", {"lora_name": "adapter-a", "lora_path": a.lora_dir}),
                ("POST", "/v1/load_lora_adapter", {"lora_name": "adapter-b", "lora_path": "/nonexistent/adapter"}),
                ("POST", "/v1/load_lora_adapter", {"lora_name": "adapter-c"}), ("POST", "/v1/load_lora_adapter", {}),
                ("GET", "/v1/models", None), ("POST", "/v1/chat/completions", chat_a),
                ("POST", "/v1/chat/completions", dict(chat_a, model=a.model)),
                ("POST", "/v1/unload_lora_adapter", {"lora_name": "adapter-a"}),
                ("POST", "/v1/chat/completions", chat_a), ("GET", "/v1/models", None),
                ("POST", "/v1/unload_lora_adapter", {"lora_name": "never-loaded"}),
                ("POST", "/v1/unload_lora_adapter", {})):
            await send(http, method, path, body, log)
    else:
        for n, body in (("load_lora", {"lora_name": "adapter-a", "lora_path": a.lora_dir}),
                        ("unload_lora", {"lora_name": "adapter-a"}), ("unload_lora", {"lora_name": "never-loaded"})):
            await send(eng, "POST", f"/engine/{n}", body, log)
        await send(http, "GET", "/v1/models", None, log)


async def send(http, method, path, body, log) -> None:
    kw = {}
    if isinstance(body, str) and body.startswith("raw:"):
        kw = {"content": body[4:].encode(), "headers": {"content-type": "application/json"}}
    elif body is not None:
        kw = {"json": body}
    try:
        r = await http.request(method, path, **kw)
        log.append((method, path, r.status_code, r.text[:160].replace("\n", " ")))
    except httpx.HTTPError as exc:
        log.append((method, path, "no answer", type(exc).__name__))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", choices=("vllm", "dynamo"), required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--system", help="Dynamo: the worker's system server (DYN_SYSTEM_PORT)")
    ap.add_argument("--rl", help="Dynamo: the frontend's RL discovery listener (DYN_RL_PORT)")
    ap.add_argument("--profile", required=True)
    ap.add_argument("--model", default="tiny-qwen")
    ap.add_argument("--model-dir1", default=str(Path.home() / ".cache/tito-harness/real/tiny-qwen"))
    ap.add_argument("--model-dir2", default=str(Path.home() / ".cache/tito-harness/real/tiny-qwen-2"))
    ap.add_argument("--lora-dir", default=str(Path.home() / ".cache/tito-harness/real/lora-a"),
                    help="a LoRA adapter of the tiny model (scripts/build_tiny_lora.py)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", action="append", help="scenario names (default: all)")
    a = ap.parse_args()
    Path(a.out).mkdir(parents=True, exist_ok=True)
    names = a.only or ["routes", "pause_abort", "pause_wait", "pause_keep", "update", "cache", "metrics", "lora"]
    for name in names:
        print(f"== {name}", flush=True)
        for line in asyncio.run(scenario(a, name)):
            print("  ", *line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
