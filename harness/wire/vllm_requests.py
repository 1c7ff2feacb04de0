"""vLLM's request rules, as vLLM applies them: its pydantic request models (lax coercion: `"1"` is an int,
`true` is 1, `"yes"` a bool), then SamplingParams' range checks in their order and words.

The field types are vLLM 0.32's (`ChatCompletionRequest` in entrypoints/openai/chat_completion/protocol.py,
`GenerateRequest` in entrypoints/scale_out/token_in_token_out/protocol.py, `SamplingParams` in
sampling_params.py); 0.30 and 0.31 answer the random and rule suites as 0.32 does, and 0.33's own models
(`VERSION_MODELS`) are read from its wheel. A failure is worded as vLLM's FastAPI exception handler words a RequestValidationError
(entrypoints/serve/exception_handling/handlers/validation.py): "N validation error(s):" and one line per
error, `param` the first error's cleaned location; a range check as a VLLMValidationError.
Pure data and functions: no web framework here.
"""

from __future__ import annotations

import functools
import math
from typing import Annotated, Any, Literal, Optional, Union

import pydantic
import pydantic.dataclasses
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .vllm_messages import PART_PARSERS, ChatCompletionMessageParam, materialize_tool_calls

INT64 = Annotated[int, Field(ge=-(2 ** 63), le=2 ** 63 - 1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")

    @model_validator(mode="wrap")
    @classmethod
    def __log_extra_fields__(cls, data, handler):
        """(OpenAIBaseModel's wrap validator: its name is what a union branch of these models is told as, a
        pydantic-internal marker vLLM's error words leave out)"""
        return handler(data)


class _Function(_Model):
    name: str


class _NamedToolChoice(_Model):
    function: _Function
    type: Literal["function"] = "function"


class _ToolFunction(_Model):  # (vLLM's FunctionDefinition)
    name: str
    description: Optional[str] = None
    parameters: Optional[dict[str, Any]] = None
    strict: Optional[bool] = None
    defer_loading: Optional[bool] = None


class _Tool(_Model):  # (ChatCompletionToolsParam)
    type: Literal["function"] = "function"
    function: _ToolFunction
    defer_loading: Optional[bool] = None


class JsonSchemaResponseFormat(_Model):
    name: str
    description: Optional[str] = None
    json_schema: Optional[dict[str, Any]] = Field(default=None, alias="schema")
    strict: Optional[bool] = None


class ResponseFormat(_Model):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: Optional[JsonSchemaResponseFormat] = None


class StructuralTagResponseFormat(_Model):
    type: Literal["structural_tag"]
    format: Any


class LegacyStructuralTag(_Model):
    begin: str
    structural_tag_schema: Optional[dict[str, Any]] = Field(default=None, alias="schema")
    end: str


class LegacyStructuralTagResponseFormat(_Model):
    type: Literal["structural_tag"]
    structures: list[LegacyStructuralTag]
    triggers: list[str]


# vLLM's AnyResponseFormat (entrypoints/generate/base/protocol.py), a union: a refused format gets each branch's errors
_ResponseFormat = Union[ResponseFormat, StructuralTagResponseFormat, LegacyStructuralTagResponseFormat]


class _StreamOptions(_Model):
    include_usage: Optional[bool] = True
    continuous_usage_stats: Optional[bool] = False


class _Message(_Model):
    role: str
    content: Optional[Union[str, list[dict[str, Any]]]] = None


class ChatCompletionRequest(_Model):
    messages: list[ChatCompletionMessageParam]  # (vLLM's union: a refused message gets each branch's errors)
    model: Optional[str] = None
    frequency_penalty: Optional[float] = None
    logit_bias: Optional[dict[str, float]] = None
    logprobs: Optional[bool] = False
    top_logprobs: Optional[int] = 0
    max_tokens: Optional[int] = None
    max_completion_tokens: Optional[int] = None
    n: Optional[int] = 1
    presence_penalty: Optional[float] = None
    response_format: Optional[_ResponseFormat] = None
    seed: Optional[INT64] = None
    stop: Optional[Union[str, Annotated[list[str], Field(max_length=4)]]] = None
    stream: Optional[bool] = False
    stream_options: Optional[_StreamOptions] = None
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    tools: Optional[list[_Tool]] = None
    tool_choice: Optional[Union[Literal["none"], Literal["auto"], Literal["required"], _NamedToolChoice]] = "none"
    reasoning_effort: Optional[Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]] = None
    include_reasoning: bool = True
    parallel_tool_calls: Optional[bool] = True
    user: Optional[str] = None
    use_beam_search: bool = False
    top_k: Optional[int] = None
    min_p: Optional[float] = None
    repetition_penalty: Optional[float] = None
    length_penalty: float = 1.0
    stop_token_ids: Optional[list[int]] = None
    include_stop_str_in_output: bool = False
    ignore_eos: bool = False
    min_tokens: int = 0
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    truncate_prompt_tokens: Optional[Annotated[int, Field(ge=-1, le=2 ** 63 - 1)]] = None
    prompt_logprobs: Optional[int] = None
    allowed_token_ids: Optional[list[int]] = None
    bad_words: Optional[list[str]] = None
    echo: bool = False
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    add_special_tokens: bool = False
    chat_template: Optional[str] = None
    chat_template_kwargs: Optional[dict[str, Any]] = None
    priority: INT64 = 0
    request_id: Optional[str] = None
    return_tokens_as_token_ids: Optional[bool] = None
    return_token_ids: Optional[bool] = None
    routed_experts_prompt_start: Annotated[int, Field(ge=0)] = 0
    cache_salt: Optional[Annotated[str, Field(min_length=1, max_length=1024)]] = None
    kv_transfer_params: Optional[dict[str, Any]] = None

    @model_validator(mode="after")
    def _materialize_tool_calls_after(self):
        materialize_tool_calls(self.messages or [])
        return self


class ChatTokensRequest(ChatCompletionRequest):  # prime-rl's /v1/chat/completions/tokens: the same, with ids
    messages: Optional[list[_Message]] = None  # type: ignore[assignment]
    tokens: list[int]


@pydantic.dataclasses.dataclass
class StructuredOutputsParams:  # (vLLM's dataclass in sampling_params.py, as pydantic reads it)
    json: Optional[Union[str, dict]] = None
    regex: Optional[str] = None
    choice: Optional[list[str]] = None
    grammar: Optional[str] = None
    json_object: Optional[bool] = None
    disable_any_whitespace: bool = False
    disable_additional_properties: bool = False
    whitespace_pattern: Optional[str] = None
    structural_tag: Optional[str] = None


class SamplingParamsModel(_Model):
    """SamplingParams as pydantic sees it on /inference/v1/generate (vLLM's msgspec struct)."""
    structured_outputs: Optional[StructuredOutputsParams] = None
    n: int = 1
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: Optional[int] = None
    stop: Optional[Union[str, list[str]]] = None
    stop_token_ids: Optional[list[int]] = None
    ignore_eos: bool = False
    max_tokens: Optional[int] = 16
    min_tokens: int = 0
    logprobs: Optional[int] = None
    prompt_logprobs: Optional[int] = None
    detokenize: bool = True
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    include_stop_str_in_output: bool = False
    stream_interval: Optional[int] = None
    logit_bias: Optional[dict[int, float]] = None
    allowed_token_ids: Optional[list[int]] = None
    bad_words: Optional[list[str]] = None
    routed_experts_prompt_start: int = 0


class GenerateRequest(_Model):
    request_id: Optional[str] = None
    token_ids: Annotated[list[int], Field(min_length=1)]
    sampling_params: Any  # checked as SamplingParams (sampling_errors), its errors merged in at this field
    model: Optional[str] = None
    return_token_ids: Optional[bool] = None
    output_mode: str = "tokens"
    stream: Optional[bool] = False
    stream_options: Optional[_StreamOptions] = None
    cache_salt: Optional[Annotated[str, Field(min_length=1, max_length=1024)]] = None
    priority: INT64 = 0
    kv_transfer_params: Optional[dict[str, Any]] = None

    @field_validator("token_ids")
    @classmethod
    def _no_negative_ids(cls, v: list[int]) -> list[int]:
        if any(t < 0 for t in v):
            raise ValueError("token_ids must not contain negative values")
        return v


NonNegInt = Annotated[int, Field(ge=0)]


class CompletionRequest(_Model):
    model: Optional[str] = None
    prompt: Optional[Union[list[NonNegInt], list[list[NonNegInt]], str, list[str]]] = None
    echo: Optional[bool] = False
    frequency_penalty: Optional[float] = None
    logit_bias: Optional[dict[str, float]] = None
    logprobs: Optional[int] = None
    max_tokens: Optional[int] = 16
    n: int = 1
    presence_penalty: Optional[float] = None
    seed: Optional[INT64] = None
    stop: Optional[Union[str, Annotated[list[str], Field(max_length=4)]]] = None
    stream: Optional[bool] = False
    stream_options: Optional[_StreamOptions] = None
    suffix: Optional[str] = None
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    user: Optional[str] = None
    use_beam_search: bool = False
    top_k: Optional[int] = None
    min_p: Optional[float] = None
    repetition_penalty: Optional[float] = None
    length_penalty: float = 1.0
    stop_token_ids: Optional[list[int]] = None
    include_stop_str_in_output: bool = False
    ignore_eos: bool = False
    min_tokens: int = 0
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    truncate_prompt_tokens: Optional[Annotated[int, Field(ge=-1, le=2 ** 63 - 1)]] = None
    allowed_token_ids: Optional[list[int]] = None
    prompt_logprobs: Optional[int] = None
    bad_words: Optional[list[str]] = None
    add_special_tokens: bool = True
    response_format: Optional[_ResponseFormat] = None
    priority: INT64 = 0
    request_id: Optional[str] = None
    return_tokens_as_token_ids: Optional[bool] = None
    return_token_ids: Optional[bool] = None
    routed_experts_prompt_start: Annotated[int, Field(ge=0)] = 0
    cache_salt: Optional[Annotated[str, Field(min_length=1, max_length=1024)]] = None
    kv_transfer_params: Optional[dict[str, Any]] = None


class DetokenizeRequest(_Model):
    model: Optional[str] = None
    tokens: list[Annotated[int, Field(ge=0, le=2 ** 63 - 1)]]


class TokenizeCompletionRequest(_Model):
    model: Optional[str] = None
    prompt: str
    add_special_tokens: bool = True
    return_token_strs: Optional[bool] = False


class TokenizeChatRequest(_Model):
    model: Optional[str] = None
    messages: list[_Message]
    add_generation_prompt: bool = True
    return_token_strs: Optional[bool] = False
    continue_final_message: bool = False
    add_special_tokens: bool = False
    chat_template: Optional[str] = None
    chat_template_kwargs: Optional[dict[str, Any]] = None
    tools: Optional[list[_Tool]] = None


TOKENIZE_CONFLICT = ("continue_final_message and add_generation_prompt are not compatible. Use continue_final_message "
                     "when you want the model to continue the final message, and add_generation_prompt when you want "
                     "to add a header that will prompt it to start a new assistant message instead.")


# names the fake's sampling code reads on every route: an extra of that name on a model without the field
# is ignored by vLLM, so it must not be read as its namesake (`max_completion_tokens` on /v1/completions)
NAMESAKES = ("max_completion_tokens",)


def _known(coerced: dict, body: dict, model, namesakes=NAMESAKES) -> dict:
    """The values as sent, coerced where the model has the field; unknown fields kept as sent (vLLM keeps
    and ignores them) except the `namesakes` of a field this model lacks."""
    out = {**body, **coerced}
    for name in namesakes:
        if name not in model.model_fields:
            out.pop(name, None)
    return out


def _tokenize(body: dict, chat_model: type | None = None) -> dict:
    """/tokenize takes either request (a union: the completion form first); when neither fits, the errors
    of both are reported, as pydantic reports a union."""
    try:
        parsed = TokenizeCompletionRequest.model_validate(body)
        # the completion form was taken: messages are an extra it ignores
        return _known(parsed.model_dump(exclude_unset=True), body, TokenizeCompletionRequest, ("messages",))
    except ValidationError as first:
        try:
            chat_model = chat_model or TokenizeChatRequest
            parsed = chat_model.model_validate(body)
        except ValidationError as second:
            raise validation_error(_errors(first) + _errors(second)) from None
    if parsed.continue_final_message and parsed.add_generation_prompt:
        raise RequestError(TOKENIZE_CONFLICT, "BadRequestError", None)
    return _known(parsed.model_dump(exclude_unset=True), body, chat_model, ("prompt",))


MODELS = {"chat": ChatCompletionRequest, "chat_tokens": ChatTokensRequest, "generate": GenerateRequest,
          "completions": CompletionRequest, "detokenize": DetokenizeRequest}


# vLLM 0.33's request models where they differ from 0.32's (read from the 0.33.0 wheel's protocol modules):
# skip_special_tokens may be null (the server's default then), and return_weight_versions is a field
class ChatCompletionRequest033(ChatCompletionRequest):
    skip_special_tokens: Optional[bool] = None
    return_weight_versions: bool = False


class CompletionRequest033(CompletionRequest):
    skip_special_tokens: Optional[bool] = None
    return_weight_versions: bool = False


class TokenizeChatRequest034(TokenizeChatRequest):
    response_format: Optional[_ResponseFormat] = None  # (0.34: /tokenize renders it into the template)


VERSION_MODELS = {"0.33": {"chat": ChatCompletionRequest033, "completions": CompletionRequest033},
                  "0.34": {"chat": ChatCompletionRequest033, "completions": CompletionRequest033,
                           "tokenize_chat": TokenizeChatRequest034}}


def _minor(version: str | None) -> str:
    return ".".join((version or "").split(".")[:2])


def models_for(version: str | None) -> dict:
    """The request models of vLLM `version` ("0.33.0"): 0.32's, with a later version's own where it has them."""
    return {**MODELS, **VERSION_MODELS.get(_minor(version), {})}

# -- the error, as vLLM's handler words it ------------------------------------------------------------------

INTERNAL = {"function-wrap", "function-after", "function-before", "function-plain", "json-or-python",
            "lax-or-strict", "chain", "default", "nullable", "tagged-union", "union", "call", "arguments",
            "is-instance", "is-subclass", "callable", "str", "int", "float", "bool", "bytes", "bytearray", "list",
            "tuple", "dict", "set", "frozenset", "complex", "none", "nonetype", "constrained-str", "constrained-int"}


class RequestError(Exception):
    """A request vLLM refuses: `body` is the JSON it answers, with status 400."""

    def __init__(self, message: str, type_: str, param: str | None):
        super().__init__(message)
        self.body = {"error": {"message": message, "type": type_, "param": param, "code": 400}}


def _clean_loc(loc) -> str:
    parts = [str(p) for p in loc if not any(c in str(p) for c in "[]{}()") and str(p).lower() not in INTERNAL]
    return ".".join(parts) if parts else ".".join(str(p) for p in loc)


def _input(value) -> str:
    if isinstance(value, str):
        return value[:200] + "...[truncated]" if len(value) > 200 else value
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        return f"<{type(value).__name__} of {len(value)} items>"
    text = str(value)
    return text[:200] + "...[truncated]" if len(text) > 200 else text


def _line(err: dict) -> str:
    out = {"type": err["type"], "loc": err["loc"], "msg": err["msg"], "input": _input(err.get("input"))}
    if err.get("ctx"):
        out["ctx"] = {k: (v if isinstance(v, (str, int, float)) else str(v)) for k, v in err["ctx"].items()}
    text = str(out)
    return text[:1000] + "...[truncated]" if len(text) > 1000 else text


def validation_error(errors: list[dict]) -> RequestError:
    """FastAPI's RequestValidationError as vLLM answers it (errors: pydantic's, loc already dotted)."""
    label = "error" if len(errors) == 1 else "errors"
    lines = "".join(f"  {_line(e)}\n" for e in errors[:10])
    if len(errors) > 10:
        lines += f"  ...and {len(errors) - 10} more {label}\n"
    return RequestError(f"{len(errors)} validation {label}:\n{lines}".rstrip(), "Bad Request", errors[0]["loc"])


def _errors(exc: ValidationError, prefix: tuple = ("body",)) -> list[dict]:
    return [{**e, "loc": _clean_loc(prefix + tuple(e["loc"]))} for e in exc.errors(include_url=False)]


# SamplingParams._verify_args, in its order: (field, refuses(value, params), message, parameter)
def _f(v) -> str:
    return str(float(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


RANGES = [
    ("presence_penalty", lambda v, p: not -2.0 <= v <= 2.0, "presence_penalty must be in [-2, 2], got {v}.", None),
    ("frequency_penalty", lambda v, p: not -2.0 <= v <= 2.0, "frequency_penalty must be in [-2, 2], got {v}.", None),
    ("repetition_penalty", lambda v, p: not math.isfinite(v), "repetition_penalty must be a finite number, got {v}.",
     None),
    ("repetition_penalty", lambda v, p: v <= 0.0, "repetition_penalty must be greater than zero, got {v}.", None),
    ("temperature", lambda v, p: not math.isfinite(v), "temperature must be a finite number, got {v}.", "temperature"),
    ("temperature", lambda v, p: v < 0.0, "temperature must be non-negative, got {v}.", "temperature"),
    ("temperature", lambda v, p: v > 2.0, "temperature must be in [0, 2], got {v}.", "temperature"),
    ("top_p", lambda v, p: not 0.0 < v <= 1.0, "top_p must be in (0, 1], got {v}.", "top_p"),
    ("top_k", lambda v, p: v < -1, "top_k must be 0 (disable), or at least 1, got {v}.", None),
    ("min_p", lambda v, p: not 0.0 <= v <= 1.0, "min_p must be in [0, 1], got {v}.", None),
    ("max_tokens", lambda v, p: v is not None and v < 1, "max_tokens must be at least 1, got {v}.", "max_tokens"),
    ("min_tokens", lambda v, p: v < 0, "min_tokens must be greater than or equal to 0, got {v}.", None),
    ("min_tokens", lambda v, p: p.get("max_tokens") is not None and v > p["max_tokens"],
     "min_tokens must be less than or equal to max_tokens={max_tokens}, got {v}.", None),
    ("stream_interval", lambda v, p: v is not None and v < 1, "stream_interval must be at least 1, got {v}.",
     "stream_interval"),
    ("stop", lambda v, p: any(not s for s in ([v] if isinstance(v, str) else v or [])),
     "stop cannot contain an empty string.", None),
    ("bad_words", lambda v, p: any(not w for w in v or []),
     "bad_words cannot contain an empty string. Got bad_words={v}", None),
]
FLOATS = {"presence_penalty", "frequency_penalty", "repetition_penalty", "temperature", "top_p", "min_p"}
DEFAULTS = {"presence_penalty": 0.0, "frequency_penalty": 0.0, "repetition_penalty": 1.0, "temperature": 1.0,
            "top_p": 1.0, "top_k": 0, "min_p": 0.0, "min_tokens": 0}


def check_ranges(params: dict) -> None:
    """SamplingParams' own checks on coerced values (missing ones take SamplingParams' defaults)."""
    values = {**DEFAULTS, **{k: v for k, v in params.items() if v is not None or k in ("max_tokens",)}}
    for name, refuses, message, parameter in RANGES:
        v = values.get(name)
        if name not in values or (v is None and name not in ("max_tokens", "stream_interval")):
            continue
        try:
            bad = refuses(v, values)
        except TypeError:
            continue
        if bad:
            shown = _f(v) if name in FLOATS else v
            text = message.format(v=shown, max_tokens=values.get("max_tokens"))
            if parameter is not None:
                text += f" (parameter={parameter}, value={shown})"
            raise RequestError(text, "BadRequestError", parameter)


def _refuse(message: str, parameter: str | None = None, value=None) -> RequestError:
    """A VLLMValidationError as vLLM answers it: its text with `(parameter=…, value=…)`."""
    extras = [f"parameter={parameter}"] * (parameter is not None) + [f"value={value}"] * (value is not None)
    return RequestError(f"{message} ({', '.join(extras)})" if extras else message, "BadRequestError", parameter)


def _cache_salt(d: dict) -> None:
    salt = d.get("cache_salt")
    if salt is None:
        return
    if not isinstance(salt, str) or not salt:
        raise _refuse("Parameter 'cache_salt' must be a non-empty string if provided.", "cache_salt")
    if len(salt) > 128 or any(c in salt for c in "@/\\\0"):
        raise _refuse("Parameter 'cache_salt' must be at most 128 characters and must not contain '@', '/', "
                      "'\\\\', or NUL.", "cache_salt")


def _response_format(d: dict) -> None:
    rf = d.get("response_format")
    if isinstance(rf, dict) and rf.get("type") == "json_schema" and rf.get("json_schema") is None:
        raise _refuse("When response_format type is 'json_schema', the 'json_schema' field must be provided.",
                      "response_format")


def _stream_options(d: dict) -> None:
    if d.get("stream_options") and not d.get("stream"):
        raise _refuse("Stream options can only be defined when `stream=True`.", "stream_options")


def _counts(d: dict, count: str) -> None:
    """The logprob counts both request models check alike, in their order: `prompt_logprobs` and the
    sample count (`top_logprobs` on chat, `logprobs` on completions)."""
    for name in ("prompt_logprobs", count):
        v = d.get(name)
        if v is not None and not isinstance(v, (int, float)):
            raise _refuse(f"`{name}` must be an integer.", name, v)
    pl = d.get("prompt_logprobs")
    if pl is not None:
        if d.get("stream") and (pl > 0 or pl == -1):
            raise _refuse("`prompt_logprobs` are not available when `stream=True`.", "prompt_logprobs")
        if pl < 0 and pl != -1:
            raise _refuse("`prompt_logprobs` must be a positive value or -1.", "prompt_logprobs", pl)
    v = d.get(count)
    if v is not None and v < 0 and v != -1:
        raise _refuse(f"`{count}` must be a positive value or -1.", count, v)


def _logprobs(d: dict) -> None:
    """ChatCompletionRequest's check_logprobs."""
    if d.get("logprob_token_ids") and not d.get("logprobs"):
        raise _refuse("when using `logprob_token_ids`, `logprobs` must be set to true.", "logprob_token_ids")
    _counts(d, "top_logprobs")
    tl = d.get("top_logprobs")
    if tl is not None and (tl == -1 or tl > 0) and not d.get("logprobs"):
        raise _refuse("when using `top_logprobs`, `logprobs` must be set to true.", "top_logprobs")


def template_tools(tools: list | None) -> list | None:
    """The tools as vLLM hands them to the chat template (recorded from its rendered prompts): each function
    written back as `name`, `description`, `parameters` (null when not given), then `strict` when given;
    other keys dropped."""
    if not tools:
        return tools
    out = []
    for tool in tools:
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict):
            return tools  # (the request models refuse it first)
        written = {"name": fn.get("name"), "description": fn.get("description"), "parameters": fn.get("parameters")}
        if fn.get("strict") is not None:
            written["strict"] = fn["strict"]
        out.append({"type": "function", "function": written})
    return out


def prompt_cut(prompt_ids: list[int], truncate_prompt_tokens) -> list[int]:
    """`truncate_prompt_tokens: k` keeps the prompt's last k tokens (recorded)."""
    if isinstance(truncate_prompt_tokens, int) and not isinstance(truncate_prompt_tokens, bool) \
            and truncate_prompt_tokens > 0:
        return prompt_ids[-truncate_prompt_tokens:]
    return prompt_ids


STRUCTURED_KINDS = ("json", "regex", "choice", "grammar", "json_object", "structural_tag")


def engine_checks(params: dict, vocab: int) -> RequestError | None:
    """What vLLM checks once a request is sampling params, before the engine takes it (recorded words):
    one kind of structured output, token ids inside the vocabulary, allowed_token_ids not empty."""
    so = params.get("structured_outputs")
    if isinstance(so, dict) and sum(so.get(k) is not None for k in STRUCTURED_KINDS) > 1:
        return RequestError("You can only use one kind of constraints for structured outputs ('json', 'regex' or "
                            "'choice').", "BadRequestError", None)
    for name, ids in (("stop_token_ids", params.get("stop_token_ids")),
                      ("logit_bias", [int(k) for k in params["logit_bias"] if str(k).lstrip("-").isdigit()]
                       if isinstance(params.get("logit_bias"), dict) else None)):
        bad = [t for t in ids or [] if isinstance(t, int) and not 0 <= t < vocab]
        if bad:
            return _refuse(f"token_id(s) {bad} in {name} contain out-of-vocab token ids. Vocabulary size: {vocab}",
                           name, bad)
    allowed = params.get("allowed_token_ids")
    if allowed is not None and not allowed:
        return _refuse("allowed_token_ids is not None and empty!", "allowed_token_ids", [])
    if allowed and any(isinstance(t, int) and not 0 <= t < vocab for t in allowed):
        return _refuse("allowed_token_ids contains out-of-vocab token id!", "allowed_token_ids", allowed)
    return None


# how each version reads `tools` and a named `tool_choice` (ChatCompletionRequest.check_tool_usage): whether
# `tools: []` is refused or taken as omitted (0.34), and the words for a named tool not among the tools
TOOL_RULES = {"": {"empty_tools": "refuse",
                   "not_in_tools": "The tool specified in `tool_choice` does not match any of the specified `tools`"},
              "0.34": {"empty_tools": "omitted",
                       "not_in_tools": "The tool `{name}` specified in `tool_choice` does not match any of the "
                                       "specified `tools`"}}
_CORRECT_USAGE = 'Correct usage: `{"type": "function", "function": {"name": "my_function"}}`'


def _tool_usage(d: dict, rules: dict = TOOL_RULES[""]) -> None:
    if d.get("tools") == []:
        if rules["empty_tools"] == "refuse":
            raise _refuse("`tools` must not be an empty array. Either provide at least one tool or omit the field "
                          "entirely.", "tools")
        if not isinstance(d.get("tool_choice"), dict):  # as omitted: auto and required fall back to none
            d["tools"] = None
            if d.get("tool_choice") in ("auto", "required"):
                d["tool_choice"] = "none"
    choice = d.get("tool_choice", "auto" if d.get("tools") else None)
    if choice is None or choice == "none":
        return
    if d.get("tools") is None:
        raise _refuse("When using `tool_choice`, `tools` must be set.", "tool_choice")
    if choice not in ("auto", "required") and not isinstance(choice, dict):
        raise _refuse(f"Invalid value for `tool_choice`: {choice}! Only named tools, \"none\", \"auto\" or "
                      f"\"required\" are supported.", "tool_choice")
    if isinstance(choice, dict):
        function = choice.get("function")
        if not isinstance(function, dict):
            raise _refuse(f"Invalid value for `function`: `{function}` in `tool_choice`! {_CORRECT_USAGE}",
                          "tool_choice.function")
        if "name" not in function:
            raise _refuse(f"Expected field `name` in `function` in `tool_choice`! {_CORRECT_USAGE}",
                          "tool_choice.function.name")
        name = function["name"]
        if not isinstance(name, str) or not name:
            raise _refuse(f"Invalid `name` in `function`: `{name}` in `tool_choice`! {_CORRECT_USAGE}",
                          "tool_choice.function.name")
        if isinstance(d.get("tools"), list) and not any(
                isinstance(t, dict) and isinstance(t.get("function"), dict) and t["function"].get("name") == name
                for t in d["tools"]):
            raise _refuse(rules["not_in_tools"].format(name=name), "tool_choice")

def _completion_logprobs(d: dict) -> None:
    """CompletionRequest's check_logprobs: `logprobs` counts, as `prompt_logprobs` does."""
    if d.get("logprob_token_ids") and d.get("logprobs") is None:
        raise _refuse("when using `logprob_token_ids`, `logprobs` must be set.", "logprob_token_ids")
    _counts(d, "logprobs")


def _prompt_given(d: dict) -> None:
    prompt = d.get("prompt")
    if (prompt is None or prompt == "") and not d.get("prompt_embeds"):
        raise _refuse("Either prompt or prompt_embeds must be provided and non-empty.", "prompt")


def _null_max_tokens(d: dict) -> None:
    if d.get("max_tokens", 0) is None:  # CompletionRequest's normalize_null_max_tokens: null means the default
        d["max_tokens"] = 16


def _generation_prompt(d: dict) -> None:
    if d.get("continue_final_message") and d.get("add_generation_prompt"):
        raise _refuse("Cannot set both `continue_final_message` and `add_generation_prompt` to True.")


# the request models' before-validators, in the order pydantic runs them (the last defined first)
def _normalize_messages(d: dict) -> None:
    """ChatCompletionRequest's _normalize_messages_before: tool_calls read into a list (a value that is not
    iterable fails in Python's words), reasoning_content renamed reasoning."""
    messages = d.get("messages")
    for msg in messages if isinstance(messages, list) else []:
        if not isinstance(msg, dict):
            continue
        calls = msg.get("tool_calls")
        if calls is not None and not isinstance(calls, list):
            try:
                msg["tool_calls"] = list(calls)
            except TypeError as exc:
                raise RequestError(str(exc), "BadRequestError", None) from None
        reasoning = msg.pop("reasoning_content", None)
        if reasoning is not None and msg.get("reasoning") is None:
            msg["reasoning"] = reasoning


BEFORE = {"chat": [_generation_prompt, _tool_usage, _logprobs, _stream_options, _response_format, _normalize_messages,
                   _cache_salt],
          "generate": [_cache_salt], "detokenize": [],
          "completions": [_prompt_given, _stream_options, _completion_logprobs, _response_format, _null_max_tokens,
                          _cache_salt]}
BEFORE["chat_tokens"] = BEFORE["chat"]


@functools.lru_cache(maxsize=None)
def before_rules(route: str, version: str | None) -> tuple:
    """BEFORE[route], each rule set up as vLLM `version` runs it (TOOL_RULES)."""
    tools = TOOL_RULES.get(_minor(version), TOOL_RULES[""])
    return tuple(functools.partial(r, rules=tools) if r is _tool_usage else r for r in BEFORE[route])
PART_TYPES = {"text", "image_url", "input_audio", "file", "video_url", "audio_url", "image_embeds", "image_pil",
              "input_image", "input_text", "refusal", "thinking", "video", "audio", "image"}


def _messages(messages: list) -> None:
    """What vLLM's message union refuses after the fields parse: content null outside an assistant turn,
    a content part of a type no message part has."""
    for i, m in enumerate(messages or []):
        content = m.get("content")
        if content is None and m.get("role") not in ("assistant", "function"):
            raise validation_error([{"type": "string_type", "loc": f"body.messages.{i}.content",
                                     "msg": "Input should be a valid string", "input": None}])
        for part in content if isinstance(content, list) else []:
            if part.get("type") not in PART_TYPES:
                raise RequestError(f"validation errors for ValidatorIterator\n{i}.ChatCompletionContentPartTextParam"
                                   f".type\n  Input should be 'text' [type=literal_error, input_value="
                                   f"{part.get('type')!r}, input_type={type(part.get('type')).__name__}]",
                                   "BadRequestError", None)


# the pydantic each recorded vLLM ran on (the version its error texts link to)
PYDANTIC = {"0.30": "2.14", "0.31": "2.13", "0.32": "2.14"}
_OUR_PYDANTIC = ".".join(pydantic.VERSION.split(".")[:2])


def _content_parts(messages: list, version: str | None) -> None:
    """A message's content parts, validated lazily by the openai branch of the union, as vLLM reads them when it
    renders the chat: the first refused part raises pydantic's own text of the iterator's errors."""
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        if content is None or isinstance(content, str):
            continue
        parts = []
        try:
            for part in content:  # (each part read, then parsed by its type, as vLLM renders them)
                parser = PART_PARSERS.get(part.get("type")) if isinstance(part, dict) else None
                if parser is not None:
                    parser(part)
                parts.append(part)
        except ValidationError as exc:
            text = str(exc).replace(f"errors.pydantic.dev/{_OUR_PYDANTIC}/",
                                    f"errors.pydantic.dev/{PYDANTIC.get(_minor(version), '2.14')}/")
            raise RequestError(text, "BadRequestError", None) from None
        m["content"] = parts


def validate(route: str, body: Any, version: str | None = None) -> dict:
    """The request as vLLM `version` reads it (values coerced as pydantic's lax mode does; only the fields
    sent), or RequestError with vLLM's answer. Routes: chat, chat_tokens, generate, completions, tokenize,
    detokenize."""
    if route == "tokenize":
        return _tokenize(body, models_for(version).get("tokenize_chat"))
    model = models_for(version)[route]
    for rule in before_rules(route, version):
        rule(body)
    try:
        parsed, errors = model.model_validate(body, from_attributes=True), []  # (as FastAPI reads a body)
    except ValidationError as exc:
        parsed, errors = None, _errors(exc)
    if route == "generate" and isinstance(body, dict) and "sampling_params" in body:
        errors = _merged(errors, sampling_errors(body["sampling_params"]), list(model.model_fields))
    if errors:
        raise validation_error(errors)
    out = _known(parsed.model_dump(exclude_unset=True, exclude={"messages"}), body, model)  # (messages as sent)
    if route == "chat":
        _content_parts(parsed.messages, version)
    elif route == "chat_tokens":
        _messages(out.get("messages"))
    if route in ("chat", "chat_tokens", "completions"):
        check_ranges(chat_sampling(out))
    if route == "generate":
        sp = body["sampling_params"]
        coerced = SamplingParamsModel.model_validate(sp).model_dump(exclude_unset=True)
        out["sampling_params"] = _known(coerced, sp, SamplingParamsModel)
        so = coerced.get("structured_outputs")
        if isinstance(so, dict) and sum(so.get(k) is not None for k in STRUCTURED_KINDS) < 1:
            fields = {**so, "_backend": None, "_backend_was_auto": False}  # (its __post_init__ prints __dict__)
            raise RequestError("You must use one kind of structured outputs constraint but none are specified: "
                               f"{fields}", "BadRequestError", None)
        if any(isinstance(v, int) and not -(2 ** 63) <= v < 2 ** 64 for v in coerced.values()):
            raise RequestError(MSGSPEC_INT, "BadRequestError", None)  # (the engine client's msgspec encoding)
        check_ranges({"max_tokens": 16, **coerced})
        if coerced.get("detokenize") is False and coerced.get("stop"):
            raise RequestError("stop strings are only supported when detokenize is True. Set detokenize=True to use "
                               "stop.", "BadRequestError", None)
    return out


MSGSPEC_INT = "can't serialize ints < -2**63 or > 2**64 - 1"


def sampling_errors(sp: Any) -> list[dict]:
    """GenerateRequest's `sampling_params` as pydantic reads a SamplingParams: an instance, or else fields
    from a dict; when neither fits, both branches' errors (recorded from vLLM 0.32)."""
    head = {"type": "is_instance_of", "loc": "body.sampling_params", "msg": "Input should be an instance of "
            "SamplingParams", "input": sp, "ctx": {"class": "SamplingParams"}}
    if not isinstance(sp, dict):
        return [head, {"type": "dict_type", "loc": "body.sampling_params", "msg": "Input should be a valid "
                       "dictionary", "input": sp}]
    try:
        SamplingParamsModel.model_validate(sp)
    except ValidationError as exc:
        return [head, *_errors(exc, ("body", "sampling_params"))]
    return []


def _merged(errors: list[dict], field_errors: list[dict], fields: list[str]) -> list[dict]:
    """One field's errors set among the model's others, in field order (as pydantic lists them)."""
    def position(e: dict) -> int:
        name = e["loc"].split(".")[1] if e["loc"].count(".") else ""
        return fields.index(name) if name in fields else -1
    return sorted([e for e in errors if position(e) != fields.index("sampling_params")] + field_errors, key=position)


def chat_sampling(body: dict) -> dict:
    """The SamplingParams a chat request builds (its values, coerced), for `check_ranges`."""
    keys = ("presence_penalty", "frequency_penalty", "repetition_penalty", "temperature", "top_p", "top_k", "min_p",
            "min_tokens", "stop", "bad_words")
    out = {k: body[k] for k in keys if body.get(k) is not None}
    mt = body.get("max_completion_tokens", body.get("max_tokens"))
    out["max_tokens"] = mt
    return out
