"""Replay lookup cost per request at 100, 1,000 and 10,000 recorded interactions: our hash index
against vcrpy's own matching (a linear scan over the cassette), measured in the same run.

    python bench/replay_lookup.py [--sizes 100,1000,10000 --lookups 300]

Target: our cost flat (10k/100 ratio ~1x); vcrpy's grows linearly.
"""

import argparse
import json
import random
import statistics
import time

from vcr import matchers as vcr_matchers
from vcr.cassette import Cassette as VcrCassette
from vcr.request import Request as VcrRequest

from harness.recording.format import Interaction
from harness.recording.replay import ReplayIndex

URI = "http://127.0.0.1:8000/v1/chat/completions/tokens"


def body(k: int) -> bytes:
    rng = random.Random(k)
    return json.dumps({"model": "m", "messages": [{"role": "user", "content": f"turn {k}"}], "max_tokens": 64,
                       "logprobs": True, "return_token_ids": True,
                       "tokens": [rng.randrange(150000) for _ in range(400)]}).encode()


def build(n: int):
    bodies = [body(k) for k in range(n)]
    ours = ReplayIndex(repeat="last")
    vcr = VcrCassette("bench.yaml", match_on=(vcr_matchers.method, vcr_matchers.uri, vcr_matchers.body), allow_playback_repeats=True)
    response = {"status": {"code": 200, "message": "OK"}, "headers": {}, "body": {"string": b"{}"}}
    for b in bodies:
        ours.add(Interaction("POST", URI, {}, b, 200, "OK", {}, b"{}"))
        vcr.append(VcrRequest("POST", URI, b, {}), response)
    return bodies, ours, vcr


def per_lookup(fn, items) -> float:
    t0 = time.perf_counter()
    for x in items:
        fn(x)
    return (time.perf_counter() - t0) / len(items)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="100,1000,10000")
    p.add_argument("--lookups", type=int, default=300)
    a = p.parse_args()
    sizes = [int(x) for x in a.sizes.split(",")]
    results = {}
    print(f"{'interactions':>12} {'ours µs/lookup':>16} {'vcrpy µs/lookup':>17}")
    for n in sizes:
        bodies, ours, vcr = build(n)
        rng = random.Random(0)
        picks = [bodies[rng.randrange(n)] for _ in range(a.lookups)]
        t_ours = statistics.median(per_lookup(lambda b: ours.lookup("POST", "/v1/chat/completions/tokens", b), picks)
                                   for _ in range(3))
        few = picks[: max(20, a.lookups // (n // 100 or 1))]
        t_vcr = per_lookup(lambda b: vcr.play_response(VcrRequest("POST", URI, b, {})), few)
        results[n] = (t_ours, t_vcr)
        print(f"{n:>12} {t_ours * 1e6:>16.1f} {t_vcr * 1e6:>17.1f}")
    lo, hi = sizes[0], sizes[-1]
    print(f"growth {hi}/{lo}: ours {results[hi][0] / results[lo][0]:.2f}x, vcrpy {results[hi][1] / results[lo][1]:.1f}x "
          f"(target: ours ~1x)")
    print(f"at {hi}: ours is {results[hi][1] / results[hi][0]:.0f}x faster than vcrpy's matching")


if __name__ == "__main__":
    main()
