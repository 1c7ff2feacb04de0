"""Dynamo's request rules: the typed Rust structs serde deserializes a request into (async-openai's
CreateChatCompletionRequest, Dynamo's flattened extensions and `nvext`), then Dynamo's own validation pass
in its words ("Validation: ..."). Read from ai-dynamo/dynamo (lib/llm/src/protocols/openai: chat_completions,
common_ext, nvext, validate.rs) and held to Dynamo 1.6.1's recorded answers (cassettes/hostile/random).

`deserialize_chat(body, raw)` then `validate_chat(body, model)` (a frontend answers in between when its
worker is away), and `check_generate(body, raw)`, return None or (status, error JSON).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np

from .serde import SerdeError, check, key_end, located, unexpected, where
from .shape import json_type

S, B = "string", "bool"


def opt(t):
    return ("option", t)


def struct(name: str, fields: dict, deny: bool = False):
    return ("struct", name, {k: opt(v) for k, v in fields.items()}, deny)


def required(name: str, fields: dict, optional: dict | None = None):
    """A struct whose `fields` serde requires ("missing field `x`") beside `optional` ones."""
    return ("struct", name, {**fields, **{k: opt(v) for k, v in (optional or {}).items()}}, False)


TOOL_TYPE = ("variants", "ChatCompletionToolType", ["function"])
FUNCTION = required("FunctionObject", {"name": S}, {"description": S, "parameters": "any", "strict": B})
TOOL = required("ChatCompletionTool", {"type": TOOL_TYPE, "function": FUNCTION})
NAMED_CHOICE = required("ChatCompletionNamedToolChoice", {"type": TOOL_TYPE,
                                                          "function": required("FunctionName", {"name": S})})
TOOL_CHOICE = ("untagged", "ChatCompletionToolChoiceOption",
               [("variants", "ChatCompletionToolChoiceMode", ["none", "auto", "required"]), NAMED_CHOICE])
STOP = ("untagged", "Stop", [S, ("seq", S), ("seq", "u32")])
PART = ("tagged", "ChatCompletionRequestUserMessageContentPart", "type", {
    "text": required("ChatCompletionRequestMessageContentPartText", {"text": S}),
    "image_url": struct("ChatCompletionRequestMessageContentPartImage", {"image_url": required(
        "ImageUrl", {"url": S}, {"detail": "any", "uuid": "any"})}),
    "input_audio": struct("ChatCompletionRequestMessageContentPartAudio", {"input_audio": "any"}),
    "video_url": struct("ChatCompletionRequestMessageContentPartVideo", {"video_url": "any"}),
    "audio_url": struct("ChatCompletionRequestMessageContentPartAudioUrl", {"audio_url": "any"})})
USER_CONTENT = ("untagged", "ChatCompletionRequestUserMessageContent", [S, ("seq", PART)])
TEXT_PART = required("ChatCompletionRequestMessageContentPartText", {"text": S})
TEXT_PARTS = ("tagged", "ChatCompletionRequestSystemMessageContentPart", "type", {"text": TEXT_PART})
ASSISTANT_PARTS = ("tagged", "ChatCompletionRequestAssistantMessageContentPart", "type", {
    "text": TEXT_PART, "refusal": required("ChatCompletionRequestMessageContentPartRefusal", {"refusal": S})})
TOOL_CALL = required("ChatCompletionMessageToolCall", {"id": S, "type": TOOL_TYPE, "function": required(
    "FunctionCall", {"name": S, "arguments": S})})
# each message role's struct (async-openai's, role the tag): its fields in declared order, required or optional
MESSAGE = {
    "system": required("ChatCompletionRequestSystemMessage", {"content": (
        "untagged", "ChatCompletionRequestSystemMessageContent", [S, ("seq", TEXT_PARTS)])}, {"name": S}),
    "developer": required("ChatCompletionRequestDeveloperMessage", {"content": (
        "untagged", "ChatCompletionRequestDeveloperMessageContent", [S, ("seq", TEXT_PARTS)])}, {"name": S}),
    "user": required("ChatCompletionRequestUserMessage", {"content": USER_CONTENT}, {"name": S}),
    "assistant": required("ChatCompletionRequestAssistantMessage", {}, {
        "content": ("untagged", "ChatCompletionRequestAssistantMessageContent", [S, ("seq", ASSISTANT_PARTS)]),
        "refusal": S, "name": S, "audio": "any", "tool_calls": ("seq", TOOL_CALL), "function_call": "any",
        "reasoning_content": ("untagged", "ReasoningContent", [S, ("seq", S)]),
        "reasoning": ("untagged", "ReasoningContent", [S, ("seq", S)])}),
    "tool": required("ChatCompletionRequestToolMessage", {"content": (
        "untagged", "ChatCompletionRequestToolMessageContent", [S, ("seq", TEXT_PARTS)]), "tool_call_id": S}),
    "function": required("ChatCompletionRequestFunctionMessage", {"name": S}, {"content": S}),
}
RESPONSE_FORMAT = ("tagged", "ResponseFormat", "type", {
    "text": struct("Text", {}), "json_object": struct("JsonObject", {}),
    "json_schema": required("JsonSchema", {"json_schema": required("ResponseFormatJsonSchema", {
        "name": S, "schema": "any"}, {"description": S, "strict": B})})})
AGENT_HINTS = struct("AgentHints", {"priority": "i32", "latency_sensitivity": "f64", "osl": "u32",
                                    "speculative_prefill": B})  # (the order a sequence fills them in, recorded)
ROUTING_CONSTRAINTS = struct("RoutingConstraints", {"required_taints": ("seq", S), "preferred_taints": ("map", "f32")},
                             deny=True)  # (Dynamo's lib/llm protocols: request-level taint constraints)
NVEXT = ("struct", "NvExt", {k: opt(v) for k, v in {
    "greed_sampling": B, "use_raw_prompt": B, "annotations": ("seq", S), "backend_instance_id": "u64",
    "token_data": ("seq", "u32"), "max_thinking_tokens": "u32", "cache_salt": S, "extra_fields": ("seq", S),
    "metadata_upload": "any", "prefill_worker_id": "u64", "decode_worker_id": "u64", "dp_rank": "u32",
    "prefill_dp_rank": "u32", "agent_hints": AGENT_HINTS, "request_timestamp_ms": "any",
    "routing_constraints": ROUTING_CONSTRAINTS, "router": "any"}.items()}, True)

# NvCreateChatCompletionRequest's fields (async-openai's, Dynamo's flattened CommonExt and chat extensions)
CHAT = {
    "messages": ("seq", "any"), "model": S, "store": B, "reasoning_effort": ("variants", "ReasoningEffort",
                                                                           ["none", "minimal", "low", "medium", "high"]),
    "metadata": "any", "frequency_penalty": "f32", "logit_bias": ("map", "any"), "logprobs": B, "top_logprobs": "u8",
    "max_tokens": "u32", "max_completion_tokens": "u32", "n": "u8", "modalities": "any", "prediction": "any",
    "audio": "any", "presence_penalty": "f32", "response_format": RESPONSE_FORMAT, "seed": "i64", "service_tier": "any",
    "stop": STOP, "stream": B, "stream_options": struct("ChatCompletionStreamOptions", {"include_usage": B,
                                                                                          "continuous_usage_stats": B}),
    "temperature": "f32", "top_p": "f32", "tools": ("seq", TOOL), "tool_choice": TOOL_CHOICE,
    "parallel_tool_calls": B, "user": S, "function_call": "any", "functions": "any", "web_search_options": "any",
    "prompt_cache_key": S, "nvext": NVEXT, "ignore_eos": B, "min_tokens": "u32", "top_k": "i32", "min_p": "f32",
    "repetition_penalty": "f32", "include_stop_str_in_output": B, "guided_json": "any", "guided_regex": S,
    "guided_grammar": S, "guided_choice": ("seq", S), "guided_decoding_backend": S, "guided_whitespace_pattern": S,
    "chat_template_args": ("map", "any"), "chat_template_kwargs": ("map", "any"), "skip_special_tokens": B,
    "add_generation_prompt": B, "continue_final_message": B, "mm_processor_kwargs": "any",
    "prompt_logprobs": "u32", "thinking": "any", "return_tokens_as_token_ids": B,
}
# the extra fields Dynamo passes on to the worker, each read as this type (validate_no_unsupported_fields's
# serde_json::from_value and is_string/is_boolean checks), refused in these words
PASSTHROUGH = {
    "cache_salt": (S, "`cache_salt` must be a string"),
    "stop_token_ids": (("seq", "u32"), "`stop_token_ids` must be an array of token IDs"),
    "detokenize": (B, "`detokenize` must be a boolean"),
    "allowed_token_ids": (("seq", "u32"), "`allowed_token_ids` must be an array of token IDs"),
    "bad_words_token_ids": (("seq", ("seq", "u32")), "`bad_words_token_ids` must be an array of token ID arrays"),
}
# how serde reads them: the struct's own fields where they stand, then each flattened member from the buffered body in
# declaration order (async-openai's request, then CommonExt, then the chat extensions), each in the body's order
DIRECT = ("nvext", "return_tokens_as_token_ids")
COMMON_EXT = ("ignore_eos", "min_tokens", "top_k", "min_p", "repetition_penalty", "include_stop_str_in_output",
              "guided_json", "guided_regex", "guided_grammar", "guided_choice", "guided_decoding_backend",
              "guided_whitespace_pattern", "skip_special_tokens")
CHAT_EXT = ("chat_template_args", "chat_template_kwargs", "add_generation_prompt", "continue_final_message",
            "mm_processor_kwargs", "prompt_logprobs", "thinking")


def _member(key: str) -> int:
    return 0 if key in DIRECT else 2 if key in COMMON_EXT else 3 if key in CHAT_EXT else 1


ROLES = ("developer", "system", "user", "assistant", "tool", "function")


def rust_f32(v) -> str:
    """A number as Rust prints an f32 (`3`, `0.5`, `18446744000000000000`)."""
    with np.errstate(over="ignore"):  # (past f32's range: `inf`, as Rust prints it)
        return np.format_float_positional(np.float32(v), trim="-")


def _deserialize(message: str) -> tuple[int, dict]:
    return 400, {"message": f"Failed to deserialize the JSON body into the target type: {message}",
                 "type": "Bad Request", "code": 400}


def _messages(messages: list) -> SerdeError | None:
    for k, m in enumerate(messages):
        if not isinstance(m, dict):
            return SerdeError(f"invalid type: {unexpected(m)}, expected internally tagged enum Wire", ("messages", k))
        role = m.get("role")
        if isinstance(role, int) and not isinstance(role, bool) and role >= 0:  # a variant's index names it
            if role >= len(ROLES):
                return SerdeError(f"invalid value: integer `{role}`, expected variant index 0 <= i < {len(ROLES)}",
                                  ("messages", k, "role"))
            m["role"] = role = ROLES[role]
        elif role is not None and not isinstance(role, str):
            return SerdeError(f"invalid type: {unexpected(role)}, expected variant identifier", ("messages", k, "role"))
        if role is None:
            return SerdeError("missing field `role`", ("messages", k), ())
        if role not in ROLES and isinstance(role, str):
            return SerdeError("unknown variant `%s`, expected one of %s" % (role, ", ".join(f"`{r}`" for r in ROLES)),
                              ("messages", k), ())
        bad = _tool_calls(m.get("tool_calls"), k) if role == "assistant" else None
        if bad is not None:
            return bad
        try:  # the rest read into the role's struct (told at the body's end: messages are in a flattened member)
            check({f: v for f, v in m.items() if f != "role"}, MESSAGE[role], ("messages", k))
        except SerdeError as e:
            return SerdeError(e.reason, e.path, ())
    return None


def duplicate_field(body: dict, raw: str, fields: dict) -> tuple[int, dict] | None:
    """A field of the request sent twice: serde refuses it (told at the body's end: the fields are buffered for
    the flattened members), where Python's parser keeps the last."""
    if not any(raw.count(json.dumps(k)) > 1 for k in body if k in fields):
        return None
    seen: set[str] = set()
    for key, _ in json.loads(raw, object_pairs_hook=lambda pairs: pairs):
        if key in seen and key in fields:
            return _deserialize(f"duplicate field `{key}` at {where(raw)}")
        seen.add(key)
    return None


