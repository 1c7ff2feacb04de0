"""The bridge audit and the causes of a drift, on captures whose every id is built with the deployment's own
tokenizer (the built-in Qwen2.5 ChatML one): a stitched turn whose bridge is not what the template renders is
`bridge_mismatch`, a prompt that leaves the previous turn's ids is `continuity_break`, each with its cause."""

import orjson
import pytest

from harness.captures import audit
from harness.captures import bridge as B
from harness.recording.format import Cassette, Interaction
from harness.tokenizer import render_ids

USER = {"role": "user", "content": "What is 2+2?"}


@pytest.fixture(scope="module")
def dep():
    return B.Deployment.load()


def enc(dep, text, **kw):
    return list(dep.tokenizer.encode(text, add_special_tokens=False, **kw))


def first_turn(dep, completion_text, finish="stop", messages=(USER,), completion=None):
    prompt = render_ids(dep.tokenizer, list(messages), add_generation_prompt=True)
    completion = (completion or enc(dep, completion_text)) + ([dep.eos] if finish == "stop" else [])
    body = {"model": "m", "messages": list(messages), "return_token_ids": True}
    answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": completion_text},
                           "finish_reason": finish, "token_ids": completion}], "prompt_token_ids": prompt}
    inter = Interaction("POST", "http://h/v1/chat/completions", {}, orjson.dumps(body), 200, "OK", {},
                        orjson.dumps(answer))
    return inter, prompt + completion


def stitched(prompt):
    body = {"model": "m", "token_ids": prompt, "sampling_params": {"max_tokens": 4}}
    answer = {"choices": [{"index": 0, "token_ids": [16, 151645], "finish_reason": "stop"}]}
    return Interaction("POST", "http://h/inference/v1/generate", {}, orjson.dumps(body), 200, "OK", {},
                       orjson.dumps(answer))


def found(dep, inters):
    report = audit(Cassette(inters, {}), dep)
    assert len(report.conversations) == 1, [c.exchanges for c in report.conversations]
    return [(a.kind, a.cause) for a in report.anomalies]


NEXT = "\n<|im_start|>user\nAnd 3+3?<|im_end|>\n<|im_start|>assistant\n"


def test_a_bridge_the_template_renders_is_no_anomaly(dep):
    t1, head = first_turn(dep, "4")
    assert found(dep, [t1, stitched(head + enc(dep, NEXT))]) == []


@pytest.mark.parametrize("bridge, cause", [
    (lambda d: enc(d, NEXT.replace("assistant\n", "assistant\n\n")), B.WHITESPACE),  # id 271 where 198
    (lambda d: enc(d, NEXT, split_special_tokens=True), B.SPECIAL_AS_TEXT),
    (lambda d: enc(d, NEXT[:19]) + enc(d, NEXT[19:]), B.BPE_MERGE),  # "And" cut after its "A", encoded apart
])
def test_a_bridge_the_template_does_not_render_is_a_mismatch_with_its_cause(dep, bridge, cause):
    t1, head = first_turn(dep, "4")
    assert found(dep, [t1, stitched(head + bridge(dep))]) == [("bridge_mismatch", cause)]


def rerendered(dep, assistant, then=({"role": "user", "content": "And 3+3?"},), messages=(USER,)):
    """The client's own render of the whole conversation (it re-renders instead of reusing the engine's ids)."""
    return render_ids(dep.tokenizer, [*messages, {"role": "assistant", "content": assistant}, *then],
                      add_generation_prompt=True)


@pytest.mark.parametrize("completion, client_assistant, finish, cause", [
    ("<think>\nadd them\n</think>\n\n4", "4", "stop", B.THINKING),
    ('<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 2}}\n</tool_call>',
     '<tool_call>\n{"name":"add","arguments":{"b":2,"a":2}}\n</tool_call>', "stop", B.TOOL_JSON),
    ('<tool_call>\n{"name": "check", "arguments": {"exact": true, "n": 4}}\n</tool_call>',
     '<tool_call>\n{"name": "check", "arguments": {"exact": "True", "n": 4.0}}\n</tool_call>', "stop", B.ROUND_TRIP),
    ('<tool_call>\n{"name": "add", "arguments": {"a": 2}}\n</tool_call>',
     "<tool_call>\n<function=add>\n<parameter=a>\n2\n</parameter>\n</function>\n</tool_call>", "stop", B.TOOL_XML),
])
def test_a_re_rendered_assistant_turn_breaks_continuity_with_its_cause(dep, completion, client_assistant, finish,
                                                                        cause):
    t1, head = first_turn(dep, completion, finish)
    prompt = rerendered(dep, client_assistant)
    assert prompt[:len(head)] != head
    assert found(dep, [t1, stitched(prompt)]) == [("continuity_break", cause)]


def test_a_truncated_completion_re_rendered_whole_is_told(dep):
    """The engine sampled "fo" + "ur" and was cut by max_tokens; the client renders the text again (with the
    closing the model never wrote), which the tokenizer spells "four": the ids part inside the answer."""
    sampled = enc(dep, "The answer is fo") + enc(dep, "ur")
    t1, head = first_turn(dep, "The answer is four", "length", completion=sampled)
    prompt = rerendered(dep, "The answer is four")
    assert found(dep, [t1, stitched(prompt)]) == [("continuity_break", B.TRUNCATED)]


def test_an_edited_user_message_is_told(dep):
    t1, head = first_turn(dep, "Four, as it happens, and so on.")
    prompt = rerendered(dep, "Four, as it happens, and so on.", messages=({"role": "user", "content": "What is 5+5?"},))
    kinds = found(dep, [t1, stitched(prompt)])
    assert kinds in ([("continuity_break", B.EDITED)], [("orphan_tokens_in", B.EDITED)])


def test_every_cause_is_a_known_name():
    assert len(set(B.CAUSES)) == 10


def test_the_export_carries_group_and_cause(dep):
    from harness.captures.export import export_columns

    t1, head = first_turn(dep, "4")
    cols = export_columns(Cassette([t1, stitched(head + enc(dep, NEXT, split_special_tokens=True))], {}), dep)
    assert cols["group"] == [0, 0] and cols["anomalies"] == [[], ["bridge_mismatch"]]
    assert cols["causes"] == [[], [B.SPECIAL_AS_TEXT]]
