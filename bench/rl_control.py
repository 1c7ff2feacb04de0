"""What the RL control plane costs the fake's data plane, and what a /metrics scrape costs under load.

    python bench/rl_control.py [--connections 200 --duration 8 --rounds 2 --inflight 1000]

1. Chat requests/s of the fake vLLM with its control plane off (no VLLM_SERVER_DEV_MODE: the capacity model's
   O(1) counters only) and on (dev mode: every request is a flight with a policy and a version, paced and
   pausable), in alternating rounds of one run, driven by `wrk`; prints the ratio on/off (target >= 0.98).
2. `/metrics` render time with `--inflight` requests held in flight by the fake's own hold (median of 200
   renders, in process), and one scrape over HTTP; target < 2 ms.
"""

import argparse
import asyncio
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

from fake_server import BODIES, measure  # noqa: E402

SERVER = r'''
import asyncio, sys
from fake_servers.server import FakeConfig, build_app
from harness.serve import start_app
async def main():
    cfg = FakeConfig(kind="vllm", dev_mode=sys.argv[2] == "on")
    runner, port = await start_app(build_app(cfg), "127.0.0.1", int(sys.argv[1]))
    await asyncio.Event().wait()
asyncio.run(main())
'''


def throughput(connections: int, duration: int, rounds: int) -> None:
    results = {"off": [], "on": []}
    for _ in range(rounds):
        for mode in ("off", "on"):
            results[mode].append(measure(SERVER, [mode], BODIES["vllm"], connections, duration)["rps"])
    off, on = statistics.median(results["off"]), statistics.median(results["on"])
    print(f"chat req/s, control plane off: {off:.0f}  on: {on:.0f}  (rounds: off {results['off']}, on {results['on']})")
    print(f"ratio on/off: {on / off:.3f}  (target >= 0.98)")


async def scrape(inflight: int) -> None:
    import httpx

    from fake_servers.metrics import render
    from fake_servers.server import FakeConfig, RunningServer

    with RunningServer(FakeConfig(kind="vllm", dev_mode=True, max_num_seqs=inflight)) as srv:
        srv.control.set_hold(1)
        limits = httpx.Limits(max_connections=inflight + 10)
        async with httpx.AsyncClient(timeout=300, limits=limits) as c:
            body = {"messages": [{"role": "user", "content": "hi " * 50}], "max_tokens": 64, "ignore_eos": True}
            tasks = [asyncio.create_task(c.post(srv.base_url + "/chat/completions", json=body))
                     for _ in range(inflight)]
            while sum(1 for f in list(srv.control.flights.values()) if f.tokens >= 1) < inflight:
                await asyncio.sleep(0.05)
            state, model = srv.state, srv.cfg.model
            times = []
            for _ in range(200):
                t0 = time.perf_counter()
                text = render(state, "vllm-0.32", model)
                times.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            r = await c.get(srv.root_url + "/metrics")
            http_ms = (time.perf_counter() - t0) * 1000
            running = next(ln for ln in text.splitlines() if ln.startswith("vllm:num_requests_running{"))
            print(f"/metrics at {inflight} in flight ({running}): render median {statistics.median(times):.3f} ms, "
                  f"max {max(times):.3f} ms; one HTTP scrape {http_ms:.2f} ms, {len(r.content)} bytes (target < 2 ms)")
            srv.control.set_hold(None)
            await asyncio.gather(*tasks)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--connections", type=int, default=200)
    p.add_argument("--duration", type=int, default=8)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--inflight", type=int, default=1000)
    p.add_argument("--skip-throughput", action="store_true")
    a = p.parse_args()
    if not a.skip_throughput:
        throughput(a.connections, a.duration, a.rounds)
    asyncio.run(scrape(a.inflight))


if __name__ == "__main__":
    main()