def _tool_calls(calls, k: int) -> SerdeError | None:
    """What Dynamo's own deserializers of a tool call say (its `type` takes a string or a map, its `arguments` a
    string or an object), before the rest of the call is read."""
    for j, call in enumerate(calls if isinstance(calls, list) else []):
        if not isinstance(call, dict):
            continue
        kind = call.get("type")
        if "type" in call and not isinstance(kind, (str, dict)):
            return SerdeError(f"invalid type: {unexpected(kind)}, expected string or map", ("messages", k), ())
        args = (call.get("function") or {}).get("arguments") if isinstance(call.get("function"), dict) else None
        if args is not None and not isinstance(args, (str, dict)):
            return SerdeError(f"expected string or object for `arguments`, got {json.dumps(args)}", ("messages", k), ())
    return None


def deserialize_chat(body: dict, raw: str) -> tuple[int, dict] | None:
    """serde's part: the request read into NvCreateChatCompletionRequest. A role given as a variant index
    (serde takes `1` for `system`) is written back as its name."""
    twice = duplicate_field(body, raw, CHAT)
    if twice:
        return twice
    members: list[list[str]] = [[], [], [], []]  # each member's fields, in the body's order
    for key in body:
        if key in CHAT:
            members[_member(key)].append(key)
    for member, keys in enumerate(members):
        if member == 2:  # the request's own required fields, once its members are read
            for name in ("messages", "model"):
                if name not in body:
                    return _deserialize(f"missing field `{name}` at {where(raw)}")
        for key in keys:
            value, t = body[key], CHAT[key]
            try:
                check(value, opt(t) if key not in ("messages", "model") else t, (key,))
            except SerdeError as e:
                if e.path == (key,) and isinstance(t, tuple) and t[0] == "map":  # (a map is told where it stands)
                    return _deserialize(f"{e.reason} at {where(raw, (key,))}")
                return _deserialize(located(e, raw, flattened=member > 0))
            if key == "messages":
                bad = _messages(value)
                if bad is not None:
                    return _deserialize(located(bad, raw, flattened=True))
    return None


