"""What the RL control plane costs the fakes' data plane: version tracking and /metrics, on against off.

    python bench/rl_overhead.py [--connections 256 --duration 8 --rounds 2 --in-flight 1000]

1. Fake vLLM chat req/s (wrk, in one run): the control plane off (no VLLM_SERVER_DEV_MODE) against on
   (dev mode: every answer runs through the engine's policy version and pause state) with /metrics scraped
   10 times a second, as an orchestrator sizing its concurrency does. Off and on alternate `--rounds`
   times; the medians are compared (target: on >= 0.98x off).
2. One /metrics scrape while `--in-flight` requests are held in the engine (the fake's own hold after one
   token, so they stay in flight whatever the machine's speed): the median of 50 scrapes, client round trip
   over loopback (target: < 2 ms), beside the same bytes from a bare handler; and the scrape's own work, the
   text rendered in process and timed in thread CPU time, which other load on the machine does not inflate.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from fake_server import BODIES, free_port, wait_port, wrk  # noqa: E402

FAKE = r'''
import asyncio, sys
from fake_servers.base import STATE
from fake_servers.server import FakeConfig, build_app
from harness.serve import start_app
async def main():
    dev, hold = sys.argv[2] == "on", sys.argv[3]
    app = build_app(FakeConfig(kind="vllm", dev_mode=dev, max_num_seqs=4096))
    if hold != "-":
        app[STATE].control.set_hold(int(hold))
    runner, port = await start_app(app, "127.0.0.1", int(sys.argv[1]))
    await asyncio.Event().wait()
asyncio.run(main())
'''


BARE_TEXT = r'''
import sys
from aiohttp import web
text = open(sys.argv[2]).read()
async def handle(request):
    return web.Response(text=text, content_type="text/plain")
app = web.Application()
app.router.add_get("/metrics", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
'''


async def bare_scrapes(text: str, scrapes: int = 50) -> list[float]:
    """The same bytes from a bare aiohttp handler: the HTTP round trip alone, measured in the same run."""
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(text)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", BARE_TEXT, str(port), f.name], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        async with httpx.AsyncClient() as m:
            times = []
            for _ in range(scrapes):
                t0 = time.perf_counter()
                await m.get(f"http://127.0.0.1:{port}/metrics")
                times.append((time.perf_counter() - t0) * 1000)
            return times
    finally:
        proc.terminate()
        proc.wait(10)
        os.unlink(f.name)


def start(dev: str, hold: str = "-") -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", FAKE, str(port), dev, hold], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, port


def scraper(port: int, stop: threading.Event, counts: list) -> None:
    with httpx.Client() as c:
        while not stop.is_set():
            if c.get(f"http://127.0.0.1:{port}/metrics").status_code == 200:
                counts[0] += 1
            stop.wait(0.1)


def throughput(dev: str, connections: int, duration: int) -> dict:
    proc, port = start(dev)
    stop, counts = threading.Event(), [0]
    try:
        wrk(port, BODIES["vllm"], min(connections, 50), 2)  # warm-up
        t = threading.Thread(target=scraper, args=(port, stop, counts)) if dev == "on" else None
        if t:
            t.start()
        r = wrk(port, BODIES["vllm"], connections, duration)
        stop.set()
        if t:
            t.join()
        r["scrapes"] = counts[0]
        return r
    finally:
        proc.terminate()
        proc.wait(10)


async def held_scrapes(n: int, scrapes: int = 50) -> tuple[list[float], float, str]:
    proc, port = start("on", "1")
    base = f"http://127.0.0.1:{port}"
    body = {**BODIES["vllm"], "max_tokens": 8}
    try:
        limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
        async with httpx.AsyncClient(limits=limits, timeout=120) as c, httpx.AsyncClient() as m:
            flying = [asyncio.create_task(c.post(base + "/v1/chat/completions", json=body)) for _ in range(n)]
            running = 0.0
            for _ in range(600):  # until the engine counts all of them running
                text = (await m.get(base + "/metrics")).text
                running = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                              if line.startswith("vllm:num_requests_running{"))
                if running >= n:
                    break
                await asyncio.sleep(0.1)
            times = []
            for _ in range(scrapes):
                t0 = time.perf_counter()
                r = await m.get(base + "/metrics")
                times.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200
            held_scrapes.text = r.text
            size = f"{len(r.content)} bytes, {sum(1 for l in r.text.splitlines() if l.startswith('# TYPE'))} families"
            for f in flying:
                f.cancel()
            await asyncio.gather(*flying, return_exceptions=True)
            return times, running, size
    finally:
        proc.terminate()
        proc.wait(10)


async def render_cost(n: int, repeats: int = 50) -> tuple[float, float, float]:
    """The scrape's own work with `n` requests held in flight: the fake in this process, its /metrics text
    rendered directly, timed in this thread's CPU time (what the machine's other load does not change) and
    wall time. Returns (median CPU ms, median wall ms, requests counted running)."""
    from fake_servers.metrics import render
    from fake_servers.server import FakeConfig, RunningServer

    with RunningServer(FakeConfig(kind="vllm", dev_mode=True, max_num_seqs=4096)) as srv:
        srv.state.control.set_hold(1)
        body = {**BODIES["vllm"], "max_tokens": 8}
        limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
        async with httpx.AsyncClient(limits=limits, timeout=120) as c:
            flying = [asyncio.create_task(c.post(srv.base_url + "/chat/completions", json=body)) for _ in range(n)]
            running = 0.0
            for _ in range(600):
                running = sum(float(line.rsplit(" ", 1)[1]) for line in render(srv.state, srv.state.profile.metrics,
                                                                                "tiny-qwen").splitlines()
                              if line.startswith("vllm:num_requests_running{"))
                if running >= n:
                    break
                await asyncio.sleep(0.1)
            cpu, wall = [], []
            for _ in range(repeats):
                t0, c0 = time.perf_counter(), time.thread_time()
                render(srv.state, srv.state.profile.metrics, "tiny-qwen")
                cpu.append((time.thread_time() - c0) * 1000)
                wall.append((time.perf_counter() - t0) * 1000)
            srv.state.control.set_hold(None)
            for f in flying:
                f.cancel()
            await asyncio.gather(*flying, return_exceptions=True)
    return statistics.median(cpu), statistics.median(wall), running


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--connections", type=int, default=256)
    p.add_argument("--duration", type=int, default=8)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--in-flight", type=int, default=1000)
    a = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    runs = {"off": [], "on": []}
    for _ in range(a.rounds):
        for dev in ("off", "on"):
            runs[dev].append(throughput(dev, a.connections, a.duration))
    off = statistics.median(r["rps"] for r in runs["off"])
    on = statistics.median(r["rps"] for r in runs["on"])
    print(f"{'fake vllm chat':<44}{'req/s (each round)':>28}{'median':>10}{'errors':>8}")
    each = {dev: " ".join(f"{r['rps']:.0f}" for r in rs) for dev, rs in runs.items()}
    print(f"{'control plane off':<44}{each['off']:>28}{off:>10.0f}{sum(r['errors'] for r in runs['off']):>8}")
    print(f"{'dev mode on, /metrics scraped every 0.1 s':<44}{each['on']:>28}{on:>10.0f}"
          f"{sum(r['errors'] for r in runs['on']):>8}")
    print(f"on / off: {on / off:.3f}x (target >= 0.98x; {sum(r['scrapes'] for r in runs['on'])} scrapes answered; "
          f"{a.connections} connections, {a.duration} s per run, wrk -t1)")
    times, running, size = asyncio.run(held_scrapes(a.in_flight))
    times.sort()
    bare = sorted(asyncio.run(bare_scrapes(held_scrapes.text)))
    print(f"/metrics with {running:.0f} requests running ({size}): median {statistics.median(times):.2f} ms, "
          f"p90 {times[int(len(times) * 0.9)]:.2f} ms over {len(times)} scrapes (target < 2 ms)")
    cpu, wall, counted = asyncio.run(render_cost(a.in_flight))
    print(f"rendering it with {counted:.0f} requests running: median {cpu:.3f} ms of CPU ({wall:.3f} ms wall) per scrape")
    print(f"the same bytes from a bare aiohttp handler: median {statistics.median(bare):.2f} ms "
          f"(the fake's scrape is {statistics.median(times) / statistics.median(bare):.2f}x the round trip alone)")


if __name__ == "__main__":
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    main()
