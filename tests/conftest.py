import os

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest  # noqa: E402

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


def kill_mid_traffic(proc, send, seconds: float, threads: int = 4, kill=None) -> list[int]:
    """Send requests from `threads` threads (`send(client, thread, n)` returns a status) for `seconds`,
    then SIGKILL `proc` (or call `kill`) with traffic still in flight. Returns the statuses answered."""
    import threading
    import time

    import httpx

    stop, answered = threading.Event(), []

    def hammer(k):
        with httpx.Client() as client:
            n = 0
            while not stop.is_set():
                try:
                    answered.append(send(client, k, n))
                except httpx.HTTPError:
                    return
                n += 1

    workers = [threading.Thread(target=hammer, args=(k,)) for k in range(threads)]
    for t in workers:
        t.start()
    time.sleep(seconds)
    (kill or proc.kill)()
    proc.wait(10)
    stop.set()
    for t in workers:
        t.join(10)
    return answered
