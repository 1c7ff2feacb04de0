"""Fake server throughput at 1,000 concurrent connections, against a bare aiohttp handler; and our fake Dynamo
(mocker backend) against the real Dynamo frontend + mocker (`--speedup-ratio 0`), the field's own fake.

    python bench/fake_server.py [--connections 1000 --duration 10 --rounds 3 --kind vllm|dynamo|both]
                                [--real-dynamo auto|off|URL --real-connections 64]

Each server runs in its own process on 127.0.0.1; `wrk` (Debian package `wrk`) drives it with a
chat-completions POST. Prints requests/s, p50/p99 latency and errors for each, and the ratio of
each fake to the bare handler measured in the same run (target: >= 0.6x).

The real Dynamo comparison (target: ours >= 5x) uses one small chat body at `--real-connections`: `auto` uses a
frontend already answering on 127.0.0.1:8021 (`scripts/real_servers.sh dynamo-mocker`), else starts one from the
`ai-dynamo` venv under ~/.cache/tito-harness/real/dynamo and stops it after; without either it is skipped, saying why.
"""

import argparse
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BODIES = {
    "vllm": {"model": "tiny-qwen", "messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 32,
             "logprobs": True, "return_token_ids": True},
    "dynamo": {"model": "tiny-qwen", "messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 32,
               "logprobs": True, "nvext": {"extra_fields": ["engine_data", "completion_token_ids"]}},
}

BARE = r'''
import sys
from aiohttp import web
async def handle(request):
    await request.read()
    return web.json_response({"ok": True})
app = web.Application()
app.router.add_post("/v1/chat/completions", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None, backlog=4096)
'''

