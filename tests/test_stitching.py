"""Stitching decisions, one test per fallback reason, on a local renderer."""

import pytest

from harness.client import stitching as S
from harness.client.stitching import TurnRecord, normalize, plan_turn
from harness.tokenizer import render_ids

from .conftest import TOOLS, tool_msg

USER = {"role": "user", "content": "q"}
ANSWER = {"role": "assistant", "content": "a"}


@pytest.fixture
def render(tokenizer):
    async def _render(messages, tools, add_gen):
        return render_ids(tokenizer, messages, tools, add_gen)
    return _render


def record(tokenizer, messages=(USER,), assistant=ANSWER, finish="stop", dropped=None, completion=None):
    prompt = render_ids(tokenizer, list(messages), TOOLS, True)
    if completion is None:
        completion = tokenizer.encode(assistant["content"]) + [151645]
    return TurnRecord(normalize(list(messages)), normalize(assistant), prompt, completion, finish, dropped)


def test_normalize_drops_none_keys_deeply():
    assert normalize({"role": "user", "content": "hi", "name": None}) == {"role": "user", "content": "hi"}
    assert normalize([{"a": {"b": None, "c": 1}}]) == [{"a": {"c": 1}}]


async def test_tito_prompt_is_previous_ids_plus_bridge(tokenizer, render):
    turn = record(tokenizer)
    msgs = [USER, ANSWER, tool_msg("r")]
    plan = await plan_turn([turn], normalize(msgs), TOOLS, render)
    assert plan.mode == "tito" and plan.reason is None
    assert plan.prompt_ids[: len(turn.prompt_ids) + len(turn.completion_ids)] == turn.prompt_ids + turn.completion_ids
    # the bridge is exactly what a full re-render adds after the previous assistant turn's stop token
    full = render_ids(tokenizer, msgs, TOOLS, True)
    assert plan.prompt_ids == full
    assert tokenizer.decode(plan.bridge_ids) == "\n<|im_start|>user\n<tool_response>\nr\n</tool_response><|im_end|>\n<|im_start|>assistant\n"


async def test_none_valued_keys_still_match(tokenizer, render):
    msgs = normalize([{**USER, "name": None}, {**ANSWER, "tool_calls": None}, {**tool_msg("r"), "name": None}])
    assert (await plan_turn([record(tokenizer)], msgs, TOOLS, render)).mode == "tito"


async def test_final_user_message_allowed(tokenizer, render):
    plan = await plan_turn([record(tokenizer)], [USER, ANSWER, tool_msg("r"), {"role": "user", "content": "go"}], TOOLS, render)
    assert plan.mode == "tito"


@pytest.mark.parametrize("history,messages,reason", [
    ([], [USER], S.NO_PRIOR_TURN),
    ("ok", [{"role": "user", "content": "different"}, ANSWER, tool_msg("r")], S.NO_PREFIX_MATCH),
    ("ok", [USER, {"role": "assistant", "content": "edited"}, tool_msg("r")], S.NO_PREFIX_MATCH),
    ("length", [USER, ANSWER, tool_msg("r")], S.TRUNCATED),
    ("dropped", [USER, ANSWER, tool_msg("r")], S.NO_ENGINE_TOKENS),
    ("noids", [USER, ANSWER, tool_msg("r")], S.NO_ENGINE_TOKENS),
    ("ok", [USER, ANSWER], S.INVALID_ENV_TAIL),
    ("ok", [USER, ANSWER, {"role": "user", "content": "u"}, tool_msg("r")], S.INVALID_ENV_TAIL),
    ("ok", [USER, ANSWER, {"role": "assistant", "content": "injected"}], S.INVALID_ENV_TAIL),
    ("ok", [USER, ANSWER, {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], S.MULTIMODAL),
    ("nostop", [USER, ANSWER, tool_msg("r")], S.NO_STOP_TOKEN),
])
async def test_fallback_reasons(tokenizer, render, history, messages, reason):
    turns = {"ok": lambda: [record(tokenizer)], "length": lambda: [record(tokenizer, finish="length")],
             "dropped": lambda: [record(tokenizer, dropped="11 logprobs for 12 ids")],
             "noids": lambda: [record(tokenizer, completion=[])],
             "nostop": lambda: [record(tokenizer, completion=tokenizer.encode("a"))]}
    hist = turns[history]() if history else []
    plan = await plan_turn(hist, normalize(messages), TOOLS, render)
    assert plan.mode == "mito" and plan.reason == reason and plan.prompt_ids is None
    assert reason == S.NO_PRIOR_TURN or plan.detail


async def test_bridge_tokenize_failed(tokenizer):
    async def broken(messages, tools, add_gen):
        raise ConnectionError("tokenize is down")
    plan = await plan_turn([record(tokenizer)], [USER, ANSWER, tool_msg("r")], TOOLS, broken)
    assert plan.reason == S.BRIDGE_TOKENIZE_FAILED and "tokenize is down" in plan.detail


async def test_bridge_prefix_broken(tokenizer, render):
    async def shifting(messages, tools, add_gen):
        ids = await render(messages, tools, add_gen)
        return ids if add_gen else [7] + ids  # (b) no longer a prefix of (a)
    plan = await plan_turn([record(tokenizer)], [USER, ANSWER, tool_msg("r")], TOOLS, shifting)
    assert plan.reason == S.BRIDGE_PREFIX_BROKEN


async def test_duplicated_stop_token_is_skipped(tokenizer):
    # a template that reuses the stop token as the next role marker: <eos> x <eos> ...
    async def eos_marker(messages, tools, add_gen):
        ids = [5, 9, 2]  # dummy assistant: "x" then stop (2), nothing after it
        for _ in messages[1:]:
            ids += [2, 11]  # each following message opens with the stop token
        return ids + ([2, 12] if add_gen else [])
    turn = TurnRecord([USER], ANSWER, [1], [9, 2], "stop")
    plan = await plan_turn([turn], [USER, ANSWER, tool_msg("r")], None, eos_marker)
    assert plan.mode == "tito" and plan.bridge_ids == [11, 2, 12]


async def test_tokenizer_mismatch_blocks_stitching(tokenizer, render):
    plan = await plan_turn([record(tokenizer)], [USER, ANSWER, tool_msg("r")], TOOLS, render, blocked="differs at 3")
    assert plan.reason == S.TOKENIZER_MISMATCH


async def test_longest_match_wins(tokenizer, render):
    first = record(tokenizer)
    second_msgs = [USER, ANSWER, tool_msg("r")]
    second = record(tokenizer, messages=second_msgs, assistant={"role": "assistant", "content": "b"})
    plan = await plan_turn([first, second], normalize([*second_msgs, {"role": "assistant", "content": "b"}, tool_msg("s", 1)]),
                           TOOLS, render)
    assert plan.mode == "tito" and plan.matched_turn == 1