@dataclass(frozen=True)
class ChatRules:
    """What differs between Dynamo versions in the chat request path (each row recorded from that version)."""

    null_passthrough_absent: bool  # `"stop_token_ids": null` (any passthrough field) is as if absent
    logit_bias_keys: bool  # logit_bias keys must read as u32 token ids
    tools_empty_refused: bool  # `tools: []` is refused with the tools' checks (1.5.1 takes it)
    stop_count_first: bool  # more than 32 stops are refused before the validation pass, without "Validation:"
    strict_schemas: bool  # a strict function's object schema must say additionalProperties: false


RULES = {"1.5.1": ChatRules(null_passthrough_absent=False, logit_bias_keys=False, tools_empty_refused=False,
                            stop_count_first=False, strict_schemas=False),
         "1.6.1": ChatRules(null_passthrough_absent=True, logit_bias_keys=True, tools_empty_refused=True,
                            stop_count_first=True, strict_schemas=True)}
MAX_TOKENS = 1048576
MAX_STOP = 32
TOOL_NAME = re.compile(r"[A-Za-z0-9_-]*")


def rules_for(version: str) -> ChatRules:
    """The rules of Dynamo `version` (the newest recorded for a version not recorded)."""
    return RULES.get(version) or RULES[max(RULES, key=lambda v: tuple(int(x) for x in v.split(".")))]


