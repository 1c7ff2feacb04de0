"""Routed experts: cut out + pybase64 + numpy vs json.loads + base64.b64decode, on a 16 MB body.

    python bench/routed_experts.py [--tokens 32768 --layers 48 --top-k 8 --repeat 15]

Prints the median time of each path and their ratio (target: >= 40x).
"""

import argparse
import base64
import json
import statistics
import time

import numpy as np
import orjson

from harness.wire.routed_experts import decode_payload, find_payload, split_body


def make_body(tokens: int, layers: int, top_k: int) -> bytes:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 128, size=(tokens, layers, top_k), dtype=np.uint8)
    ids = rng.integers(0, 151000, size=512).tolist()
    body = {"id": "chatcmpl-bench", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "x" * 2000},
                         "logprobs": {"content": [{"token": "t", "logprob": -0.5, "bytes": [116], "top_logprobs": []}
                                                  for _ in range(512)]},
                         "finish_reason": "stop", "token_ids": ids,
                         "routed_experts": {"shape": list(arr.shape), "start": 0, "dtype": "uint8",
                                            "data": base64.b64encode(arr.tobytes()).decode()}}],
            "usage": {"prompt_tokens": tokens - 512, "completion_tokens": 512}}
    return orjson.dumps(body), arr


def baseline(raw: bytes) -> np.ndarray:
    body = json.loads(raw)
    p = body["choices"][0]["routed_experts"]
    return np.frombuffer(base64.b64decode(p["data"]), dtype=np.uint8).reshape(p["shape"])


def ours(raw: bytes) -> np.ndarray:
    body, blobs = split_body(raw)
    return decode_payload(find_payload(body), blobs).array


def timeit(fn, raw, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(raw)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tokens", type=int, default=32768)
    p.add_argument("--layers", type=int, default=48)
    p.add_argument("--top-k", type=int, default=8)
    p.add_argument("--repeat", type=int, default=15)
    a = p.parse_args()
    raw, arr = make_body(a.tokens, a.layers, a.top_k)
    assert np.array_equal(baseline(raw), arr) and np.array_equal(ours(raw), arr)
    t_base = timeit(baseline, raw, a.repeat)
    t_ours = timeit(ours, raw, a.repeat)
    print(f"body: {len(raw) / 1e6:.1f} MB ({a.tokens} tokens x {a.layers} layers x top-{a.top_k}, uint8)")
    print(f"json.loads + base64.b64decode : {t_base * 1e3:8.2f} ms (median of {a.repeat})")
    print(f"split_body + pybase64 (ours)  : {t_ours * 1e3:8.2f} ms (median of {a.repeat})")
    print(f"speed-up: {t_base / t_ours:.1f}x (target >= 40x)")


if __name__ == "__main__":
    main()
