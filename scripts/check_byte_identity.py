"""Record a few exchanges from a live server through the proxy, replay them, compare the bytes.

    python scripts/check_byte_identity.py --upstream http://127.0.0.1:8011 [--kind vllm|dynamo] [--model M]

Prints whether every replayed body equals, byte for byte, what the client received live.
"""

import argparse
import os
import tempfile

import httpx

from harness.recording.format import Cassette
from harness.recording.proxy import Recorder, create_proxy_app
from harness.recording.replay import ReplayIndex, create_replay_app
from harness.serve import AppThread


def requests_for(kind: str, model: str):
    msg = [{"role": "user", "content": "Grüße 世界, naïve café"}]
    if kind == "vllm":
        return [("POST", "/v1/chat/completions", {"model": model, "messages": msg, "max_tokens": 12, "logprobs": True,
                                                  "top_logprobs": 2, "return_token_ids": True}),
                ("POST", "/v1/chat/completions", {"model": model, "messages": msg, "max_tokens": 8, "stream": True,
                                                  "logprobs": True, "return_token_ids": True}),
                ("POST", "/inference/v1/generate", {"model": model, "token_ids": [9707, 1879],
                                                    "sampling_params": {"max_tokens": 8, "logprobs": 1}}),
                ("POST", "/tokenize", {"model": model, "prompt": "naïve café"}), ("GET", "/v1/models", None),
                ("POST", "/v1/chat/completions", {"model": "x", "messages": []})]
    nv = {"extra_fields": ["engine_data", "completion_token_ids", "timing"]}
    return [("POST", "/v1/chat/completions", {"model": model, "messages": msg, "max_tokens": 12, "logprobs": True, "nvext": nv}),
            ("POST", "/v1/chat/completions", {"model": model, "messages": msg, "max_tokens": 8, "stream": True,
                                              "logprobs": True, "nvext": nv}),
            ("POST", "/tokenize", {}), ("POST", "/v1/chat/completions", {"model": model, "priority": 1, "messages": msg})]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--upstream", required=True)
    p.add_argument("--kind", choices=("vllm", "dynamo"), default="vllm")
    p.add_argument("--model", default="tiny-qwen")
    p.add_argument("--writer", choices=("process", "thread"), default="process", help="as `harness record` (process)")
    p.add_argument("--blob-threshold", type=int, default=64,
                   help="base64 strings this long go to the blob folder (small, so every long string is exercised)")
    a = p.parse_args()
    reqs = requests_for(a.kind, a.model)
    path = os.path.join(tempfile.mkdtemp(), "identity.yaml")
    with AppThread(create_proxy_app(a.upstream, Recorder(path, "all", writer=a.writer,
                                                          blob_threshold=a.blob_threshold))) as proxy:
        live = [httpx.request(m, f"http://127.0.0.1:{proxy.port}{u}", json=b, timeout=120).content for m, u, b in reqs]
    with AppThread(create_replay_app(ReplayIndex([Cassette.load(path)]))) as replay:
        again = [httpx.request(m, f"http://127.0.0.1:{replay.port}{u}", json=b).content for m, u, b in reqs]
    same = [x == y for x, y in zip(live, again)]
    print(f"{a.upstream}: {len(reqs)} exchanges, byte-identical on replay: {all(same)} {same}")


if __name__ == "__main__":
    main()
