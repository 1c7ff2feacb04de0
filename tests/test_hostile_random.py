"""Seeded random hostile bodies (harness.hostile.random_bodies) recorded from the real servers: each gets the
real status and error shape from the fake of its profile. vLLM's answers come from its own request models
(harness.wire.vllm_requests: pydantic, lax coercion, then SamplingParams' checks)."""

from pathlib import Path

import pytest

from harness.conformance import run_conformance
from harness.hostile import random_bodies
from harness.recording.format import Cassette

RANDOM = Path(__file__).parents[1] / "cassettes" / "hostile" / "random"
MATCHED = ["vllm-0.32-cpu"]  # servers whose recorded random suites the fakes answer alike, body for body


@pytest.mark.parametrize("server", MATCHED)
def test_the_fake_answers_every_random_hostile_body_as_the_real_server(server):
    report = run_conformance(RANDOM / server)
    assert len(report.checks) >= 180 and not report.unknown
    bad = [f"{c.cassette}#{c.index}: {c.problems[:2]}" for c in report.checks if c.problems]
    assert not bad, bad[:10]
    assert all(c.fake_status < 500 for c in report.checks)


def test_the_recorded_suites_are_the_generators_output():
    """The cassettes hold exactly what `random_bodies` draws for their seeds: the suite can be recorded
    again from any server, and grown."""
    chat = Cassette.load(RANDOM / "vllm-0.32-cpu" / "chat.yaml")
    assert [i.request_body for i in chat.interactions] == [b for _, _, b in random_bodies("chat", "tiny-qwen", 120, 1)]
    gen = Cassette.load(RANDOM / "dynamo-1.6.1-vllm-0.31-cpu-native-generate" / "generate.yaml")
    assert [i.request_body for i in gen.interactions] == \
        [b for _, _, b in random_bodies("generate", "tiny-qwen", 60, 4, dynamo=True)]
