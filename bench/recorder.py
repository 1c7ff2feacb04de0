"""The recording proxy at production pace: throughput and latency through it against direct calls,
and what a routed-experts answer costs on disk.

    python bench/recorder.py [--duration 10] [--only ceiling|small|moe|kill]

First the ceiling: an upstream that costs almost no CPU (a bare aiohttp handler that waits 50 ms and
answers a small chat body), 64 connections, driven by wrk directly, through a bare aiohttp reverse proxy
(forwards, records nothing) and through `harness record`, in one run (targets: record >= 0.95x the bare
proxy's req/s, <= 5 ms added p50 against direct). Then two loads, each against a latency-bound fake vLLM
(as a GPU server is) in its own process, driven by wrk directly and then through `harness record` (mode
all, into a temp cassette):
- small chat answers, 50 ms upstream latency, 64 connections (targets: proxy >= 0.9x direct req/s,
  <= 5 ms added at p50);
- routed-experts answers (--moe 48,8,128, an 8k-token prompt on /inference/v1/generate: ~4 MB of
  base64 each), 200 ms upstream latency, 8 connections (target: proxy >= 0.8x direct req/s).
Then the cassette's size on disk (YAML + blob folder) against the raw routing bytes it holds
(target: <= 1.1x). Then kill -9 mid-traffic (64 connections, 50 ms upstream, killed after 3 s), of the
recorder process and of its whole process group: answered exchanges missing from the cassette
once it is loaded (target: 0). Needs `wrk` (Debian package).

The direct figure is the mean of a run before and after the proxy run, so drift does not count;
both are printed, with how long the recorder's writer was still busy after the load stopped (a
direct run overlapping its backlog would be slowed and flatter the ratio; the bench waits it out).
`--wrk-threads` sets wrk's threads (default 1; by hand people run `wrk -t2`, which on 2 cores takes
a little more CPU from the proxy).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
import fake_server  # noqa: E402
from fake_server import BODIES, free_port, wait_port, wrk  # noqa: E402

PROMPT = 8000
MOE = (48, 8, 128)

# an upstream that costs almost no CPU: waits 50 ms, answers a small chat body
CHEAP = r'''
import asyncio, sys
from aiohttp import web
ANSWER = (b'{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"tiny-qwen","choices":[{"index":0,'
          b'"message":{"role":"assistant","content":"Hello! How can I help you today?"},"logprobs":null,'
          b'"finish_reason":"stop","token_ids":[9707,0,2585,646,358,1492,498,3351,30]}],'
          b'"usage":{"prompt_tokens":10,"total_tokens":19,"completion_tokens":9}}')
async def handle(request):
    await request.read()
    await asyncio.sleep(0.05)
    return web.Response(body=ANSWER, content_type="application/json")
app = web.Application()
app.router.add_route("*", "/{tail:.*}", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None, backlog=4096)
'''

# the ceiling: a bare aiohttp reverse proxy (forwards request and answer, records nothing)
BARE_PROXY = r'''
import sys
import aiohttp
from aiohttp import web
UP = sys.argv[2]
DROP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}
async def start(app):
    app["s"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)
async def stop(app):
    await app["s"].close()
async def handle(request):
    body = await request.read()
    headers = {k: v for k, v in request.headers.items() if k.lower() not in DROP}
    async with request.app["s"].request(request.method, UP + request.path_qs, headers=headers, data=body) as up:
        data = await up.read()
        out = {k: v for k, v in up.headers.items() if k.lower() not in DROP | {"content-encoding"}}
        return web.Response(status=up.status, body=data, headers=out)
app = web.Application()
app.on_startup.append(start)
app.on_cleanup.append(stop)
app.router.add_route("*", "/{tail:.*}", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None, backlog=4096)
'''


def serve_code(code: str, *args: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", code, str(port), *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, port


def ceiling(duration: int, conns: int = 64) -> None:
    """Direct, a bare reverse proxy and `harness record` in front of the cheap upstream, in one run; the
    direct and bare-proxy figures are each the mean of a run before and after the recorder's."""
    cassette = Path(tempfile.mkdtemp()) / "ceiling.yaml"
    procs = []
    try:
        up, uport = serve_code(CHEAP)
        procs.append(up)
        bare, bport = serve_code(BARE_PROXY, f"http://127.0.0.1:{uport}")
        procs.append(bare)
        rec, rport = serve(["record", "--upstream", f"http://127.0.0.1:{uport}", "--cassette", str(cassette),
                            "--mode", "all", *QUIET], ENV)
        procs.append(rec)
        body, path = BODIES["vllm"], "/v1/chat/completions"
        for port in (uport, bport, rport):
            wrk(port, body, conns, 1, path)  # warm-up: connections, caches
        d1, b1 = wrk(uport, body, conns, duration, path), wrk(bport, body, conns, duration, path)
        r = wrk(rport, body, conns, duration, path)
        settle(cassette)
        b2, d2 = wrk(bport, body, conns, duration, path), wrk(uport, body, conns, duration, path)
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(120)
        shutil.rmtree(cassette.parent, ignore_errors=True)
    mean = lambda a, b: {k: (a[k] + b[k]) / 2 for k in ("rps", "p50_ms")} | {"errors": a["errors"] + b["errors"]}
    d, b = mean(d1, d2), mean(b1, b2)
    print(f"cheap upstream (a bare handler waiting 50 ms), {conns} connections, {duration} s each:")
    print(f"  {'path':<40}{'req/s':>9}{'p50 ms':>9}{'errors':>8}")
    for label, m in (("direct", d), ("bare aiohttp reverse proxy (ceiling)", b), ("harness record", r)):
        print(f"  {label:<40}{m['rps']:>9.0f}{m['p50_ms']:>9.1f}{m['errors']:>8}")
    print(f"  harness record: {r['rps'] / b['rps']:.2f}x the bare proxy's req/s (target >= 0.95x), "
          f"{r['p50_ms'] - d['p50_ms']:+.1f} ms p50 against direct (target <= 5 ms); the bare proxy "
          f"{b['rps'] / d['rps']:.2f}x direct, {b['p50_ms'] - d['p50_ms']:+.1f} ms")


