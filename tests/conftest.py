import os

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402

# Every hypothesis test draws the same examples on every run (a fuzz test that finds something new on one draw in
# five would block everyone); TITO_FUZZ_RANDOM=1 explores new draws on purpose.
hypothesis_settings.register_profile("steady", derandomize=True, database=None)
if not os.environ.get("TITO_FUZZ_RANDOM"):
    hypothesis_settings.load_profile("steady")

from harness.tokenizer import load_tokenizer  # noqa: E402

MODEL = "tiny-qwen"
TOOLS = [{"type": "function", "function": {"name": "lookup", "description": "look up",
                                           "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]


@pytest.fixture(scope="session")
def tokenizer():
    return load_tokenizer()


def tool_msg(text: str, i: int = 0) -> dict:
    return {"role": "tool", "tool_call_id": f"call_{i}", "content": text}
pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _fresh_parity_verdicts():
    """Parity verdicts are cached per base URL for a process's lifetime; tests reuse ports across
    servers with other templates, so each test starts with none."""
    from harness.client import client

    client._PARITY_CACHE.clear()
    yield


def kill_mid_traffic(proc, send, answered: int, threads: int = 4, kill=None, limit: float = 120.0) -> list[int]:
    """Send requests from `threads` threads (`send(client, thread, n)` returns a status) until `answered` of them
    were answered, then SIGKILL `proc` (or call `kill`) with traffic still in flight. Returns the statuses
    answered. A count, not a timed window: a loaded machine only takes longer (`limit` seconds at most)."""
    import threading

    import httpx

    stop, enough, statuses = threading.Event(), threading.Event(), []

    def hammer(k):
        with httpx.Client() as client:
            n = 0
            while not stop.is_set():
                try:
                    statuses.append(send(client, k, n))
                except httpx.HTTPError:
                    return
                if len(statuses) >= answered:
                    enough.set()
                n += 1

    workers = [threading.Thread(target=hammer, args=(k,)) for k in range(threads)]
    for t in workers:
        t.start()
    enough.wait(limit)
    (kill or proc.kill)()
    proc.wait(10)
    stop.set()
    for t in workers:
        t.join(10)
    return statuses


def record_drift(path, tok) -> tuple[list[int], list[int], list[int], list[int]]:
    """Two turns on /inference/v1/generate through the recorder into `path`; the second re-tokenizes the first
    completion's text instead of keeping the engine's ids (retokenization drift). Returns (prompt,
    completion, re-tokenized completion, bridge)."""
    import httpx

    from fake_servers.server import FakeConfig, RunningServer
    from harness.recording.proxy import Recorder, create_proxy_app
    from harness.serve import AppThread

    enc = lambda text: tok.encode(text, add_special_tokens=False)  # noqa: E731
    with RunningServer(FakeConfig(kind="vllm")) as srv:
        rec = Recorder(path, "all", writer="thread")
        with AppThread(create_proxy_app(srv.root_url, rec)) as p:
            url = f"http://127.0.0.1:{p.port}/inference/v1/generate"
            prompt = enc("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
            first = httpx.post(url, json={"model": MODEL, "token_ids": prompt,
                                          "sampling_params": {"max_tokens": 40, "logprobs": 1}}).json()
            completion = first["choices"][0]["token_ids"]
            retok = enc(tok.decode(completion, skip_special_tokens=True))
            bridge = enc("\n<|im_start|>user\nmore<|im_end|>\n<|im_start|>assistant\n")
            httpx.post(url, json={"model": MODEL, "token_ids": prompt + retok + bridge,
                                  "sampling_params": {"max_tokens": 8, "logprobs": 1}})
        rec.close()
    return prompt, completion, retok, bridge