def _range_message(label: str, lo, hi, v) -> str | None:
    return f"{label} must be between {lo} and {hi}, got {rust_f32(v)}" if v is not None and not lo <= v <= hi else None


# the sampling ranges Dynamo's native generate (its vLLM worker) checks, in that order
SAMPLING_RANGES = [
    ("temperature", lambda v: _range_message("Temperature", 0, 2, v)),
    ("top_p", lambda v: f"Top_p must be between 0 and 1, got {rust_f32(v)}" if v is not None and not 0 < v <= 1 else None),
    ("frequency_penalty", lambda v: _range_message("Frequency penalty", -2, 2, v)),
    ("presence_penalty", lambda v: _range_message("Presence penalty", -2, 2, v)),
    ("top_k", lambda v: "Top_k must be null or greater than or equal to -1" if v is not None and v < -1 else None),
    ("min_p", lambda v: _range_message("Min_p", 0, 1, v)),
    ("repetition_penalty", lambda v: f"Repetition penalty must be between 0 and 2, got {rust_f32(v)}"
     if v is not None and not 0 < v <= 2 else None),
]
_RANGE = dict(SAMPLING_RANGES)
# the native generate route's worker checks repetition_penalty its own way (recorded)
GENERATE_RANGES = [r for r in SAMPLING_RANGES if r[0] != "repetition_penalty"] + [
    ("repetition_penalty", lambda v: f"sampling_params.repetition_penalty must be a finite positive number, got "
                                     f"{rust_f32(v)}" if v is not None and not _finite_positive_f32(v) else None)]


def _finite_positive_f32(v) -> bool:
    with np.errstate(over="ignore"):
        return bool(0 < np.float32(v) < np.inf)


def _max_tokens(label: str, v) -> str | None:
    if v == 0:
        return f"{label} must be greater than 0, got 0"
    if v is not None and v > MAX_TOKENS:
        return f"{label} must not exceed {MAX_TOKENS}, got {v}"
    return None


def _validation(message: str) -> tuple[int, dict]:
    return 400, {"message": f"Validation: {message}", "type": "Bad Request", "code": 400}


def _debug(v) -> str:
    """A JSON value as Rust prints a serde_json::Value with `{:?}`."""
    if v is None:
        return "Null"
    if isinstance(v, bool):
        return f"Bool({str(v).lower()})"
    if isinstance(v, (int, float)):
        return f"Number({v})"
    if isinstance(v, str):
        return f"String({json.dumps(v, ensure_ascii=False)})"
    if isinstance(v, list):
        return "Array [" + ", ".join(_debug(x) for x in v) + "]"
    return "Object {" + ", ".join(f"{json.dumps(k)}: {_debug(x)}" for k, x in v.items()) + "}"


def _passthrough(body: dict, rules: ChatRules, known: dict = CHAT) -> str | None:
    unknown = sorted(k for k in body if k not in known and k not in PASSTHROUGH)  # (the frontend's order is a hash's)
    if unknown:
        return "Unsupported parameter(s): " + ", ".join(f"`{k}`" for k in unknown)
    for name, (t, message) in PASSTHROUGH.items():
        if name in body and not (body[name] is None and rules.null_passthrough_absent):
            try:
                check(body[name], t)
            except SerdeError:
                return message
    return None


def _tool_call_arguments(messages: list) -> str | None:
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") != "assistant" or not isinstance(m.get("tool_calls"), list):
            continue
        for j, call in enumerate(m["tool_calls"]):
            args = (call.get("function") or {}).get("arguments") if isinstance(call, dict) else None
            if not isinstance(args, str) or not args.strip():
                continue
            field = f"`messages[{i}].tool_calls[{j}].function.arguments`"
            try:
                parsed = json.loads(args)
            except ValueError as exc:
                return f"{field} must be a valid JSON object string: {serde_json_error(args, exc)}"
            if not isinstance(parsed, dict):
                return f"{field} must be a valid JSON object string"
    return None


def serde_json_error(text: str, exc: ValueError) -> str:
    """serde_json's words for a document Python's parser refused (its common cases)."""
    pos = getattr(exc, "pos", len(text))
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1)
    stripped = text.strip()
    if pos >= len(text.rstrip()):
        what = "an object" if stripped.startswith("{") else "a list" if stripped.startswith("[") else "a value"
        return f"EOF while parsing {what} at line {line} column {max(col, 1)}"
    return f"expected value at line {line} column {col + 1}"


def _logit_bias(bias, rules: ChatRules) -> str | None:
    if not isinstance(bias, dict):
        return None
    if rules.logit_bias_keys:
        for key in bias:
            if not (key.isdigit() and int(key) < 2 ** 32):
                return "Logit bias key must be a non-negative 32-bit integer token id"
    for key, value in bias.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return f"Logit bias value for token '{key}' must be a number, got {_debug(value)}"
        if not -100 <= value <= 100:
            return f"Logit bias for token '{key}' must be between -100 and 100, got {rust_f32(value)}"
    return None