def serve(args: list[str], env: dict | None = None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *args, "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    wait_port(port)
    return proc, port


def disk_size(cassette: Path) -> int:
    blobs = cassette.with_name(cassette.stem + ".blobs")
    return cassette.stat().st_size + sum(p.stat().st_size for p in blobs.glob("*") if p.is_file())


QUIET = ["--quiet"]
ENV: dict = {}
SLOW_FSYNC = """
import os, time
_fsync, _delay = os.fsync, float(os.environ["BENCH_FSYNC_MS"]) / 1000
def fsync(fd):
    time.sleep(_delay)
    return _fsync(fd)
os.fsync = fsync
"""


def run(label: str, fake_args: list[str], body: dict, path: str, conns: int, duration: int) -> tuple[dict, dict, Path]:
    cassette = Path(tempfile.mkdtemp()) / "bench.yaml"
    fake, fport = serve(["fake", "vllm", *fake_args])
    proxy = None
    try:
        proxy, pport = serve(["record", "--upstream", f"http://127.0.0.1:{fport}", "--cassette", str(cassette),
                              "--mode", "all", *QUIET], ENV)
        wrk(fport, body, conns, 2, path)  # warm-up (engine caches, connections)
        before = wrk(fport, body, conns, duration, path)
        via = wrk(pport, body, conns, duration, path)
        lag = settle(cassette)  # the writer's backlog would slow the next direct run and flatter the ratio
        after = wrk(fport, body, conns, duration, path)  # direct again: the mean of both brackets the proxy run
        print(f"  ({label}: direct {before['rps']:.0f} before, {after['rps']:.0f} after the proxy run; the "
              f"recorder's writer was still busy {lag:.1f} s after the load stopped)")
        direct = {k: (before[k] + after[k]) / 2 for k in ("rps", "p50_ms", "p99_ms")}
        direct["errors"] = before["errors"] + after["errors"]
    finally:
        for proc in (proxy, fake):
            if proc:
                proc.terminate()
                proc.wait(120)
    return direct, via, cassette


def settle(cassette: Path, quiet_for: float = 1.0, limit: float = 60.0) -> float:
    """Seconds until the cassette stops growing (the writer has caught up)."""
    import time

    t0 = last_change = time.monotonic()
    size = -1
    while time.monotonic() - t0 < limit:
        now = cassette.stat().st_size if cassette.exists() else 0
        if now != size:
            size, last_change = now, time.monotonic()
        elif time.monotonic() - last_change >= quiet_for:
            return last_change - t0
        time.sleep(0.1)
    return limit


def report(label, d, v, target):
    print(f"{label:<34}{d['rps']:>9.0f}{v['rps']:>9.0f}{v['rps'] / d['rps']:>8.2f}x{d['p50_ms']:>9.1f}"
          f"{v['p50_ms']:>9.1f}{v['p50_ms'] - d['p50_ms']:>9.1f}   {target}; errors {d['errors'] + v['errors']}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--only", choices=("ceiling", "small", "moe", "kill"), default=None)
    p.add_argument("--wrk-threads", type=int, default=1)
    p.add_argument("--lines", action="store_true", help="let the recorder print its line per exchange (its default)")
    p.add_argument("--fsync-ms", type=float, default=0,
                   help="make every fsync of the recorder take this long (a network filesystem, as on clusters)")
    a = p.parse_args()
    fake_server.WRK_THREADS[0] = a.wrk_threads
    if a.lines:
        QUIET.clear()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install wrk")
    if a.only in (None, "ceiling"):
        ceiling(a.duration)
    if a.only == "ceiling":
        return
    print(f"{'load':<34}{'direct':>9}{'proxy':>9}{'ratio':>9}{'d p50':>9}{'p p50':>9}{'added':>9}   (req/s, ms)")
    if a.only in (None, "small"):
        d, v, cassette = run("small", ["--latency", "0.05,0"], BODIES["vllm"], "/v1/chat/completions", 64, a.duration)
        report("small, 50 ms upstream, 64 conns", d, v, "target >= 0.9x, <= 5 ms added")
        shutil.rmtree(cassette.parent, ignore_errors=True)
    if a.only in (None, "moe"):
        body = {"model": "tiny-qwen", "token_ids": [9707] * PROMPT,
                "sampling_params": {"max_tokens": 16, "seed": "__N__"}}  # every answer its own routing
        d, v, cassette = run("moe", ["--latency", "0.2,0", "--moe", ",".join(map(str, MOE)), "--max-model-len", "16384"],
                             body, "/inference/v1/generate", 8, a.duration)
        report("4 MB experts, 200 ms upstream, 8", d, v, "target >= 0.8x")
        from harness.recording.format import Cassette

        c = Cassette.load(cassette)
        answers = [i for i in c.interactions if i.status == 200]
        import base64
        import io
        import json

        import numpy as np
        def routing_bytes(body: bytes) -> int:
            re_ = json.loads(body)["choices"][0]["routed_experts"]
            if isinstance(re_, dict):  # the object form (older fakes)
                return len(base64.b64decode(re_["data"]))
            return np.load(io.BytesIO(base64.b64decode(re_))).nbytes

        raw = sum(routing_bytes(i.response_body) for i in answers)
        size, yaml_size = disk_size(cassette), cassette.stat().st_size
        shutil.rmtree(cassette.parent, ignore_errors=True)
        print(f"on disk: {size / 1e6:.1f} MB (YAML {yaml_size / 1e6:.2f} MB + blobs) for {len(answers)} "
              f"answers holding {raw / 1e6:.1f} MB of raw routing bytes: {size / raw:.2f}x (target <= 1.1x; "
              f"base64 inside YAML would be >= 1.33x)")
    if a.only in (None, "kill"):
        for target in ("process", "group"):
            answered, lost = kill_9(target)
            print(f"kill -9 of the recorder's {target:<8} after 3 s, 64 connections: {answered} answered, "
                  f"{lost} lost (target 0)")


def kill_9(target: str, seconds: float = 3.0, conns: int = 64) -> tuple[int, int]:
    """Answered exchanges and how many of them the cassette lacks after a kill -9 mid-traffic."""
    import asyncio
    import json
    import signal

    import aiohttp

    from harness.recording.format import Cassette

    cassette = Path(tempfile.mkdtemp()) / "killed.yaml"
    fake, fport = serve(["fake", "vllm", "--latency", "0.05,0"])
    port = free_port()
    rec = subprocess.Popen([sys.executable, "-m", "harness.cli", "record", "--upstream", f"http://127.0.0.1:{fport}",
                            "--cassette", str(cassette), "--port", str(port), "--quiet"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    wait_port(port)
    answered: list[str] = []

    async def load():
        connector = aiohttp.TCPConnector(limit=conns)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as client:
            async def one(k):
                n = 0
                while True:
                    prompt = f"{k}-{n}"
                    try:
                        async with client.post(f"http://127.0.0.1:{port}/tokenize",
                                               json={"model": "tiny-qwen", "prompt": prompt}) as r:
                            await r.read()
                            if r.status == 200:
                                answered.append(prompt)
                    except (aiohttp.ClientError, asyncio.TimeoutError):
                        return
                    n += 1

            tasks = [asyncio.create_task(one(k)) for k in range(conns)]
            await asyncio.sleep(seconds)
            if target == "process":
                rec.kill()
            else:
                os.killpg(rec.pid, signal.SIGKILL)
            await asyncio.wait(tasks, timeout=15)

    try:
        asyncio.run(load())
        rec.wait(10)
        recorded = {json.loads(i.request_body)["prompt"] for i in Cassette.load(cassette).interactions}
    finally:
        fake.terminate()
        fake.wait(30)
        shutil.rmtree(cassette.parent, ignore_errors=True)
    return len(answered), len(set(answered) - recorded)


if __name__ == "__main__":
    main()
