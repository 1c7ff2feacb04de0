"""Error classification against the bodies real vLLM 0.32 and real Dynamo 1.6.1 answered."""

from pathlib import Path

import pytest

from harness.client.errors import (BadRequestError, ContextLengthError, ModelNotFoundError, RouteNotFoundError,
                                   ServerError, error_from_response)

REAL = Path(__file__).parent / "data" / "real"


@pytest.mark.parametrize("server,name,status,kind", [
    ("vllm", "badmodel", 404, ModelNotFoundError),
    ("vllm", "badparam", 400, BadRequestError),
    ("vllm", "nomsgs", 400, BadRequestError),
    ("vllm", "badjson", 400, BadRequestError),
    ("vllm", "toolong", 400, ContextLengthError),
    ("vllm", "genlong", 400, ContextLengthError),
    ("vllm", "chattokens", 404, RouteNotFoundError),
    ("dynamo", "badmodel", 404, ModelNotFoundError),
    ("dynamo", "tokenize", 404, RouteNotFoundError),
    ("dynamo", "vllmkeys", 400, BadRequestError),
    ("dynamo", "badjson", 400, BadRequestError),
    ("dynamo", "badid", 400, BadRequestError),
])
def test_real_error_bodies_classify(server, name, status, kind):
    err = error_from_response(status, (REAL / server / f"{name}.json").read_bytes())
    assert type(err) is kind
    assert err.status == status and err.message  # the server's own words are kept


def test_context_length_numbers_from_both_servers():
    v = error_from_response(400, (REAL / "vllm" / "toolong.json").read_bytes())
    assert (v.prompt_tokens, v.max_model_len, v.param) == (2049, 2048, "input_tokens")
    g = error_from_response(400, (REAL / "vllm" / "genlong.json").read_bytes())
    assert (g.prompt_tokens, g.max_model_len) == (2100, 2048)
    d = error_from_response(400, b'{"message":"Invalid request","type":"Bad Request","code":400,'
                                 b'"details":{"type":"context_length","limit":2048,"actual":2100}}')
    assert isinstance(d, ContextLengthError) and (d.prompt_tokens, d.max_model_len) == (2100, 2048)


def test_param_and_message_kept():
    e = error_from_response(400, (REAL / "vllm" / "badparam.json").read_bytes())
    assert e.param == "body.temperature" and "valid number" in e.message
    d = error_from_response(400, (REAL / "dynamo" / "vllmkeys.json").read_bytes())
    assert "Unsupported parameter(s)" in d.message and "`return_token_ids`" in d.message


@pytest.mark.parametrize("status", [429, 500, 503])
def test_retryable_statuses_are_server_errors(status):
    assert isinstance(error_from_response(status, b"<html>oops</html>"), ServerError)


def test_old_vllm_shape_and_garbage():
    e = error_from_response(400, b'{"object":"error","message":"bad thing","type":"BadRequestError","param":"x","code":400}')
    assert isinstance(e, BadRequestError) and e.message == "bad thing" and e.param == "x"
    assert error_from_response(400, b"\xff\xfe not json").message