def _response_format(fmt) -> str | None:
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return None
    schema = fmt["json_schema"]
    if schema["name"] == "":
        return "`response_format.json_schema.name` cannot be empty"
    if schema["schema"] is None:
        return "`response_format.json_schema.schema` is required when `response_format.type` is `json_schema`"
    if not isinstance(schema["schema"], dict):
        return f"`response_format.json_schema.schema` must be a JSON object, got {json_type(schema['schema'])}"
    return None


def _stop_count(stop) -> str | None:
    if isinstance(stop, list) and len(stop) > MAX_STOP:
        what = "token IDs" if all(isinstance(x, int) for x in stop) else "sequences"
        return f"Maximum of {MAX_STOP} stop {what} allowed, got {len(stop)}"
    return None


def _stop(stop) -> str | None:
    if isinstance(stop, str):
        return "Stop sequence cannot be empty" if not stop else None
    if isinstance(stop, list):
        if not stop:
            return "Stop sequences array cannot be empty"
        if _stop_count(stop):
            return _stop_count(stop)
        empty = next((k for k, x in enumerate(stop) if x == ""), None)
        if empty is not None:
            return f"Stop sequence at index {empty} cannot be empty"
    return None


def _tools(tools, rules: ChatRules) -> str | None:
    if tools is None:
        return None
    if not tools and rules.tools_empty_refused:
        return TOOLS_EMPTY
    for i, tool in enumerate(tools):
        name = tool["function"]["name"]
        if not name.strip():
            return f"Function name at index {i} cannot be empty"
        if not TOOL_NAME.fullmatch(name):
            return (f'Function at index {i} has an invalid name: "{name}". Only a-z, A-Z, 0-9, underscores, and '
                    f"dashes are allowed.")
        params = tool["function"].get("parameters")
        if params is not None and not isinstance(params, dict):
            return f'Function parameters at index {i} for "{name}" must be a JSON Schema object'
    return None


TOOLS_EMPTY = "tools array cannot be empty; omit the field entirely to disable tool use"


def _strict_schema(tools) -> str | None:
    """A strict function's object schema must close itself (OpenAI's rule, as Dynamo words it; recorded)."""
    for tool in tools or []:
        fn = tool["function"]
        params = fn.get("parameters")
        if fn.get("strict") and isinstance(params, dict) and params.get("type", "object") == "object" \
                and params.get("additionalProperties") is not False:
            return (f"Invalid schema for function '{fn['name']}': In context=#, object schemas require "
                    f"additionalProperties: false")
    return None


def template_tools(tools: list | None) -> list | None:
    """The tools as Dynamo hands them to the chat template (recorded from its rendered prompts): each read into
    its struct and written back (`type`, then `name`, `description`, `parameters`, `strict`, unknown keys
    dropped), then a missing description written as "" and parameters given `type: object` and `properties`."""
    if not tools:
        return tools
    out = []
    for tool in tools:
        fn = tool["function"]
        written = {k: fn[k] for k in ("name", "description", "parameters", "strict") if fn.get(k) is not None}
        if isinstance(written.get("parameters"), dict):
            params = dict(written["parameters"])
            params.setdefault("type", "object")
            params.setdefault("properties", {})
            written["parameters"] = params
        written.setdefault("description", "")
        out.append({"type": tool.get("type") or "function", "function": written})
    return out


def _tool_choice(choice, tools) -> str | None:
    if choice == "required" and not tools:
        return 'tool_choice is "required" but tools is empty'
    if isinstance(choice, dict):
        name = choice["function"]["name"]
        if not any(t["function"]["name"] == name for t in tools or []):
            return f'tool named "{name}" in tool_choice is not present in tools'
    return None


def _n_with_temperature(n, temperature) -> str | None:
    t = 1.0 if temperature is None else temperature
    if n is not None and n > 1 and t == 0:
        return (f"When n > 1, temperature must be greater than 0 to ensure diverse outputs. Got n={n}, "
                f"temperature={rust_f32(t)}")
    return None


def _single_choice(n, nvext) -> str | None:
    extra = (nvext or {}).get("extra_fields") or []
    if "completion_token_ids" in extra and (n or 1) != 1:
        return '`nvext.extra_fields=["completion_token_ids"]` requires exactly one generated choice'
    return None


def _blank(label: str):
    return lambda v: f"{label} cannot be empty" if isinstance(v, str) and not v.strip() else None


