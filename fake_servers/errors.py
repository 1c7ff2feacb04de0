"""Error bodies exactly as each real server writes them (shapes taken from real captures)."""

from __future__ import annotations

import orjson
from aiohttp import web

from harness.wire import errors as wire_errors


def _json(status: int, body: dict, headers: dict | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json",
                        headers=headers)


def http_fault(kind: str, status: int, message: str, headers: dict | None = None) -> web.Response:
    """An injected HTTP fault in the server kind's own shape."""
    return _json(status, wire_errors.HTTP_FAULT_BODY[kind](status, message), headers)


# -- vLLM (0.32): {"error": {message, type, param, code}}; FastAPI's {"detail"} for routes ------
def vllm_error(status: int, message: str, type_: str = "BadRequestError", param: str | None = None,
               headers: dict | None = None) -> web.Response:
    return _json(status, wire_errors.vllm_body(status, message, type_, param), headers)


def vllm_body(body: dict) -> web.Response:
    """An error body built by the wire layer's request rules (its `error.code` is the status)."""
    return _json(body["error"]["code"], body)


def _pydantic_line(loc: str, kind: str, msg: str, input_repr: str, ctx: dict | None) -> str:
    detail = f"{{'type': '{kind}', 'loc': '{loc}', 'msg': '{msg}', 'input': {input_repr}"
    if ctx:
        detail += f", 'ctx': {ctx!r}"
    return detail + "}"


def vllm_validation(loc: str, kind: str, msg: str, input_repr: str, ctx: dict | None = None,
                    more: list | None = None) -> web.Response:
    """Pydantic validation failures, as vLLM's exception handler words them (`more`: further
    (loc, kind, msg, input, ctx) errors reported after the first)."""
    lines = [_pydantic_line(loc, kind, msg, input_repr, ctx)] + [_pydantic_line(*m) for m in more or []]
    head = "1 validation error" if len(lines) == 1 else f"{len(lines)} validation errors"
    return vllm_error(400, f"{head}:\n  " + "\n  ".join(lines), "Bad Request", loc)


def vllm_model_not_found(model: str, served: str) -> web.Response:
    return vllm_error(404, f"The model `{model}` does not exist. Valid aliases: {served}.",
                      "NotFoundError", "model")


def vllm_chat_too_long(max_model_len: int) -> web.Response:
    n = max_model_len + 1
    return vllm_error(
        400,
        f"This model's maximum context length is {max_model_len} tokens. However, your prompt "
        f"contains at least {n} input tokens, which exceeds this limit even without any output "
        f"tokens. Please reduce the length of the input prompt. (parameter=input_tokens, value={n})",
        "BadRequestError", "input_tokens")


def vllm_decoder_too_long(prompt_len: int, max_model_len: int) -> web.Response:
    if prompt_len > max_model_len:
        msg = (f"The decoder prompt (length {prompt_len}) is longer than the maximum model length of "
               f"{max_model_len}. Make sure that `max_model_len` is no smaller than the number of "
               f"text tokens.")
    else:
        msg = (f"The decoder prompt (length {prompt_len}) plus the number of requested output tokens "
               f"(at least 1) is longer than the maximum model length of {max_model_len}. Make sure "
               f"that `max_model_len` is no smaller than the number of text tokens (prompt + "
               f"requested output tokens).")
    return vllm_error(400, msg)


def fastapi_detail(status: int, detail: str) -> web.Response:
    """FastAPI's own errors (unknown route, wrong method, a body it cannot read): `{"detail"}`."""
    return _json(status, {"detail": detail})


# -- Dynamo (1.6): {message, type, code}, with optional details -------------------------------
def dynamo_error(status: int, message: str, details: dict | None = None,
                 headers: dict | None = None) -> web.Response:
    return _json(status, wire_errors.dynamo_body(status, message, details), headers)


def dynamo_json(status: int, body: dict) -> web.Response:
    """An error body built by the wire layer's request rules."""
    return _json(status, body)


def dynamo_deserialize(reason: str) -> web.Response:
    return dynamo_error(400, f"Failed to deserialize the JSON body into the target type: {reason}")


def dynamo_route_not_found(method: str, path: str) -> web.Response:
    return dynamo_error(404, f"Route not found: {method} {path}")


def dynamo_context_length(limit: int, actual: int) -> web.Response:
    return dynamo_error(400, "Invalid request", {"type": "context_length", "limit": limit, "actual": actual})


def dynamo_generate_error(status: int, message: str, type_: str) -> web.Response:
    """Errors of Dynamo's native /inference/v1/generate: vLLM-style `{"error": {message, type, code}}`."""
    return _json(status, {"error": {"message": message, "type": type_, "code": status}})
