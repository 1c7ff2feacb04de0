"""Hostile bodies that reach every depth of a request (harness.hostile_deep: inside messages, content parts, tool
calls, tools and their schemas, response_format, nvext's sub-objects, sampling_params, chat_template_kwargs; and
bodies JSON does not allow), recorded from the real servers here: the fake of each profile answers each with the
real status, never a 5xx, and the real error body byte for byte (the few left are listed in KNOWN, each with why)."""

from pathlib import Path

import httpx
import pytest

from fake_servers.server import RunningServer
from harness.conformance import fake_config
from harness.hostile_deep import deep_bodies
from harness.recording.format import Cassette
from harness.wire.profiles import parse_label

DEEP = sorted((Path(__file__).parents[1] / "cassettes" / "hostile" / "deep").glob("*/deep-*.yaml"))
# (cassette, index among its POSTs): what the fake still words otherwise, and why
KNOWN = {
    ("dynamo-1.6.1-mocker/deep-chat", 105): "a tool call given as a one-item list: serde counts 2 elements",
    ("dynamo-1.6.1-mocker/deep-chat", 133): "response_format as a list: serde's internally tagged enum read from a "
                                             "sequence (invalid length 1, expected 0 elements)",
    ("dynamo-1.6.1-mocker/deep-chat", 139): "nvext.agent_hints refuses unknown fields (strict_priority is a field): "
                                             "the fields' declared order is not known here",
}
SEEDS = {"vllm-0.32-cpu/deep-chat": ("chat", 160, 1), "vllm-0.32-cpu/deep-generate": ("generate", 80, 2),
         "dynamo-1.6.1-mocker/deep-chat": ("chat", 160, 3), "dynamo-1.6.1-mocker/deep-completions": ("completions", 80, 4)}


def _name(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def test_the_deep_suites_are_recorded_from_each_server_and_are_the_generators_output():
    assert {_name(p) for p in DEEP} == set(SEEDS)
    for path in DEEP:
        route, n, seed = SEEDS[_name(path)]
        posts = [i for i in Cassette.load(path).interactions if i.method == "POST"]
        assert [i.request_body for i in posts] == \
            [b for _, _, b in deep_bodies(route, "tiny-qwen", n, seed, dynamo="dynamo" in path.parent.name)]


def test_the_generator_reaches_every_depth_and_writes_what_json_does_not_allow():
    names = " ".join(n for n, _, _ in deep_bodies("chat", "tiny-qwen", 400, 9, dynamo=True))
    for depth in ("messages.1.content.0.type", "messages.2.tool_calls.0.function.arguments", "tools.0.function.parameters",
                  "response_format.json_schema", "nvext.agent_hints.", "chat_template_args"):
        assert depth in names, depth
    bodies = [b for n, _, b in deep_bodies("chat", "tiny-qwen", 400, 9) if "not json" in n]
    assert any(b"NaN" in b for b in bodies) and any(b.endswith(b", }") for b in bodies)
    assert any(b"\xff" in b for b in bodies)
    gen = " ".join(n for n, _, _ in deep_bodies("generate", "tiny-qwen", 200, 9))
    assert "sampling_params.stop_token_ids" in gen and "sampling_params.structured_outputs" in gen


@pytest.mark.parametrize("path", DEEP, ids=_name)
def test_the_fake_answers_every_deep_body_as_the_real_server(path):
    cassette = Cassette.load(path)
    profile = parse_label(cassette.meta["profile"])
    posts = [i for i in cassette.interactions if i.method == "POST"]
    status, words = [], []
    with RunningServer(fake_config(profile.kind, [cassette], profile)) as srv:
        for n, i in enumerate(posts):
            r = httpx.post(srv.root_url + "/" + i.uri.split("/", 3)[3], content=i.request_body,
                           headers={"content-type": "application/json"}, timeout=30)
            assert r.status_code < 500 or r.status_code == i.status, f"#{n}: {r.text[:200]}"
            if (_name(path), n) in KNOWN:
                continue
            if r.status_code != i.status:
                status.append(f"#{n}: real {i.status} fake {r.status_code}: {i.response_body[:160]!r}")
            elif i.status >= 400 and r.content.strip() != i.response_body.strip():
                words.append(f"#{n}: real {i.response_body[:200]!r}\n fake {r.content[:200]!r}")
    assert not status and not words, status + words