# Dynamo's validation pass (ValidateRequest for NvCreateChatCompletionRequest), in its order: each rule reads the
# request (serde took it) and the version's rules, and gives Dynamo's words or None
VALIDATION = [
    lambda b, r: _passthrough(b, r),
    lambda b, r: "`chat_template` is not supported inside `chat_template_args`"  # (chat_template_kwargs: its alias)
    if any(isinstance(b.get(k), dict) and "chat_template" in b[k] for k in ("chat_template_args", "chat_template_kwargs"))
    else None,
    lambda b, r: _tool_call_arguments(b["messages"]),
    lambda b, r: _blank("Model")(b["model"]),
    lambda b, r: _RANGE["frequency_penalty"](b.get("frequency_penalty")),
    lambda b, r: _logit_bias(b.get("logit_bias"), r),
    lambda b, r: f"Top_logprobs must be between 0 and 20, got {b['top_logprobs']}"
    if b.get("top_logprobs") is not None and b["top_logprobs"] > 20 else None,
    lambda b, r: _max_tokens("Max tokens", b.get("max_tokens")),
    lambda b, r: _max_tokens("Max completion tokens", b.get("max_completion_tokens")),
    lambda b, r: f"n must be between 1 and 128, got {b['n']}" if b.get("n") is not None and not 1 <= b["n"] <= 128
    else None,
    lambda b, r: _single_choice(b.get("n"), b.get("nvext")),
    lambda b, r: _RANGE["presence_penalty"](b.get("presence_penalty")),
    lambda b, r: _response_format(b.get("response_format")),
    lambda b, r: _stop(b.get("stop")),
    lambda b, r: _RANGE["temperature"](b.get("temperature")),
    lambda b, r: _RANGE["top_p"](b.get("top_p")),
    lambda b, r: _tools(b.get("tools"), r),
    lambda b, r: _strict_schema(b.get("tools")) if r.strict_schemas else None,
    lambda b, r: _tool_choice(b.get("tool_choice"), b.get("tools")),
    lambda b, r: _blank("User ID")(b.get("user")),
    lambda b, r: _RANGE["repetition_penalty"](b.get("repetition_penalty")),
    lambda b, r: _RANGE["min_p"](b.get("min_p")),
    lambda b, r: _RANGE["top_k"](b.get("top_k")),
    lambda b, r: _n_with_temperature(b.get("n"), b.get("temperature")),
]


ECHO_EXPECTED = "expected echo parameter to be a boolean (true or false) or null"


def no_such_worker(nvext) -> tuple[int, dict] | None:
    """The router finds no worker for a data-parallel rank past the one the worker has (recorded: 400)."""
    if isinstance(nvext, dict) and any(nvext.get(k) not in (None, 0) for k in ("dp_rank", "prefill_dp_rank")):
        return 400, {"message": "Invalid request", "type": "Bad Request", "code": 400}
    return None


def validate_chat(body: dict, served_model: str | None = None, version: str = "1.6.1") -> tuple[int, dict] | None:
    """Dynamo's part, on a request serde took: the handler's own checks, the validation pass, the model."""
    rules = rules_for(version)
    if not body["messages"]:
        return _validation("The 'messages' field cannot be empty. At least one message is required.")
    if body.get("stream_options") and not body.get("stream"):
        return _validation("The 'stream_options' field is only allowed when 'stream' is set to true.")
    if body.get("continue_final_message") and body.get("add_generation_prompt") is not False:
        return _validation("Cannot set both `continue_final_message` and `add_generation_prompt` to True.")
    if rules.stop_count_first and _stop_count(body.get("stop")):
        return 400, {"message": _stop_count(body["stop"]), "type": "Bad Request", "code": 400}
    for rule in VALIDATION:
        message = rule(body, rules)
        if message:
            return _validation(message)
    if served_model is not None and body.get("model") != served_model:
        return 404, {"message": "Model not found", "type": "Not Found", "code": 404}
    return no_such_worker(body.get("nvext"))


# Dynamo's native /inference/v1/generate (vLLM worker): the request struct (Option fields take null; the others
# have defaults, so they may be left out, never null), then the worker's own refusals
SAMPLING = {"max_tokens": opt("u32"), "min_tokens": opt("u32"), "temperature": opt("f32"), "top_p": opt("f32"),
            "top_k": opt("i32"), "min_p": opt("f32"), "seed": opt("i64"), "stop_token_ids": opt(("seq", "u32")),
            "logprobs": opt("i32"), "prompt_logprobs": opt("i32"), "ignore_eos": B, "presence_penalty": opt("f32"),
            "frequency_penalty": opt("f32"), "repetition_penalty": opt("f32"), "skip_special_tokens": opt(B),
            "include_stop_str_in_output": opt(B), "routed_experts_prompt_start": opt("u32")}
GENERATE = {"model": opt(S), "token_ids": ("seq", "u32"), "request_id": opt(S), "cache_salt": opt(S),
            "priority": "i32", "stream": B}
WORKER_NULL_REFUSED = ("skip_special_tokens", "temperature", "top_p", "include_stop_str_in_output", "presence_penalty", "min_p",
                       "top_k", "frequency_penalty", "repetition_penalty", "min_tokens", "detokenize", "n",
                       "routed_experts_prompt_start")


def _worker_refuses(sp: dict) -> bool:
    """What the vLLM worker behind the native route answers "Invalid request" to (recorded)."""
    if any(name in sp and sp[name] is None for name in WORKER_NULL_REFUSED):
        return True
    stop = sp.get("stop")
    if "stop" in sp and not (stop is None or isinstance(stop, str) and stop or
                             isinstance(stop, list) and all(isinstance(s, str) and s for s in stop)):
        return True
    n = sp.get("n")
    if "n" in sp and not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
        return True
    return "detokenize" in sp and not isinstance(sp["detokenize"], bool)


