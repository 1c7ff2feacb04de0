"""Typed client errors, and the classifier that reads both servers' error shapes.

vLLM: `{"error": {message, type, param, code}}` (older builds: top-level `{"object": "error", ...}`),
FastAPI's `{"detail": "Not Found"}` for a missing route. Dynamo: `{message, type, code, details?}`.
"""

from __future__ import annotations

import re

import orjson

from ..wire.routed_experts import RoutedExpertsError  # re-exported: one place to import errors from

__all__ = [
    "TitoError", "TransportError", "IncompleteStreamError", "ServerError", "BadRequestError",
    "ContextLengthError", "ModelNotFoundError", "RouteNotFoundError", "MalformedResponseError",
    "LogprobMismatchError", "TokenizerMismatchError", "RoutedExpertsError", "error_from_response",
]


class TitoError(Exception):
    """Base of every error the client raises."""


class TransportError(TitoError):
    """The server could not be reached or cut the connection, after all retries."""

    def __init__(self, message: str, attempts: int = 1):
        super().__init__(message)
        self.attempts = attempts


class IncompleteStreamError(TransportError):
    """A streamed answer ended before its finish chunk or `[DONE]`."""


class HTTPStatusError(TitoError):
    def __init__(self, status: int, message: str, body: dict | None = None, attempts: int = 1):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.body = body or {}
        self.attempts = attempts
        self.retry_after: str | None = None


class ServerError(HTTPStatusError):
    """429 or 5xx that outlived the retries."""


class BadRequestError(HTTPStatusError):
    """The server refused the request; `message` is the server's own text, `param` its field."""

    def __init__(self, status, message, body=None, attempts=1, param: str | None = None):
        super().__init__(status, message, body, attempts)
        self.param = param


class ContextLengthError(BadRequestError):
    """The prompt does not fit the model's context window (`prompt_tokens` may be a lower bound)."""

    def __init__(self, status, message, body=None, attempts=1, param=None,
                 prompt_tokens: int | None = None, max_model_len: int | None = None):
        super().__init__(status, message, body, attempts, param)
        self.prompt_tokens = prompt_tokens
        self.max_model_len = max_model_len


class ModelNotFoundError(HTTPStatusError):
    """The server serves no model of that name."""


class RouteNotFoundError(HTTPStatusError):
    """The server has no such route (e.g. /tokenize on Dynamo, /v1/chat/completions/tokens on upstream vLLM)."""


class MalformedResponseError(TitoError):
    """A 2xx answer the client cannot use: invalid JSON, no choices, wrong types."""


class LogprobMismatchError(TitoError):
    """Logprob count differs from the completion id count (mismatch policy `raise`)."""

    def __init__(self, n_ids: int, n_logprobs: int):
        super().__init__(f"{n_logprobs} logprobs for {n_ids} completion ids: the engine's answer is out of sync")
        self.n_ids, self.n_logprobs = n_ids, n_logprobs


class TokenizerMismatchError(TitoError):
    """The local tokenizer renders differently from the engine (parity policy `raise`)."""

    def __init__(self, report):
        super().__init__(f"tokenizer parity check failed: {report.summary()}")
        self.report = report


_NUM = re.compile(r"\d+")


def _context_numbers(message: str, details: dict) -> tuple[int | None, int | None]:
    if details.get("type") == "context_length":
        return details.get("actual"), details.get("limit")
    m = re.search(r"maximum context length is (\d+) tokens.*?(\d+) input tokens", message, re.S)
    if m:
        return int(m.group(2)), int(m.group(1))
    m = re.search(r"prompt \(length (\d+)\).*?maximum model length of (\d+)", message, re.S)
    if m:
        return int(m.group(1)), int(m.group(2))
    return None, None


def _is_context_error(message: str, details: dict) -> bool:
    low = message.lower()
    return (details.get("type") == "context_length" or "maximum context length" in low
            or "longer than the maximum model length" in low)


def parse_error_body(content: bytes) -> tuple[str, str | None, dict, dict]:
    """(message, param, details, body) from any of the error shapes; tolerant of non-JSON."""
    try:
        body = orjson.loads(content) if content else {}
    except orjson.JSONDecodeError:
        text = content[:500].decode("utf-8", "replace").strip()
        return text or "(empty body)", None, {}, {}
    if not isinstance(body, dict):
        return str(body)[:500], None, {}, {}
    err = body.get("error") if isinstance(body.get("error"), dict) else body
    message = err.get("message") or err.get("detail") or body.get("detail") or orjson.dumps(body).decode()[:500]
    details = err.get("details") if isinstance(err.get("details"), dict) else {}
    return str(message), err.get("param"), details, body


def error_from_response(status: int, content: bytes, attempts: int = 1) -> HTTPStatusError:
    """The typed error for a non-2xx answer."""
    message, param, details, body = parse_error_body(content)
    if status == 404:
        low = message.lower()
        if "model" in low and ("does not exist" in low or "not found" in low):
            return ModelNotFoundError(status, message, body, attempts)
        return RouteNotFoundError(status, message, body, attempts)
    if status == 429 or status >= 500:
        return ServerError(status, message, body, attempts)
    if _is_context_error(message, details):
        actual, limit = _context_numbers(message, details)
        return ContextLengthError(status, message, body, attempts, param, actual, limit)
    return BadRequestError(status, message, body, attempts, param)
