"""What the recording proxy costs: latency and throughput through it against direct calls.

    python bench/proxy_overhead.py [--duration 8 --connections 64]

A fake vLLM and `harness record` (mode all, into a temp cassette) run as separate processes;
wrk drives a chat-completions POST directly and through the proxy, once with one connection
(added latency) and once with many (throughput). Needs `wrk`.
"""

import argparse
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from fake_server import BODIES, FAKE, free_port, wait_port, wrk  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--duration", type=int, default=8)
    p.add_argument("--connections", type=int, default=64)
    a = p.parse_args()
    fport, pport = free_port(), free_port()
    cassette = os.path.join(tempfile.mkdtemp(), "bench.yaml")
    fake = subprocess.Popen([sys.executable, "-c", FAKE, str(fport), "vllm"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    proxy = None
    try:
        wait_port(fport)
        proxy = subprocess.Popen([sys.executable, "-m", "harness.cli", "record", "--upstream", f"http://127.0.0.1:{fport}",
                                  "--cassette", cassette, "--port", str(pport), "--mode", "all"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(pport)
        body = BODIES["vllm"]
        rows = []
        for label, conns in (("1 connection", 1), (f"{a.connections} connections", a.connections)):
            wrk(fport, body, conns, 1)
            direct = wrk(fport, body, conns, a.duration)
            via = wrk(pport, body, conns, a.duration)
            rows.append((label, direct, via))
        print(f"{'load':<16}{'direct req/s':>14}{'proxy req/s':>13}{'ratio':>8}{'direct p50':>12}{'proxy p50':>11}{'added p50':>11}")
        for label, d, v in rows:
            print(f"{label:<16}{d['rps']:>14.0f}{v['rps']:>13.0f}{v['rps'] / d['rps']:>7.2f}x{d['p50_ms']:>10.2f}ms"
                  f"{v['p50_ms']:>9.2f}ms{v['p50_ms'] - d['p50_ms']:>9.2f}ms")
        errors = sum(d["errors"] + v["errors"] for _, d, v in rows)
        print(f"errors: {errors}; cassette holds every proxied exchange ({os.path.getsize(cassette) / 1e6:.1f} MB)")
    finally:
        for proc in (proxy, fake):
            if proc:
                proc.terminate()
                proc.wait(30)


if __name__ == "__main__":
    main()
