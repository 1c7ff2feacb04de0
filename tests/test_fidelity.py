"""The fakes against real captures: for every request recorded from real vLLM 0.32, real Dynamo
1.6.1 + mocker and real Dynamo 1.6.1 + vLLM worker, the fake answers the same status with the same
keys, JSON types and nesting (values excluded; a null on either side matches any type)."""

import json
from pathlib import Path

import httpx
import pytest

from fake_servers.server import FakeConfig, RunningServer
from harness.wire.shape import diff

DATA = Path(__file__).parent / "data" / "real"
REQUESTS = json.loads((DATA / "requests.json").read_text())
FAKES = {
    # the real vLLM ran without the prime-rl route, with a 2048 context and the hermes tool parser
    "vllm": FakeConfig(kind="vllm", max_model_len=2048, chat_tokens_route=False),
    "dynamo": FakeConfig(kind="dynamo", max_model_len=2048, dynamo_backend="mocker"),
    "dynamo_vllm": FakeConfig(kind="dynamo", max_model_len=2048, dynamo_backend="vllm"),
}


@pytest.fixture(scope="module")
def fakes():
    servers = {k: RunningServer(cfg).start() for k, cfg in FAKES.items()}
    yield servers
    for s in servers.values():
        s.stop()


def sse_chunks(text: str) -> list:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ") and line != "data: [DONE]"]


def load_real(server: str, name: str):
    path = DATA / server / (f"{name}.txt" if name == "stream" else f"{name}.json")
    text = path.read_text()
    return sse_chunks(text) if name == "stream" else json.loads(text)


CASES = [(server, r) for server, reqs in REQUESTS.items() for r in reqs]


@pytest.mark.parametrize("server,req", CASES, ids=[f"{s}-{r['name']}" for s, r in CASES])
def test_fake_answers_like_the_real_server(fakes, server, req):
    srv = fakes[server]
    body = req["body"]
    kw = {"content": body} if isinstance(body, str) else ({"json": body} if body is not None else {})
    resp = httpx.request(req["method"], srv.root_url + req["path"], timeout=30, **kw)
    assert resp.status_code == req["status"], resp.text[:300]
    real = load_real(server, req["name"])
    fake = sse_chunks(resp.text) if req["name"] == "stream" else resp.json()
    if req["name"] == "stream":
        # same chunk structure, and the same sequence of chunk kinds (first/token/final/usage)
        kinds = lambda chunks: [("usage" if not c["choices"] else "final" if c["choices"][0].get("finish_reason")
                                 else "token") for c in chunks]
        assert kinds(fake)[-2:] == kinds(real)[-2:]
    problems = diff(real, fake)
    assert not problems, "\n".join(problems)


def test_error_texts_match_real_servers_word_for_word(fakes):
    """Where a message has no request-specific part, the fake's text is the real one."""
    exact = [("vllm", "badmodel"), ("vllm", "nomsgs"), ("vllm", "badparam"), ("vllm", "badjson"), ("vllm", "toolong"),
             ("vllm", "genlong"), ("vllm", "gen_badid"), ("vllm", "chat_emptymsgs"), ("vllm", "chat_neg"),
             ("vllm", "chattokens"), ("dynamo", "vllmkeys"), ("dynamo", "unknown"), ("dynamo", "tokenize"),
             ("dynamo", "badmodel"), ("dynamo", "emptymsgs"), ("dynamo", "badid"), ("dynamo_vllm", "toolong")]
    by_name = {(s, r["name"]): r for s, r in CASES}
    for server, name in exact:
        req = by_name[(server, name)]
        body = req["body"]
        kw = {"content": body} if isinstance(body, str) else {"json": body}
        fake = httpx.request(req["method"], fakes[server].root_url + req["path"], **kw).json()
        real = load_real(server, name)
        if server == "dynamo" and name == "vllmkeys":  # the real frontend lists them in hash order
            assert sorted(fake["message"].split(": ", 2)[2].split(", ")) == sorted(real["message"].split(": ", 2)[2].split(", "))
            continue
        assert fake == real, f"{server}/{name}"
