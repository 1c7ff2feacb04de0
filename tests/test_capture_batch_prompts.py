"""A capture whose requests carry a batch of prompts (/v1/completions takes a list of token-id lists, as Dynamo and
vLLM serve it), an empty prompt or nested ids is read as turns without ids, never an error of the linker."""

import json

import numpy as np

from harness.captures.audit import audit
from harness.captures.turns import ids_of
from harness.recording.format import Cassette, Interaction


def test_ids_are_a_flat_list_of_token_ids_or_none():
    assert ids_of([1, 2, 3]).tolist() == [1, 2, 3]
    assert ids_of([[1, 2], [3, 4]]) is None  # a batch of prompts
    assert ids_of([]) is None and ids_of("1 2") is None and ids_of([1, "a"]) is None and ids_of([[1], [2, 3]]) is None
    assert ids_of([2 ** 70]) is None


def exchange(body: dict, answer: dict) -> Interaction:
    return Interaction(method="POST", uri="http://127.0.0.1:8000/v1/completions",
                       request_headers={"content-type": ["application/json"]}, request_body=json.dumps(body).encode(),
                       status=200, reason="OK", response_headers={"content-type": ["application/json"]},
                       response_body=json.dumps(answer).encode())


def test_a_capture_of_batched_and_empty_prompts_audits(tmp_path):
    answer = {"id": "c", "object": "text_completion", "model": "m", "choices": [
        {"index": 0, "text": "a", "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}}
    bodies = [{"model": "m", "prompt": [[9707, 1879], [9707]], "max_tokens": 1},
              {"model": "m", "prompt": [], "max_tokens": 1},
              {"model": "m", "prompt": [[[1]]], "max_tokens": 1},
              {"model": "m", "prompt": [9707, 1879], "max_tokens": 1}]
    path = tmp_path / "batch.yaml"
    Cassette([exchange(b, answer) for b in bodies], {"profile": "dynamo-1.6.1+mocker"}).save(path)
    report = audit(path)
    assert report.exchanges == 4
    assert isinstance(np.asarray(report.where), np.ndarray) and len(report.where) == 4
