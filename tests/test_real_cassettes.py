"""Every cassette recorded from a real server (cassettes/real/) replays through the client with the
outcome it had live: per-turn modes and reasons, token continuity, statuses and error types."""

from pathlib import Path

import pytest

from harness.recording.format import Cassette
from harness.suite import replay_outcome

REAL = Path(__file__).parents[1] / "cassettes" / "real"
# the record-suite's scenarios; the RL control plane's recordings (rl_*.yaml, scripts/record_rl.py) are held to the
# fakes by tests/test_rl_conformance.py
CASSETTES = sorted(p for p in REAL.rglob("*.yaml") if not p.name.startswith("rl_"))
RL_CASSETTES = sorted(REAL.rglob("rl_*.yaml"))


def test_real_cassettes_are_committed_for_each_server():
    servers = {p.parent.name for p in CASSETTES}
    assert {"vllm-0.30-cpu", "vllm-0.31-cpu", "vllm-0.32-cpu", "dynamo-1.6.1-mocker", "dynamo-1.6.1-vllm-0.31-cpu",
            "dynamo-1.6.1-vllm-0.31-cpu-native-generate"} <= servers
    for p in CASSETTES:
        meta = Cassette.load(p).meta
        for key in ("server", "model", "hardware", "recorded_at", "recorder", "scenario", "transport", "outcome",
                    "profile"):
            assert meta.get(key), f"{p}: meta.{key} missing"
    assert sum(p.stat().st_size for p in CASSETTES) < 6 * 1024 * 1024  # a few MB in all
    assert sum(p.stat().st_size for p in RL_CASSETTES) < 8 * 1024 * 1024  # /metrics scrapes are ~100 KB each


def test_rl_recordings_name_their_server_and_scenario():
    servers = {p.parent.name for p in RL_CASSETTES}
    assert {"vllm-0.31-cpu", "vllm-0.32-cpu", "vllm-0.32-cpu-lora", "dynamo-1.6.1-vllm-0.31-cpu-rl"} <= servers
    for p in RL_CASSETTES:
        meta = Cassette.load(p).meta
        assert meta.get("profile") and meta.get("recorded_at") and "RL control plane" in meta.get("scenario", ""), p


@pytest.mark.parametrize("path", CASSETTES, ids=[f"{p.parent.name}/{p.stem}" for p in CASSETTES])
async def test_replays_with_the_recorded_outcome(path):
    recorded, now = await replay_outcome(path)
    assert now == recorded


@pytest.mark.parametrize("server", ["vllm-0.30-cpu", "vllm-0.31-cpu", "vllm-0.32-cpu", "dynamo-1.6.1-vllm-0.31-cpu",
                                    "dynamo-1.6.1-vllm-0.31-cpu-native-generate"])
def test_real_rollouts_are_tito_from_turn_two(server):
    cassette = Cassette.load(REAL / server / "rollout_4_turns_tools.yaml")
    outcome = cassette.meta["outcome"]
    assert [t["mode"] for t in outcome["turns"]] == ["mito", "tito", "tito", "tito"] and outcome["continuity"]
    assert all(t["has_logprobs"] for t in outcome["turns"])
    if cassette.meta["transport"] == "dynamo_generate":  # stitched turns rode Dynamo's own generate route
        assert sum(i.path == "/inference/v1/generate" for i in cassette.interactions) == 3


def test_dynamo_native_generate_errors_as_recorded():
    outcome = Cassette.load(REAL / "dynamo-1.6.1-vllm-0.31-cpu-native-generate" / "native_generate_errors.yaml").meta["outcome"]
    assert {k: v["status"] for k, v in outcome.items()} == {"ok": 200, "stream": 501, "unknown_model": 404,
                                                            "bad_id": 400, "too_long": 400, "no_sampling_params": 400}


def test_real_error_types():
    expect = {"vllm-0.32-cpu": "ContextLengthError", "dynamo-1.6.1-vllm-0.31-cpu": "ContextLengthError",
              "dynamo-1.6.1-mocker": None}  # the mocker checks no context window
    for server, err in expect.items():
        assert Cassette.load(REAL / server / "overlong_prompt.yaml").meta["outcome"]["error"] == err
        assert Cassette.load(REAL / server / "unknown_model.yaml").meta["outcome"]["error"] == "ModelNotFoundError"
    assert Cassette.load(REAL / "vllm-0.32-cpu" / "unknown_field.yaml").meta["outcome"]["status"] == 200
    assert Cassette.load(REAL / "dynamo-1.6.1-mocker" / "unknown_field.yaml").meta["outcome"]["status"] == 400