NOT_READY = ("Model `{model}` is not ready to serve requests yet. The deployment may still be starting up or is not "
             "fully provisioned. Please retry shortly.")


# DYN_HTTP_BODY_LIMIT_MB's default in the 1.6.1 frontend (axum's body limit, set in lib/llm/src/http/service/openai.rs):
# a body of 45 MiB is read, one byte more answers 413 before any parsing (recorded from Dynamo 1.6.1 + mocker)
BODY_LIMIT_MB = 45


def body_too_large(size: int) -> tuple[int, dict] | None:
    """The frontend's answer to a body past its limit, or None."""
    if size <= BODY_LIMIT_MB * 1024 * 1024:
        return None
    return 413, {"message": f"Request body exceeds the limit of {BODY_LIMIT_MB} MB set by DYN_HTTP_BODY_LIMIT_MB",
                 "type": "Payload Too Large", "code": 413}


def not_ready(model: str) -> tuple[int, dict]:
    """What a frontend answers while its worker is away (recorded from Dynamo 1.5.1)."""
    return 503, {"message": NOT_READY.format(model=model), "type": "Service Unavailable", "code": 503}


def worker_failed() -> tuple[int, dict]:
    """What Dynamo 1.5.1 answers when its worker fails before the response stream (recorded)."""
    return 500, {"message": "Failed to generate completions", "type": "Internal Server Error", "code": 500}


def _worker_error(message: str) -> tuple[int, dict]:
    return 400, {"error": {"message": message, "type": "invalid_request_error", "code": 400}}


def check_generate(body: dict, raw: str) -> tuple[int, dict] | None:
    """None when Dynamo's native generate route takes the request; else (status, its error JSON)."""
    for key, value in body.items():
        if key == "sampling_params":
            if not isinstance(value, dict):
                return _deserialize(f"sampling_params: sampling_params must be a JSON object at "
                                    f"{where(raw, (key,), past=1)}")
            for k, v in value.items():
                if k in SAMPLING:
                    try:
                        check(v, SAMPLING[k], ("sampling_params", k))
                    except SerdeError as e:
                        return _deserialize(f"sampling_params: sampling_params.{k}: {e.reason} at "
                                            f"{where(raw, (key,), past=1)}")  # (read as a JSON value, then converted)
        elif key in GENERATE:
            try:
                check(value, GENERATE[key], (key,))
            except SerdeError as e:
                return _deserialize(f"{key}: {located(e, raw)}")
    for name in ("token_ids", "sampling_params"):
        if name not in body:
            return _deserialize(f"missing field `{name}` at {where(raw)}")
    sp = body["sampling_params"]
    for name, refuses in GENERATE_RANGES:
        message = refuses(sp.get(name))
        if message:
            return _worker_error(message)
    if _worker_refuses(sp):
        return _worker_error("Invalid request")
    return None


# -- /v1/completions (NvCreateCompletionRequest: async-openai's CreateCompletionRequest and CommonExt, both
# flattened, beside nvext), held to Dynamo 1.6.1's recorded answers (cassettes/hostile/rules/*/completions.yaml) --

PROMPT = ("untagged", "Prompt", [S, ("seq", S), ("seq", "u32"), ("seq", ("seq", "u32"))])
COMPLETION = {
    "model": S, "prompt": PROMPT, "suffix": S, "max_tokens": "u32", "temperature": "f32", "top_p": "f32", "n": "u8",
    "stream": B, "stream_options": CHAT["stream_options"], "logprobs": "u8", "echo": B, "stop": STOP,
    "presence_penalty": "f32", "frequency_penalty": "f32", "best_of": "u8", "logit_bias": ("map", "any"), "user": S,
    "seed": "i64", **{k: CHAT[k] for k in COMMON_EXT},
    "nvext": NVEXT, "prompt_embeds": S, "return_tokens_as_token_ids": B,
}
COMPLETION_DIRECT = ("nvext", "prompt_embeds", "return_tokens_as_token_ids")


def deserialize_completion(body: dict, raw: str) -> tuple[int, dict] | None:
    """serde's part: the request read into NvCreateCompletionRequest (its own fields where they stand, then the
    flattened request, then CommonExt, each in the body's order; the request's required fields once it is read)."""
    twice = duplicate_field(body, raw, COMPLETION)
    if twice:
        return twice
    members: list[list[str]] = [[], [], []]
    for key in body:
        if key in COMPLETION:
            members[0 if key in COMPLETION_DIRECT else 2 if key in COMMON_EXT else 1].append(key)
    for member, keys in enumerate(members):
        if member == 2:
            for name in ("model", "prompt"):
                if name not in body:
                    return _deserialize(f"missing field `{name}` at {where(raw)}")
        for key in keys:
            try:
                check(body[key], COMPLETION[key] if key in ("model", "prompt") else opt(COMPLETION[key]), (key,))
            except SerdeError as e:
                if member == 0 and e.reason.startswith("unknown field"):  # (read in place: told past the key)
                    return _deserialize(f"{e.reason} at {key_end(raw, e.path) or where(raw)}")
                if key == "echo":  # (Dynamo reads echo with its own deserializer, in its own words)
                    e.reason = e.reason.replace("expected a boolean", ECHO_EXPECTED)
                return _deserialize(located(e, raw, flattened=member > 0))
    return None