FAKE = r'''
import asyncio, sys
from fake_servers.server import FakeConfig, build_app
from harness.serve import start_app
async def main():
    backend = sys.argv[3] if len(sys.argv) > 3 else None
    runner, port = await start_app(build_app(FakeConfig(kind=sys.argv[2], dynamo_backend=backend)), "127.0.0.1",
                                   int(sys.argv[1]))
    await asyncio.Event().wait()
asyncio.run(main())
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 60) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"server on {port} did not start")


WRK_THREADS = [1]  # bench/recorder.py --wrk-threads sets it


def wrk(port: int, body: dict, connections: int, duration: int, path: str = "/v1/chat/completions") -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
        f.write(f"wrk.body = {json.dumps(json.dumps(body))}\n")
        if "__N__" in json.dumps(body):  # a different body per request: "__N__" counts up
            f.write('local n = 0\nrequest = function()\n  n = n + 1\n'
                    '  return wrk.format(nil, nil, nil, (string.gsub(wrk.body, "\\"__N__\\"", tostring(n))))\nend\n')
        script = f.name
    out = subprocess.run(["wrk", "-t", str(WRK_THREADS[0]), "-c", str(connections), "-d", f"{duration}s", "--timeout", "10s",
                          "--latency", "-s", script, f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True).stdout
    os.unlink(script)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    return {"rps": rps, "p50_ms": pct(50), "p99_ms": pct(99), "errors": errors}


SMALL_CHAT = {"model": "tiny-qwen", "messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 32}
REAL_DIR = Path(os.environ.get("REAL_DIR", Path.home() / ".cache/tito-harness/real"))
PLANES = ["--discovery-backend", "file", "--request-plane", "tcp", "--event-plane", "zmq"]


def answers_model(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/v1/models", timeout=2) as r:
            return b"tiny-qwen" in r.read()
    except OSError:
        return False


def real_dynamo(mode: str, connections: int, duration: int) -> dict | str:
    """wrk against the real Dynamo frontend + mocker, or the reason it was skipped."""
    if mode != "auto":
        url = mode.rstrip("/").removesuffix("/v1")
        return wrk_url(url, connections, duration) if answers_model(url) else f"nothing answers at {url}"
    if answers_model("http://127.0.0.1:8021"):
        return wrk_url("http://127.0.0.1:8021", connections, duration)
    python = REAL_DIR / "dynamo" / "bin" / "python"
    if not python.exists() or subprocess.run([str(python), "-c", "import dynamo.frontend, dynamo.mocker"],
                                             capture_output=True).returncode:
        return f"ai-dynamo is not installed ({python}: scripts/real_servers.sh install)"
    port = free_port()
    env = {**os.environ, "DYN_FILE_KV": tempfile.mkdtemp(prefix="bench-kv-"), "DYN_TCP_RPC_HOST": "127.0.0.1",
           "DYN_TCP_RESPONSE_STREAM_HOST": "127.0.0.1", "DYN_EVENT_PLANE_HOST": "127.0.0.1",
           "DYN_HTTP_RPC_HOST": "127.0.0.1", "DYN_SYSTEM_HOST": "127.0.0.1"}
    procs = [subprocess.Popen([str(python), "-m", "dynamo.frontend", "--http-host", "127.0.0.1", "--http-port",
                               str(port), *PLANES], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
             subprocess.Popen([str(python), "-m", "dynamo.mocker", "--model-path", str(REAL_DIR / "tiny-qwen"),
                               "--model-name", "tiny-qwen", "--speedup-ratio", "0", *PLANES], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        t0 = time.time()
        while not answers_model(f"http://127.0.0.1:{port}"):
            if time.time() - t0 > 180 or any(p.poll() is not None for p in procs):
                return "the real Dynamo frontend + mocker did not come up (180 s)"
            time.sleep(1)
        return wrk_url(f"http://127.0.0.1:{port}", connections, duration)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)


def wrk_url(url: str, connections: int, duration: int) -> dict:
    port = int(url.rsplit(":", 1)[1])
    wrk(port, SMALL_CHAT, min(connections, 16), 2)  # warm-up
    return wrk(port, SMALL_CHAT, connections, duration)


def measure(code: str, args: list[str], body: dict, connections: int, duration: int) -> dict:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", code, str(port), *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        wrk(port, body, min(connections, 50), 2)  # warm-up: caches, tokenizer, connection setup
        return wrk(port, body, connections, duration)
    finally:
        proc.terminate()
        proc.wait(10)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--connections", type=int, default=1000)
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--kind", choices=("vllm", "dynamo", "both"), default="both")
    p.add_argument("--real-dynamo", default="auto", help="auto, off, or the URL of a running frontend + mocker")
    p.add_argument("--real-connections", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install wrk")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    kinds = ["vllm", "dynamo"] if a.kind == "both" else [a.kind]
    # rounds alternate the bare handler and the fakes, so load from elsewhere on the machine falls on all of them
    # alike; each fake's ratio is the median of its per-round ratios (each against the bare run just before it)
    runs: dict[str, list[dict]] = {name: [] for name in ["bare", *kinds]}
    ratios: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _ in range(a.rounds):
        runs["bare"].append(measure(BARE, [], BODIES["vllm"], a.connections, a.duration))
        for kind in kinds:
            runs[kind].append(measure(FAKE, [kind], BODIES[kind], a.connections, a.duration))
            ratios[kind].append(runs[kind][-1]["rps"] / runs["bare"][-1]["rps"])
    print(f"{'server':<22}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}{'vs bare':>9}   per round")
    for name, label in (("bare", "bare aiohttp handler"), *((k, f"fake {k} chat") for k in kinds)):
        r = {key: statistics.median(run[key] for run in runs[name]) for key in ("rps", "p50_ms", "p99_ms")}
        errors = sum(run["errors"] for run in runs[name])
        ratio = statistics.median(ratios[name]) if name in ratios else 1.0
        rounds = " ".join(f"{x:.2f}" for x in ratios[name]) if name in ratios else ""
        print(f"{label:<22}{r['rps']:>10.0f}{r['p50_ms']:>10.1f}{r['p99_ms']:>10.1f}{errors:>8}{ratio:>8.2f}x   {rounds}")
    print(f"({a.connections} connections, {a.duration} s each, {a.rounds} rounds, medians, wrk -t1; "
          f"target: fake >= 0.6x bare, 0 errors)")
    if a.real_dynamo == "off":
        return
    real = real_dynamo(a.real_dynamo, a.real_connections, a.duration)
    if isinstance(real, str):
        print(f"real Dynamo comparison skipped: {real}")
        return
    ours = measure(FAKE, ["dynamo", "mocker"], SMALL_CHAT, a.real_connections, a.duration)
    print(f"\n{'server':<30}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}{'vs real':>9}")
    for name, r in (("real Dynamo 1.6.1 + mocker", real), ("fake Dynamo (mocker backend)", ours)):
        print(f"{name:<30}{r['rps']:>10.0f}{r['p50_ms']:>10.1f}{r['p99_ms']:>10.1f}{r['errors']:>8}"
              f"{r['rps'] / real['rps']:>8.2f}x")
    print(f"({a.real_connections} connections, one small chat body; target: ours >= 5x the real frontend + mocker)")


if __name__ == "__main__":
    main()
