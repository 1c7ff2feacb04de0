"""Request-field type checks of the routes whose request models are not yet the wire layer's (vLLM's
/v1/completions, /tokenize, /detokenize), in pydantic's words; and the limits that size work."""

from __future__ import annotations

from dataclasses import dataclass, field as dc_field
from typing import Any, Callable

INT64_MAX = 2 ** 63 - 1


@dataclass
class FieldError(Exception):
    """`field` failed: `kind`/`msg` in pydantic's words (vLLM), `expected` in serde's (Dynamo).
    `more` holds further pydantic errors (loc, kind, msg, input, ctx) reported with this one."""

    field: str
    kind: str
    msg: str
    expected: str
    value: Any
    ctx: dict | None = None
    more: list = dc_field(default_factory=list)

    def pydantic_input(self) -> str:
        v = self.value
        if isinstance(v, dict):
            return f"'<dict of {len(v)} items>'"
        if isinstance(v, list):
            return f"'<list of {len(v)} items>'"
        return repr(str(v))  # vLLM's handler prints every input as a string: 'input': '1.5'



def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(name, v):
    if _is_int(v):
        return
    if isinstance(v, float):
        if v.is_integer() and abs(v) > INT64_MAX:
            raise FieldError(name, "int_parsing_size", "Unable to parse input string as an integer, exceeded maximum size",
                             "u32", v)
        if v.is_integer():
            return
        raise FieldError(name, "int_from_float", "Input should be a valid integer, got a number with a fractional part", "u32", v)
    if isinstance(v, str):
        raise FieldError(name, "int_parsing", "Input should be a valid integer, unable to parse string as an integer", "u32", v)
    raise FieldError(name, "int_type", "Input should be a valid integer", "u32", v)


def _int64(name, v):
    _int(name, v)
    if _is_int(v) and not -INT64_MAX - 1 <= v <= INT64_MAX:
        raise FieldError(name, "less_than_equal" if v > 0 else "greater_than_equal",
                         f"Input should be less than or equal to {INT64_MAX}" if v > 0 else
                         f"Input should be greater than or equal to {-INT64_MAX - 1}", "i64", str(v),
                         {"le": INT64_MAX} if v > 0 else {"ge": -INT64_MAX - 1})


def _float(name, v):
    if _is_num(v):
        return
    if isinstance(v, str):
        raise FieldError(name, "float_parsing", "Input should be a valid number, unable to parse string as a number", "f32", v)
    raise FieldError(name, "float_type", "Input should be a valid number", "f32", v)


def _simple(is_ok, kind: str, msg: str, expected: str):
    def check(name, v):
        if not is_ok(v):
            raise FieldError(name, kind, msg, expected, v)
    return check


_bool = _simple(lambda v: isinstance(v, bool), "bool_type", "Input should be a valid boolean", "a boolean")
_str = _simple(lambda v: isinstance(v, str), "string_type", "Input should be a valid string", "a string")
_list = _simple(lambda v: isinstance(v, list), "list_type", "Input should be a valid list", "a sequence")
_dict = _simple(lambda v: isinstance(v, dict), "dict_type", "Input should be a valid dictionary", "a map")


def _int_list(name, v):
    _list(name, v)
    for i, x in enumerate(v):
        if not _is_int(x) or x < 0:
            raise FieldError(f"{name}.{i}", "int_type", "Input should be a valid integer", "u32", x)


MAX_STOP = 4


def _tools(name, v):
    _list(name, v)
    for i, tool in enumerate(v):
        if not isinstance(tool, dict):
            raise FieldError(f"{name}.{i}", "model_attributes_type",
                             "Input should be a valid dictionary or object to extract fields from",
                             "struct ChatCompletionTool", tool)
        fn = tool.get("function")
        if fn is None:
            raise FieldError(f"{name}.{i}.function", "missing", "Field required", "struct FunctionObject", tool)
        if not isinstance(fn, dict):
            raise FieldError(f"{name}.{i}.function", "model_attributes_type",
                             "Input should be a valid dictionary or object to extract fields from",
                             "struct FunctionObject", fn)
        if not isinstance(fn.get("name"), str):
            raise FieldError(f"{name}.{i}.function.name", "missing" if fn.get("name") is None else "string_type",
                             "Field required" if fn.get("name") is None else "Input should be a valid string",
                             "a string", fn if fn.get("name") is None else fn.get("name"))


def json_depth(value, limit: int) -> bool:
    """Is `value` nested deeper than `limit` arrays/objects (serde_json stops at 128)?"""
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (list, dict)):
            if d > limit:
                return True
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return False


def _stop(name, v):
    if isinstance(v, str):
        return
    _list(name, v)
    for i, x in enumerate(v):
        _str(f"{name}.{i}", x)
    if len(v) > MAX_STOP:  # vLLM: str | list[str] with at most 4 items: pydantic reports both branches
        raise FieldError(name, "string_type", "Input should be a valid string", "a string", v, None,
                         [(f"body.{name}", "too_long", f"List should have at most {MAX_STOP} items after validation, "
                           f"not {len(v)}", f"'<list of {len(v)} items>'",
                           {"field_type": "List", "max_length": MAX_STOP, "actual_length": len(v)})])


