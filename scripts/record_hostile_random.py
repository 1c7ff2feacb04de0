"""Record seeded random hostile bodies (or the one-body-per-rule suite) from a real server, for the fakes
to answer alike.

    python scripts/record_hostile_random.py --upstream http://127.0.0.1:8011 --profile vllm-0.32 \
        --route chat --n 120 --seed 1 --out cassettes/hostile/random/vllm-0.32-cpu/chat.yaml
    python scripts/record_hostile_random.py --upstream http://127.0.0.1:8021 --profile dynamo-1.6.1+mocker \
        --route dynamo-chat --rules --out cassettes/hostile/rules/dynamo-1.6.1-mocker/chat.yaml

Each body (`harness.hostile.random_bodies`: one or two fields of a valid request set to a wrong type or a
boundary number) goes through `harness record --profile LABEL`, so `harness conformance --cassettes
cassettes/hostile/random` sends each to a fake of that profile and compares status and error shape.
"""

import argparse
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from harness.hostile import random_bodies, rule_bodies
from harness.hostile_deep import deep_bodies
from harness.serve import wait_port


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--profile", required=True)
    ap.add_argument("--route", choices=("chat", "generate", "completions", "tokenize", "dynamo-chat", "dynamo-generate",
                                        "dynamo-completions", "vllm-chat"),
                    required=True)
    ap.add_argument("--rules", action="store_true", help="the one-body-per-rule suite (harness.hostile.rule_bodies)")
    ap.add_argument("--deep", action="store_true", help="values deep inside the request, and bodies JSON does not "
                                                        "allow (harness.hostile_deep.deep_bodies)")
    ap.add_argument("--n", type=int, default=120)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--model", default="tiny-qwen")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rec = subprocess.Popen([sys.executable, "-m", "harness.cli", "record", "--upstream", a.upstream, "--cassette",
                            str(out), "--port", str(port), "--mode", "all", "--quiet", "--profile", a.profile,
                            "--scenario", f"one body per rule: {a.route} (harness.hostile.rule_bodies)" if a.rules else
                            f"deep hostile bodies: {a.route}, n={a.n}, seed={a.seed} (harness.hostile_deep.deep_bodies)"
                            if a.deep else
                            f"random hostile bodies: {a.route}, n={a.n}, seed={a.seed} (harness.hostile.random_bodies)"])
    try:
        wait_port(port)
        statuses: dict[int, int] = {}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
            http.get("/v1/models")  # (the served window and model, for the fake set up like this server)
            bodies = rule_bodies(a.route, a.model) if a.rules else \
                deep_bodies(a.route, a.model, a.n, a.seed, dynamo="dynamo" in a.profile) if a.deep else \
                random_bodies(a.route, a.model, a.n, a.seed, dynamo="dynamo" in a.profile)
            for name, path, body in bodies:
                t0 = time.time()
                try:
                    r = http.post(path, content=body, headers={"content-type": "application/json"})
                    statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                    if r.status_code >= 500 or time.time() - t0 > 10:
                        print(f"{name}: {r.status_code} in {time.time() - t0:.1f} s {r.text[:200]}")
                except httpx.HTTPError as exc:
                    print(f"{name}: no answer ({type(exc).__name__})")
        print(f"{a.profile} {a.route}: statuses {dict(sorted(statuses.items()))}")
    finally:
        rec.send_signal(signal.SIGINT)
        rec.wait(120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
