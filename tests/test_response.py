"""The three engine-token shapes, the generate shape, and stream assembly."""

import json
from pathlib import Path

import pytest

from harness.client.errors import IncompleteStreamError, MalformedResponseError
from harness.client.response import assemble_stream, from_chat, from_generate

REAL = Path(__file__).parent / "data" / "real"


def chat(choice_extra=None, nvext=None, top=None):
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop",
                         **(choice_extra or {})}], **(top or {})}
    if nvext is not None:
        body["nvext"] = nvext
    return body


def lp(*values):
    return {"content": [{"token": "t", "logprob": v} for v in values]}


def test_vllm_native_shape_from_real_capture():
    body = json.loads((REAL / "vllm" / "chat.json").read_text())
    t = from_chat(body)
    assert t.completion_ids == [151645] and t.token_source == "choices"
    assert t.prompt_ids == body["prompt_token_ids"] and t.prompt_source == "response"
    assert t.completion_logprobs == [pytest.approx(-1.0738447904586792)] and t.logprobs_source == "choices"


def test_nvext_completion_ids_from_real_dynamo_capture():
    body = json.loads((REAL / "dynamo" / "chat_ext.json").read_text())
    t = from_chat(body, sent_prompt_ids=None)
    assert t.completion_ids == body["nvext"]["completion_token_ids"] and t.token_source == "nvext"
    assert t.prompt_ids is None and t.completion_logprobs is None  # the mocker sends neither


def test_engine_data_wins_over_echo_ids():
    ed = {"prompt_token_ids": [1, 2], "completion_token_ids": [5, 6, 7], "completion_logprobs": [-0.1, -0.2, -0.3]}
    t = from_chat(chat({"token_ids": [5, 99], "logprobs": lp(-1.0, -2.0)}, {"engine_data": ed, "completion_token_ids": [5, 6, 7]},
                       {"prompt_token_ids": [8]}))
    assert t.completion_ids == [5, 6, 7] and t.token_source == "engine_data"
    assert t.prompt_ids == [1, 2] and t.prompt_source == "engine_data"
    assert t.echo_ids_differ and t.completion_logprobs == [-0.1, -0.2, -0.3]


def test_logprobs_synthesized_from_engine_data_when_choice_has_none():
    ed = {"prompt_token_ids": [1], "completion_token_ids": [5, 6], "completion_logprobs": [-0.5, -0.25]}
    for choice_lp in (None, {"content": None}, {}):
        t = from_chat(chat({"logprobs": choice_lp}, {"engine_data": ed}))
        assert t.completion_logprobs == [-0.5, -0.25] and t.logprobs_source == "engine_data"
        assert any("synthesized" in n for n in t.notes)


def test_prompt_ids_fall_back_to_sent_ids():
    t = from_chat(chat({"token_ids": [3]}), sent_prompt_ids=[1, 2])
    assert t.prompt_ids == [1, 2] and t.prompt_source == "sent"


def test_ids_without_logprobs_still_returned():
    t = from_chat(chat(nvext={"completion_token_ids": [4, 5]}))
    assert t.completion_ids == [4, 5] and t.completion_logprobs is None


@pytest.mark.parametrize("body,match", [({"choices": []}, "empty"), ({"id": 1}, "no 'choices'"),
                                        ({"choices": [1]}, "not an object")])
def test_malformed_answers(body, match):
    with pytest.raises(MalformedResponseError, match=match):
        from_chat(body)


def test_generate_shape_from_real_capture():
    body = json.loads((REAL / "vllm" / "generate.json").read_text())
    t = from_generate(body, [1, 2, 3], "text")
    assert t.prompt_ids == [1, 2, 3] and t.completion_ids == [151645]
    assert len(t.completion_logprobs) == 1 and t.message["content"] == "text" and t.token_source == "generate"


def _sse(path):
    return [json.loads(line[6:]) for line in path.read_text().splitlines()
            if line.startswith("data: ") and line != "data: [DONE]"]


def test_assemble_real_vllm_stream():
    body = assemble_stream(_sse(REAL / "vllm" / "stream.txt"))
    t = from_chat(body)
    assert t.completion_ids == [65364, 138741, 100328, 62768] and len(t.completion_logprobs) == 4
    assert t.finish_reason == "length" and t.prompt_ids[:3] == [151644, 872, 198]
    assert body["choices"][0]["message"]["content"].startswith("\tOptional")


def test_assemble_real_dynamo_stream():
    t = from_chat(assemble_stream(_sse(REAL / "dynamo" / "stream.txt")))
    assert t.completion_ids == [1622, 1650, 1157, 1692] and t.token_source == "nvext" and t.finish_reason == "length"


def test_stream_without_finish_is_incomplete():
    chunks = _sse(REAL / "vllm" / "stream.txt")[:2]
    with pytest.raises(IncompleteStreamError):
        assemble_stream(chunks)