def _messages(name, v):
    _list(name, v)
    for i, m in enumerate(v):
        _dict(f"{name}.{i}", m)
        role = m.get("role")
        if not isinstance(role, str):
            raise FieldError(f"{name}.{i}.role", "missing" if role is None else "string_type",
                             "Field required" if role is None else "Input should be a valid string",
                             "a string", role)
        content = m.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise FieldError(f"{name}.{i}.content", "string_type", "Input should be a valid string",
                             "a string or a sequence", content)
        if isinstance(content, list):
            for j, part in enumerate(content):
                _dict(f"{name}.{i}.content.{j}", part)


CHECKS: dict[str, Callable[[str, Any], None]] = {
    "model": _str, "messages": _messages, "prompt": lambda n, v: None,
    "max_tokens": _int, "max_completion_tokens": _int, "min_tokens": _int, "n": _int, "seed": _int64,
    "top_k": _int, "top_logprobs": _int, "priority": _int,
    "temperature": _float, "top_p": _float, "min_p": _float, "presence_penalty": _float,
    "frequency_penalty": _float, "repetition_penalty": _float,
    "logprobs": _bool, "stream": _bool, "return_token_ids": _bool, "ignore_eos": _bool,
    "add_generation_prompt": _bool, "return_token_strs": _bool, "skip_special_tokens": _bool,
    "stop": _stop, "stop_token_ids": _int_list, "tokens": _int_list, "token_ids": _int_list,
    "tools": _tools, "stream_options": _dict, "chat_template_kwargs": _dict, "nvext": _dict,
    "sampling_params": _dict,
}


INT_LOGPROBS = {"logprobs": _int}  # /v1/completions and sampling_params count logprobs


def check_fields(body: dict, fields=None, prefix: str = "", overrides: dict | None = None) -> None:
    """Raise FieldError for the first field whose value has the wrong type (null is allowed)."""
    for name in fields or body.keys():
        check = (overrides or {}).get(name) or CHECKS.get(name)
        value = body.get(name)
        if check is not None and value is not None:
            check(prefix + name, value)


def check_range(name: str, value, lo=None, hi=None) -> str | None:
    """A message when a present value falls outside [lo, hi]; None when fine."""
    if value is None:
        return None
    if lo is not None and value < lo:
        return f"{name} must be at least {lo}, got {value}."
    if hi is not None and value > hi:
        return f"{name} must be at most {hi}, got {value}."
    return None


# vLLM's SamplingParams limits, as real vLLM 0.32 words them (recorded: bench hostile bodies, n and
# logprob counts); checked before any work is sized by them
VLLM_MAX_LOGPROBS = 20  # the engine's max_logprobs default
VLLM_MAX_N = 16384  # VLLM_MAX_N_SEQUENCES
VLLM_MODEL_VOCAB = 151936  # the model config's (padded) vocabulary: what a count of -1 asks for


def _count(v):
    """An integer count as given (bools are not counts), or None: anything else is type validation's."""
    return v if _is_int(v) else None


def vllm_sampling_limits(n, sample_logprobs, prompt_logprobs) -> tuple[str, str | None] | None:
    """(message, param) for the first count vLLM's SamplingParams refuses, or None. Non-integers
    are left to type validation."""
    n = _count(n)
    if n is not None and n < 1:
        return f"n must be at least 1, got {n}.", None
    if n is not None and n > VLLM_MAX_N:
        return (f"n must be at most {VLLM_MAX_N}, got {n}. To increase this limit, set the VLLM_MAX_N_SEQUENCES "
                f"environment variable."), None
    for what, name, value in (("sample", "logprobs", _count(sample_logprobs)),
                              ("prompt", "prompt_logprobs", _count(prompt_logprobs))):
        if value is None:
            continue
        if value < -1:
            return f"{name} must be non-negative or -1, got {value}. (parameter={name}, value={value})", name
        asked = VLLM_MODEL_VOCAB if value == -1 else value
        if asked > VLLM_MAX_LOGPROBS:
            return (f"Requested {what} logprobs of {asked}, which is greater than max allowed: {VLLM_MAX_LOGPROBS} "
                    f"(parameter={name}, value={asked})"), name
    return None


def vllm_request_logprobs(route: str, body: dict) -> tuple[tuple[str, str] | None, object]:
    """The request model's own logprobs checks (chat: `top_logprobs`; completions: `logprobs`), as vLLM
    words them, and the sample-logprobs count SamplingParams then checks: (error or None, count)."""
    if route == "chat":  # (its request model's rules are the wire layer's: harness.wire.vllm_requests)
        top = _count(body.get("top_logprobs"))
        return None, top if body.get("logprobs") else None
    n = _count(body.get("logprobs"))
    if route == "completions" and n is not None and n < 0 and n != -1:
        return (f"`logprobs` must be a positive value or -1. (parameter=logprobs, value={n})", "logprobs"), None
    return None, n
