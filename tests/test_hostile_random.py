"""Seeded random hostile bodies (harness.hostile.random_bodies) recorded from the real servers: each gets the
real status and error shape from the fake of its profile. vLLM's answers come from its own request models
(harness.wire.vllm_requests: pydantic, lax coercion, then SamplingParams' checks); Dynamo's from the typed structs
serde reads a request into, then its validation pass (harness.wire.dynamo_requests, harness.wire.serde)."""

from pathlib import Path

import pytest

from harness.conformance import run_conformance
from harness.hostile import random_bodies, rule_bodies
from harness.recording.format import Cassette

RANDOM = Path(__file__).parents[1] / "cassettes" / "hostile" / "random"
RULES = Path(__file__).parents[1] / "cassettes" / "hostile" / "rules"
SERVERS = sorted(p.name for p in RANDOM.iterdir() if p.is_dir())
RULE_SERVERS = sorted(p.name for p in RULES.iterdir() if p.is_dir())


def test_every_real_server_here_has_a_random_suite_of_hundreds():
    assert set(SERVERS) == {"vllm-0.30-cpu", "vllm-0.31-cpu", "vllm-0.32-cpu", "dynamo-1.6.1-vllm-0.31-cpu",
                            "dynamo-1.6.1-vllm-0.31-cpu-native-generate", "dynamo-1.6.1-mocker", "dynamo-1.5.1-mocker"}
    for server in SERVERS:
        assert sum(len(Cassette.load(f).interactions) for f in (RANDOM / server).glob("*.yaml")) >= 200, server
    assert set(RULE_SERVERS) == {"dynamo-1.6.1-mocker", "dynamo-1.5.1-mocker", "dynamo-1.6.1-vllm-0.31-cpu",
                                 "dynamo-1.6.1-vllm-0.31-cpu-native-generate", "vllm-0.32-cpu", "vllm-0.30-cpu"}


@pytest.mark.parametrize("server", SERVERS)
def test_the_fake_answers_every_random_hostile_body_as_the_real_server(server):
    report = run_conformance(RANDOM / server)
    assert len(report.checks) >= 60 and not report.unknown
    bad = [f"{c.cassette}#{c.index}: {c.problems[:2]}" for c in report.checks if c.problems]
    assert not bad, bad[:10]
    assert all(c.fake_status < 500 for c in report.checks)


@pytest.mark.parametrize("server", RULE_SERVERS)
def test_each_rule_gets_the_real_status_error_body_and_prompt(server):
    """One body per rule (harness.hostile: DYNAMO_RULES and DYNAMO_GENERATE_RULES for Dynamo's chat and native
    generate, DYNAMO_COMPLETION_RULES for its /v1/completions, TEMPLATE_RULES for how vLLM and Dynamo read a
    request's chat template arguments), recorded from each server here: the fake of the profile answers with the
    same status, every error body is the real one to the byte (the validation pass in its order and words, serde's
    required fields and columns, each version's rules, the worker's own refusals), and every accepted request
    reads the real prompt (usage.prompt_tokens)."""
    differ = []
    for path in sorted((RULES / server).glob("*.yaml")):
        differ += _rule_differences(server, path)
    assert not differ, differ


def _rule_differences(server: str, path: Path) -> list[str]:
    import httpx

    from fake_servers.server import RunningServer
    from harness.conformance import fake_config
    from harness.wire.profiles import parse_label

    cassette = Cassette.load(path)
    route = {"generate": "dynamo-generate", "completions": "dynamo-completions"}.get(
        path.stem, "vllm-chat" if server.startswith("vllm") else "dynamo-chat")
    posts = [i for i in cassette.interactions if i.method == "POST"]
    assert [i.request_body for i in posts] == [b for _, _, b in rule_bodies(route, "tiny-qwen")]
    report = run_conformance(path)
    assert not [f"{path.stem}#{c.index}: {c.problems[:2]}" for c in report.checks if c.problems]
    differ = []
    profile = parse_label(cassette.meta["profile"])
    with RunningServer(fake_config(profile.kind, [cassette], profile)) as srv:  # (set up like the recorded server)
        for n, i in enumerate(posts):
            r = httpx.post(srv.root_url + "/" + i.uri.split("/", 3)[3], content=i.request_body,
                           headers={"content-type": "application/json"})
            if i.status >= 400 and r.content.strip() != i.response_body.strip():
                differ.append(f"#{n}: real {i.response_body[:160]!r} fake {r.content[:160]!r}")
            elif i.status == 200 and "usage" in (real := i.response_json() or {}) and \
                    r.json()["usage"]["prompt_tokens"] != real["usage"]["prompt_tokens"]:
                differ.append(f"#{n}: prompt of {real['usage']['prompt_tokens']} tokens, fake "
                              f"{r.json()['usage']['prompt_tokens']}")
            elif i.status == 200 and "choices" in real and _token_names(real) != _token_names(r.json()):
                differ.append(f"#{n}: logprob tokens named {_token_names(real)}, fake {_token_names(r.json())}")
    return [f"{path.stem} {d}" for d in differ]


def _token_names(answer: dict) -> set[str]:
    """How an answer names its logprob tokens: by text, or as `token_id:N` (return_tokens_as_token_ids)."""
    content = [e for c in answer.get("choices") or [] for e in ((c.get("logprobs") or {}).get("content") or [])]
    return {"id" if e["token"].startswith("token_id:") else "text" for e in content if e.get("token")}


def test_the_recorded_suites_are_the_generators_output():
    """The cassettes hold exactly what `random_bodies` draws for their seeds: the suite can be recorded
    again from any server, and grown."""
    chat = Cassette.load(RANDOM / "vllm-0.32-cpu" / "chat.yaml")
    assert [i.request_body for i in chat.interactions] == [b for _, _, b in random_bodies("chat", "tiny-qwen", 120, 1)]
    gen = Cassette.load(RANDOM / "dynamo-1.6.1-vllm-0.31-cpu-native-generate" / "generate.yaml")
    assert [i.request_body for i in gen.interactions] == \
        [b for _, _, b in random_bodies("generate", "tiny-qwen", 60, 4, dynamo=True)]


@pytest.mark.parametrize("path, body", [
    ("/v1/completions", {"model": "tiny-qwen", "prompt": "Hello", "max_tokens": 4, "max_completion_tokens": []}),
    ("/inference/v1/generate", {"model": "tiny-qwen", "token_ids": [9707],
                                "sampling_params": {"max_tokens": 4, "max_completion_tokens": []}}),
])
def test_a_field_the_model_lacks_is_ignored_not_read_as_its_namesake(path, body):
    """`max_completion_tokens` is a chat field: vLLM's completion and SamplingParams models keep it as an
    ignored extra, so max_tokens rules (this once answered 500)."""
    import httpx

    from fake_servers.server import FakeConfig, RunningServer

    with RunningServer(FakeConfig(kind="vllm")) as srv:
        r = httpx.post(srv.root_url + path, json=body)
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] <= 4  # max_tokens, not the extra, sized the answer
