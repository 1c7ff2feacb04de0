"""vLLM 0.34.0 as a profile, read from its wheel (harness.wire.profiles, `read_from`): what changed on the wire since
0.33, each held against the 0.33 and 0.32 profiles so the difference is the row's and not the fake's."""

import httpx
import pytest

from fake_servers.server import FakeConfig, RunningServer
from harness.wire.profiles import PROFILES

from .conftest import MODEL

HELLO = [{"role": "user", "content": "Hello"}]
TOOL = {"type": "function", "function": {"name": "f"}}


@pytest.fixture(scope="module")
def servers():
    with RunningServer(FakeConfig(kind="vllm", profile="vllm-0.34")) as new, \
            RunningServer(FakeConfig(kind="vllm", profile="vllm-0.33")) as old:
        yield {"0.34": new, "0.33": old}


def _chat(srv, **fields):
    return httpx.post(srv.root_url + "/v1/chat/completions",
                      json={"model": MODEL, "messages": HELLO, "max_tokens": 3, **fields})


def test_the_row_says_what_was_read_and_that_it_is_read_not_recorded():
    row = PROFILES["vllm-0.34"]
    assert row.source == "source" and row.version == "0.34.0" and "vllm-0.34.0" in row.read_from


@pytest.mark.parametrize("choice", [None, "auto", "required", "none"])
def test_an_empty_tools_list_is_taken_as_omitted(servers, choice):
    extra = {"tool_choice": choice} if choice else {}
    new, old = _chat(servers["0.34"], tools=[], **extra), _chat(servers["0.33"], tools=[], **extra)
    assert new.status_code == 200, new.text
    assert old.status_code == 400 and "`tools` must not be an empty array" in old.json()["error"]["message"]


def test_a_named_tool_not_among_the_tools_is_named_in_the_words(servers):
    choice = {"type": "function", "function": {"name": "g"}}
    new = _chat(servers["0.34"], tools=[TOOL], tool_choice=choice).json()["error"]
    old = _chat(servers["0.33"], tools=[TOOL], tool_choice=choice).json()["error"]
    assert new["message"].startswith("The tool `g` specified in `tool_choice` does not match")
    assert old["message"].startswith("The tool specified in `tool_choice` does not match")
    # a named tool with an empty list keeps the list, so the lookup reports the mismatch
    assert _chat(servers["0.34"], tools=[], tool_choice=choice).json()["error"]["message"] == new["message"]


def test_null_usage_details_and_annotations_are_left_out(servers):
    new, old = _chat(servers["0.34"]).json(), _chat(servers["0.33"]).json()
    assert "prompt_tokens_details" not in new["usage"] and old["usage"]["prompt_tokens_details"] is None
    assert "annotations" not in new["choices"][0]["message"] and "annotations" in old["choices"][0]["message"]
    comp = httpx.post(servers["0.34"].root_url + "/v1/completions",
                      json={"model": MODEL, "prompt": "Hello", "max_tokens": 2}).json()
    assert "prompt_tokens_details" not in comp["usage"] and comp["usage"]["completion_tokens_details"] is None


def test_tokenize_reads_response_format(servers):
    bad = {"model": MODEL, "messages": HELLO, "response_format": {"type": "yaml"}}
    new = httpx.post(servers["0.34"].root_url + "/tokenize", json=bad)
    old = httpx.post(servers["0.33"].root_url + "/tokenize", json=bad)
    assert new.status_code == 400 and "response_format.type" in new.json()["error"]["message"]
    assert old.status_code == 200  # (an extra field 0.33 ignores)
    fine = {**bad, "response_format": {"type": "json_object"}}
    assert httpx.post(servers["0.34"].root_url + "/tokenize", json=fine).status_code == 200


@pytest.mark.parametrize("function", [[1], "f", None])
def test_a_named_tool_choice_whose_function_is_not_an_object(servers, function):
    """check_tool_usage's own words (0.32 to 0.34 alike) before pydantic reads the field."""
    r = _chat(servers["0.34"], tools=[TOOL], tool_choice={"type": "function", "function": function})
    assert r.status_code == 400
    assert r.json()["error"]["message"].startswith(f"Invalid value for `function`: `{function}` in `tool_choice`!")