def _prompt(prompt, embeds) -> str | None:
    """validate_prompt_or_embeds: embeds when sent (base64, 100 bytes to 10 MB), else the prompt not empty."""
    if embeds is not None:
        import binascii

        import pybase64
        try:
            size = len(pybase64.b64decode(embeds, validate=True))
        except (binascii.Error, ValueError):
            return "prompt_embeds must be valid base64-encoded data"
        if size < 100:
            return f"prompt_embeds decoded data must be at least 100 bytes, got {size} bytes"
        return f"prompt_embeds decoded data exceeds maximum size of 10MB, got {size} bytes" \
            if size > 10 * 1024 * 1024 else None
    if prompt == "":
        return "Prompt string cannot be empty"
    if prompt == []:
        return "Prompt string array cannot be empty"  # (an empty list reads as the first list variant)
    if isinstance(prompt, list):
        for i, p in enumerate(prompt):
            if p == "":
                return f"Prompt string at index {i} cannot be empty"
            if p == []:
                return f"Prompt integer array at index {i} cannot be empty"
    return None


def _best_of(best_of, n) -> str | None:
    if best_of is not None and n is not None and best_of < n:
        return f"Best_of must be greater than or equal to n, got best_of={best_of} and n={n}"
    return None


COMPLETION_VALIDATION = [
    lambda b, r: _passthrough(b, r, COMPLETION),
    lambda b, r: _blank("Model")(b["model"]),
    lambda b, r: _prompt(b["prompt"], b.get("prompt_embeds")),
    lambda b, r: "Suffix is too long, maximum 10000 characters" if len(b.get("suffix") or "") > 10000 else None,
    lambda b, r: _max_tokens("Max tokens", b.get("max_tokens")),
    lambda b, r: _RANGE["temperature"](b.get("temperature")),
    lambda b, r: _RANGE["top_p"](b.get("top_p")),
    lambda b, r: f"n must be between 1 and 128, got {b['n']}" if b.get("n") is not None and not 1 <= b["n"] <= 128
    else None,
    lambda b, r: f"Logprobs must be between 0 and 5, got {b['logprobs']}"
    if b.get("logprobs") is not None and b["logprobs"] > 5 else None,
    lambda b, r: _stop(b.get("stop")),
    lambda b, r: _RANGE["presence_penalty"](b.get("presence_penalty")),
    lambda b, r: _RANGE["frequency_penalty"](b.get("frequency_penalty")),
    lambda b, r: f"Best_of must be between 0 and 20, got {b['best_of']}"
    if b.get("best_of") is not None and b["best_of"] > 20 else _best_of(b.get("best_of"), b.get("n")),
    lambda b, r: _logit_bias(b.get("logit_bias"), r),
    lambda b, r: _blank("User ID")(b.get("user")),
    lambda b, r: _RANGE["repetition_penalty"](b.get("repetition_penalty")),
    lambda b, r: _RANGE["min_p"](b.get("min_p")),
    lambda b, r: _RANGE["top_k"](b.get("top_k")),
    lambda b, r: _n_with_temperature(b.get("n"), b.get("temperature")),
]


def validate_completion(body: dict, served_model: str | None = None, version: str = "1.6.1") -> tuple[int, dict] | None:
    """Dynamo's part, on a completion request serde took: the handler's checks, the validation pass, the model."""
    rules = rules_for(version)
    if body.get("stream_options") and not body.get("stream"):
        return _validation("The 'stream_options' field is only allowed when 'stream' is set to true.")
    if rules.stop_count_first and _stop_count(body.get("stop")):
        return 400, {"message": _stop_count(body["stop"]), "type": "Bad Request", "code": 400}
    for rule in COMPLETION_VALIDATION:
        message = rule(body, rules)
        if message:
            return _validation(message)
    if served_model is not None and body.get("model") != served_model:
        return 404, {"message": "Model not found", "type": "Not Found", "code": 404}
    return None


def completion_prompts(body: dict) -> list:
    """The prompts a completion request asks for, each text or ids (one choice each; nvext.token_data replaces
    them with one prompt of ids, recorded)."""
    token_data = (body.get("nvext") or {}).get("token_data")
    if token_data is not None:
        return [list(token_data)]
    prompt = body["prompt"]
    if isinstance(prompt, str) or (prompt and all(isinstance(t, int) for t in prompt)):
        return [prompt]
    return list(prompt)


def parse_error(raw, col: int) -> str:
    """serde_json's words for a body that is not JSON, at the (1-based) column the parser stopped: the end of the
    text, a comma before a closing bracket, a sign without a number, or a value it cannot start."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    if col > len(text):
        return f"EOF while parsing a value at line 1 column {col}"
    at = col - 1
    close = re.match(r",?\s*[}\]]", text[at:])
    if close and (text[at] == "," or text[:at].rstrip().endswith(",")):
        return f"trailing comma at line 1 column {at + close.end()}"
    if text[at] == "-" or (at > 0 and text[at - 1] == "-"):
        return f"invalid number at line 1 column {col if text[at] != '-' else col + 1}"
    return f"expected value at line 1 column {col}"
