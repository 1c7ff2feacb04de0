"""Rebuild the bug cassettes under cassettes/bugs/ and their regression tests under tests/bugs/.

    python scripts/make_bug_cassettes.py

Each bug is reproduced against a fake server with the matching fault, recorded through the
recording proxy (so the cassette is exactly what a capture in production would hold), given a
`meta` that says what went wrong, then replayed with `harness repro --emit-test`.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from fake_servers.server import FakeConfig, RunningServer
from harness.client import ClientConfig, TitoClient
from harness.recording.format import Cassette
from harness.recording.proxy import Recorder, create_proxy_app, recording_meta
from harness.captures.emit import emit_ours_test as emit_test
from harness.captures.repro import repro_cassette
from harness.serve import AppThread

ROOT = Path(__file__).resolve().parents[1]
BUGS = ROOT / "cassettes" / "bugs"
TESTS = ROOT / "tests" / "bugs"
TOOL_RESULT = {"role": "tool", "tool_call_id": "call_0", "content": "Paris has 2,102,650 inhabitants."}
QUESTION = [{"role": "user", "content": "How many people live in Paris?"}]


def record(name: str, fake: FakeConfig, drive, bug: str, conversation: list[dict], transport: str) -> Path:
    path = BUGS / f"{name}.yaml"
    if path.exists():
        path.unlink()
    with RunningServer(fake) as srv:
        recorder = Recorder(path, "all", meta=recording_meta(srv.root_url, server=f"fake {fake.kind}",
                                                             model=fake.model, scenario=name))
        with AppThread(create_proxy_app(srv.root_url, recorder)) as proxy:
            asyncio.run(drive(f"http://127.0.0.1:{proxy.port}/v1", srv))
        recorder.flush()
    cassette = Cassette.load(path)
    cassette.meta.pop("upstream", None)  # a loopback port of this run: noise in review
    cassette.meta.update({"bug": bug, "transport": transport, "conversation": conversation})
    cassette.save(path)
    report = repro_cassette(path)
    test = emit_test(report, TESTS / f"test_{name}.py")
    print(f"{path.relative_to(ROOT)}: {len(cassette.interactions)} exchanges; "
          f"turns {[ (t.mode, t.fallback_reason, bool(t.tokens_dropped), t.error) for t in report.turns]}; "
          f"test {test.relative_to(ROOT)}")
    return path


def logprobs_one_short():
    turns = [{"messages": QUESTION, "sampling": {"max_tokens": 48, "seed": 1}},
             {"messages": None, "sampling": {"max_tokens": 48, "seed": 2}}]

    async def drive(url, srv):
        srv.set_faults(["logprobs_one_less*1"])  # the first answer is out of sync
        async with TitoClient(ClientConfig(base_url=url, model="tiny-qwen", renderer_transport="dynamo_chat")) as c:
            convo = c.conversation()
            r1 = await convo.turn(QUESTION, max_tokens=48, seed=1)
            turns[1]["messages"] = [*QUESTION, r1.message, TOOL_RESULT]
            await convo.turn(turns[1]["messages"], max_tokens=48, seed=2)

    return record("dynamo_logprobs_one_short", FakeConfig(kind="dynamo"), drive,
                  "Dynamo answered with one logprob fewer than completion ids (engine_data and choices alike). "
                  "The client must drop that turn's tokens, say why, and send the next turn messages-in.",
                  turns, "dynamo_chat")


def routed_experts_data_after_shape():
    turns = [{"messages": QUESTION, "sampling": {"max_tokens": 32, "seed": 3}},
             {"messages": None, "sampling": {"max_tokens": 32, "seed": 4}}]

    async def drive(url, srv):
        srv.set_faults(["experts_key_order", "experts_sibling_data"])
        async with TitoClient(ClientConfig(base_url=url, model="tiny-qwen")) as c:
            convo = c.conversation()
            r1 = await convo.turn(QUESTION, max_tokens=32, seed=3)
            turns[1]["messages"] = [*QUESTION, r1.message, TOOL_RESULT]
            await convo.turn(turns[1]["messages"], max_tokens=32, seed=4)

    return record("routed_experts_data_after_shape", FakeConfig(kind="vllm", moe="4,2,16"), drive,
                  "vLLM's routed_experts object came with `data` after `shape`, and a sibling object with a "
                  "`data` key of its own before it: a splitter that takes the first `data` after the key "
                  "decodes the wrong bytes.", turns, "vllm_generate")


def none_fields_silent_mito():
    turns = [{"messages": QUESTION, "sampling": {"max_tokens": 48, "seed": 5}},
             {"messages": None, "sampling": {"max_tokens": 48, "seed": 6}}]

    async def drive(url, srv):
        # Production: the environment echoed the assistant message with None-valued keys; a client
        # comparing messages verbatim saw no prefix match and silently sent turn 2 messages-in.
        config = ClientConfig(base_url=url, model="tiny-qwen", parity_policy="off")
        async with TitoClient(config) as old:
            r1 = await old.conversation().turn(QUESTION, max_tokens=48, seed=5)
            echoed = {**r1.message, "tool_calls": None, "name": None, "reasoning_content": None}
            turns[1]["messages"] = [*QUESTION, echoed, {**TOOL_RESULT, "name": None}]
            await old.conversation().turn(turns[1]["messages"], max_tokens=48, seed=6)  # the silent MITO
        # The fix: None-valued keys are dropped before comparing, so turn 2 is stitched.
        async with TitoClient(ClientConfig(base_url=url, model="tiny-qwen")) as new:
            convo = new.conversation()
            await convo.turn(QUESTION, max_tokens=48, seed=5)
            await convo.turn(turns[1]["messages"], max_tokens=48, seed=6)

    return record("none_fields_silent_mito", FakeConfig(kind="vllm"), drive,
                  "Turn 2 silently fell back to MITO because the echoed assistant message carried None-valued "
                  "keys (tool_calls: null, name: null). The cassette holds that production exchange and the "
                  "stitched one; the client must stitch turn 2.", turns, "vllm_generate")


if __name__ == "__main__":
    BUGS.mkdir(parents=True, exist_ok=True)
    TESTS.mkdir(parents=True, exist_ok=True)
    (TESTS / "__init__.py").touch()
    for make in (logprobs_one_short, routed_experts_data_after_shape, none_fields_silent_mito):
        make()
    sys.exit(0)
