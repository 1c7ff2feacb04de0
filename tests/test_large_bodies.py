"""A large body never stalls a fake's event loop, and a prompt far past the window is refused without tokenizing it
all. Count-based: the big request's rendering waits until /health was answered; a fake that rendered on its loop
would answer /health only after it (the wait then ends at its timeout, and the count is 0)."""

from __future__ import annotations

import asyncio
import threading

import httpx
import orjson
import pytest

from fake_servers.server import FakeConfig, RunningServer


class Gated:
    """A tokenizer whose template rendering waits for `gate` (and counts what it tokenizes), around a real one."""

    def __init__(self, tok, gate: threading.Event):
        self.tok, self.gate = tok, gate
        self.full_renders, self.encoded_chars = 0, 0

    def apply_chat_template(self, *args, **kwargs):
        self.gate.wait(60)
        if kwargs.get("tokenize", True):
            self.full_renders += 1
        return self.tok.apply_chat_template(*args, **kwargs)

    def encode(self, text, **kwargs):
        self.encoded_chars += len(text)
        return self.tok.encode(text, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tok, name)


@pytest.fixture(scope="module", params=["vllm", "dynamo"])
def server(request):
    with RunningServer(FakeConfig(kind=request.param, dynamo_backend="mocker" if request.param == "dynamo" else None)) \
            as srv:
        # (warm: the template's names are read once, from the real tokenizer)
        assert httpx.post(srv.base_url + "/chat/completions", content=chat_body(100),
                          headers={"content-type": "application/json"}).status_code == 200
        yield srv


def chat_body(chars: int) -> bytes:
    return orjson.dumps({"model": "tiny-qwen", "messages": [{"role": "user", "content": "hello world " * (chars // 12)}],
                         "max_tokens": 2})


async def big_request_and_health(srv: RunningServer, body: bytes) -> tuple[httpx.Response, int]:
    """Send `body`; while it is in flight, call /health until it answers, then let the rendering go on.
    Returns the big answer and how many /health calls were answered before it."""
    engine = srv.state.engine
    gate = threading.Event()
    gated = engine.tokenizer = Gated(engine.tokenizer, gate)
    try:
        async with httpx.AsyncClient(timeout=120) as c:
            big = asyncio.create_task(c.post(srv.base_url + "/chat/completions", content=body,
                                             headers={"content-type": "application/json"}))
            answered = 0
            while not big.done() and answered == 0:
                health = asyncio.create_task(c.get(srv.root_url + "/health"))
                done, _ = await asyncio.wait({big, health}, return_when=asyncio.FIRST_COMPLETED)
                if health in done:
                    answered += health.result().status_code == 200
                else:
                    await health
            gate.set()
            return await big, answered
    finally:
        gate.set()
        engine.tokenizer = gated.tok


async def test_health_is_answered_while_a_big_body_is_rendered(server):
    resp, answered = await big_request_and_health(server, chat_body(400_000))
    assert answered >= 1
    if server.state.kind == "vllm":  # past the window: vLLM says "at least", so not all of it is tokenized
        assert resp.status_code == 400 and "at least 4097 input tokens" in resp.json()["error"]["message"]
    else:  # the mocker takes any length, and counts every prompt token, as the real frontend + mocker do
        assert resp.status_code == 200 and resp.json()["usage"]["prompt_tokens"] > 60_000


@pytest.mark.parametrize("server", ["vllm"], indirect=True)  # (Dynamo's error names the whole prompt's length)
async def test_a_prompt_far_past_the_window_is_refused_from_a_prefix_on_vllm(server):
    engine = server.state.engine
    gate = threading.Event()
    gate.set()
    gated = engine.tokenizer = Gated(engine.tokenizer, gate)
    try:
        async with httpx.AsyncClient(timeout=120) as c:
            resp = await c.post(server.base_url + "/chat/completions", content=chat_body(5_000_000),
                                headers={"content-type": "application/json"})
    finally:
        engine.tokenizer = gated.tok
    assert resp.status_code == 400 and "at least 4097 input tokens" in resp.json()["error"]["message"]
    assert gated.full_renders == 0 and 0 < gated.encoded_chars < 500_000  # a prefix, never the 5 MB


def test_a_body_past_dynamos_limit_gets_its_413(server):
    """Dynamo 1.6.1's frontend reads 45 MiB and refuses one byte more, before parsing (recorded from Dynamo 1.6.1
    + mocker with bodies of exactly 47185920 and 47185921 bytes); vLLM has no limit."""
    def body(n: int) -> bytes:
        return b'{"model": 5' + b" " * (n - 12) + b"}"

    with httpx.Client(timeout=120) as c:
        at, past = (c.post(server.base_url + "/chat/completions", content=body(n),
                           headers={"content-type": "application/json"}) for n in (47185920, 47185921))
    assert at.status_code == 400
    if server.state.kind == "dynamo":
        assert at.json()["message"].startswith("Failed to deserialize the JSON body into the target type: invalid type:")
        assert (past.status_code, past.json()) == (413, {
            "message": "Request body exceeds the limit of 45 MB set by DYN_HTTP_BODY_LIMIT_MB",
            "type": "Payload Too Large", "code": 413})
    else:
        assert past.status_code == 400
