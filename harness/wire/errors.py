"""Error bodies as each real server writes them (shapes taken from real captures): pure dicts, for the fakes
to send and for the recorder's live faults to answer with in the upstream's own shape."""

from __future__ import annotations

DYNAMO_TYPES = {400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 429: "Too Many Requests",
                500: "Internal Server Error", 503: "Service Unavailable"}
VLLM_FAULT_TYPES = {429: "RateLimitError", 503: "ServiceUnavailableError"}


def vllm_body(status: int, message: str, type_: str = "BadRequestError", param: str | None = None) -> dict:
    """vLLM (0.32): {"error": {message, type, param, code}}."""
    return {"error": {"message": message, "type": type_, "param": param, "code": status}}


def dynamo_body(status: int, message: str, details: dict | None = None) -> dict:
    """Dynamo (1.6): {message, type, code}, with optional details."""
    body = {"message": message, "type": DYNAMO_TYPES.get(status, "Error"), "code": status}
    if details is not None:
        body["details"] = details
    return body


# An HTTP fault (429, 500, 503) as each server kind answers it: one row per kind
HTTP_FAULT_BODY = {
    "vllm": lambda status, msg: vllm_body(status, msg, VLLM_FAULT_TYPES.get(status, "InternalServerError")),
    "dynamo": lambda status, msg: dynamo_body(status, msg),
}
