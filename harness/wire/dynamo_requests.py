"""Dynamo's request rules: the typed Rust structs serde deserializes a request into (async-openai's
CreateChatCompletionRequest, Dynamo's flattened extensions and `nvext`), then Dynamo's own validation pass
in its words ("Validation: ..."). Read from ai-dynamo/dynamo (lib/llm/src/protocols/openai: chat_completions,
common_ext, nvext, validate.rs) and held to Dynamo 1.6.1's recorded answers (cassettes/hostile/random).

`deserialize_chat(body, raw)` then `validate_chat(body, model)` (a frontend answers in between when its
worker is away), and `check_generate(body, raw)`, return None or (status, error JSON).
"""

from __future__ import annotations

import numpy as np

from .serde import SerdeError, check, column, located, unexpected

S, B = "string", "bool"


def opt(t):
    return ("option", t)


def struct(name: str, fields: dict, deny: bool = False):
    return ("struct", name, {k: opt(v) for k, v in fields.items()}, deny)


FUNCTION = struct("FunctionObject", {"name": S, "description": S, "parameters": "any", "strict": B})
TOOL = ("struct", "ChatCompletionTool", {"type": opt(("variants", "ChatCompletionToolType", ["function"])),
                                         "function": FUNCTION}, False)
NAMED_CHOICE = ("struct", "ChatCompletionNamedToolChoice", {
    "type": opt(("variants", "ChatCompletionToolType", ["function"])),
    "function": ("struct", "FunctionName", {"name": S}, False)}, False)
TOOL_CHOICE = ("untagged", "ChatCompletionToolChoiceOption",
               [("variants", "ChatCompletionToolChoiceMode", ["none", "auto", "required"]), NAMED_CHOICE])
STOP = ("untagged", "Stop", [S, ("seq", S), ("seq", "u32")])
PART = ("tagged", "ChatCompletionRequestUserMessageContentPart", "type", {
    "text": struct("ChatCompletionRequestMessageContentPartText", {"text": S}),
    "image_url": struct("ChatCompletionRequestMessageContentPartImage", {"image_url": "any"}),
    "input_audio": struct("ChatCompletionRequestMessageContentPartAudio", {"input_audio": "any"}),
    "video_url": struct("ChatCompletionRequestMessageContentPartVideo", {"video_url": "any"}),
    "audio_url": struct("ChatCompletionRequestMessageContentPartAudioUrl", {"audio_url": "any"})})
USER_CONTENT = ("untagged", "ChatCompletionRequestUserMessageContent", [S, ("seq", PART)])
RESPONSE_FORMAT = ("tagged", "ResponseFormat", "type", {
    "text": struct("Text", {}), "json_object": struct("JsonObject", {}),
    "json_schema": ("struct", "JsonSchema", {"json_schema": "any"}, False)})
AGENT_HINTS = struct("AgentHints", {"latency_sensitivity": "f64", "osl": "u32", "speculative_prefill": B,
                                    "priority": "i32"})
NVEXT = ("struct", "NvExt", {k: opt(v) for k, v in {
    "greed_sampling": B, "use_raw_prompt": B, "annotations": ("seq", S), "backend_instance_id": "u64",
    "token_data": ("seq", "u32"), "max_thinking_tokens": "u32", "cache_salt": S, "extra_fields": ("seq", S),
    "metadata_upload": "any", "prefill_worker_id": "u64", "decode_worker_id": "u64", "dp_rank": "u32",
    "prefill_dp_rank": "u32", "agent_hints": AGENT_HINTS, "request_timestamp_ms": "any",
    "routing_constraints": "any", "router": "any"}.items()}, True)

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
    "add_generation_prompt": B, "continue_final_message": B, "mm_processor_kwargs": ("map", "any"),
    "prompt_logprobs": "u32", "thinking": "any", "return_tokens_as_token_ids": B,
}
PASSTHROUGH = ("cache_salt", "stop_token_ids", "detokenize", "allowed_token_ids", "bad_words_token_ids")
ROLES = ("developer", "system", "user", "assistant", "tool", "function")


def rust_f32(v) -> str:
    """A number as Rust prints an f32 (`3`, `0.5`, `18446744000000000000`)."""
    with np.errstate(over="ignore"):  # (past f32's range: `inf`, as Rust prints it)
        return np.format_float_positional(np.float32(v), trim="-")


def _range(name: str, lo, hi, lo_open: bool = False):
    def rule(b: dict):
        v = b.get(name)
        if v is None:
            return None
        if (v <= lo if lo_open else v < lo) or v > hi:
            return v
        return None
    return rule


# Dynamo's validation pass, in its order: (field, refuses -> shown value or None, message)
VALIDATION = [
    ("temperature", _range("temperature", 0, 2), "Temperature must be between 0 and 2, got {v}"),
    ("top_p", _range("top_p", 0, 1), "Top_p must be between 0 and 1, got {v}"),
    ("frequency_penalty", _range("frequency_penalty", -2, 2), "Frequency penalty must be between -2 and 2, got {v}"),
    ("presence_penalty", _range("presence_penalty", -2, 2), "Presence penalty must be between -2 and 2, got {v}"),
    ("top_k", lambda b: b["top_k"] if b.get("top_k") is not None and b["top_k"] < -1 else None,
     "Top_k must be null or greater than or equal to -1"),
    ("min_p", _range("min_p", 0, 1), "Min_p must be between 0 and 1, got {v}"),
    ("repetition_penalty", _range("repetition_penalty", 0, 2, lo_open=True),
     "Repetition penalty must be between 0 and 2, got {v}"),
    ("top_logprobs", _range("top_logprobs", 0, 20), "Top_logprobs must be between 0 and 20, got {v}"),
    ("max_tokens", lambda b: 0 if b.get("max_tokens") == 0 else None, "Max tokens must be greater than 0, got {v}"),
    ("max_completion_tokens", lambda b: 0 if b.get("max_completion_tokens") == 0 else None,
     "Max completion tokens must be greater than 0, got {v}"),
    ("n", _range("n", 1, 128), "n must be between 1 and 128, got {v}"),
]
FLOAT_FIELDS = {"temperature", "top_p", "frequency_penalty", "presence_penalty", "min_p", "repetition_penalty"}


def _deserialize(message: str) -> tuple[int, dict]:
    return 400, {"message": f"Failed to deserialize the JSON body into the target type: {message}",
                 "type": "Bad Request", "code": 400}


def _validation(message: str) -> tuple[int, dict]:
    return 400, {"message": f"Validation: {message}", "type": "Bad Request", "code": 400}


def _messages(messages: list) -> SerdeError | None:
    for k, m in enumerate(messages):
        if not isinstance(m, dict):
            return SerdeError(f"invalid type: {unexpected(m)}, expected internally tagged enum "
                              f"ChatCompletionRequestMessage", ("messages", k))
        role = m.get("role")
        if isinstance(role, int) and not isinstance(role, bool):  # serde takes a variant's index for its name
            if not 0 <= role < len(ROLES):
                return SerdeError(f"invalid value: integer `{role}`, expected variant index 0 <= i < {len(ROLES)}",
                                  ("messages", k, "role"))
            m["role"] = role = ROLES[role]
        elif role is not None and not isinstance(role, str):
            return SerdeError(f"invalid type: {unexpected(role)}, expected variant identifier", ("messages", k, "role"))
        if role not in ROLES and isinstance(role, str):
            return SerdeError("unknown variant `%s`, expected one of %s" % (role, ", ".join(f"`{r}`" for r in ROLES)),
                              ("messages", k), ())
        if role in ("user", "system", "developer", "tool") and "content" not in m:
            return SerdeError("missing field `content`", ("messages", k), ())
        if role == "tool" and not isinstance(m.get("tool_call_id"), str):
            return SerdeError("missing field `tool_call_id`", ("messages", k), ())
        if role == "user":
            try:
                check(m.get("content"), USER_CONTENT, ("messages", k, "content"))
            except SerdeError as e:
                return SerdeError(e.reason, e.path, ())
    return None


def deserialize_chat(body: dict, raw: str) -> tuple[int, dict] | None:
    """serde's part: the request read into NvCreateChatCompletionRequest. A role given as a variant index
    (serde takes `1` for `system`) is written back as its name."""
    if body.get("messages") is None:
        return _deserialize(f"missing field `messages` at line 1 column {len(raw)}")
    if body.get("model") is None:
        return _deserialize(f"missing field `model` at line 1 column {len(raw)}")
    for key, value in body.items():
        t = CHAT.get(key)
        if t is None:
            continue
        try:
            check(value, opt(t) if key not in ("messages", "model") else t, (key,))
        except SerdeError as e:
            return _deserialize(located(e, raw))
    bad = _messages(body["messages"])
    if bad is not None:
        return _deserialize(located(bad, raw))
    return None


def validate_chat(body: dict, served_model: str | None = None) -> tuple[int, dict] | None:
    """Dynamo's part, on a request serde took: unsupported fields, the model, the validation pass."""
    unknown = sorted(k for k in body if k not in CHAT and k not in PASSTHROUGH)  # (the frontend's order is a hash's)
    if unknown:
        return _validation("Unsupported parameter(s): " + ", ".join(f"`{k}`" for k in unknown))
    if served_model is not None and body.get("model") != served_model:
        return 404, {"message": "Model not found", "type": "Not Found", "code": 404}
    if "cache_salt" in body and not isinstance(body["cache_salt"], str):
        return _validation("`cache_salt` must be a string")
    for name, what in (("stop_token_ids", "an array of token IDs"), ("allowed_token_ids", "an array of token IDs")):
        if name in body and not _u32s(body[name]):
            return _validation(f"`{name}` must be {what}")
    if "detokenize" in body and not isinstance(body["detokenize"], bool):
        return _validation("`detokenize` must be a boolean")
    if not body["messages"]:
        return _validation("The 'messages' field cannot be empty. At least one message is required.")
    stop = _stop(body.get("stop"))
    if stop:
        return 400, {"message": stop, "type": "Bad Request", "code": 400}
    if body.get("stream_options") and not body.get("stream"):
        return _validation("The 'stream_options' field is only allowed when 'stream' is set to true.")
    if body.get("tools") == []:
        return _validation("tools array cannot be empty; omit the field entirely to disable tool use")
    for name, refuses, message in VALIDATION:
        v = refuses(body)
        if v is not None:
            return _validation(message.format(v=rust_f32(v) if name in FLOAT_FIELDS else v))
    return None


def _stop(stop) -> str | None:
    """validate_stop's words (no "Validation:" in front: the frontend checks it on its own)."""
    if isinstance(stop, str):
        return "Stop sequence cannot be empty" if not stop else None
    if isinstance(stop, list):
        ids = stop and all(isinstance(x, int) for x in stop)
        if not stop:
            return "Stop sequences array cannot be empty"
        if len(stop) > 32:
            return f"Maximum of 32 stop {'token IDs' if ids else 'sequences'} allowed, got {len(stop)}"
        empty = next((k for k, x in enumerate(stop) if x == ""), None)
        if empty is not None:
            return f"Stop sequence at index {empty} cannot be empty"
    return None


def _u32s(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 2 ** 32 for x in v)


# Dynamo's native /inference/v1/generate (vLLM worker): the request struct, then the worker's own refusals
SAMPLING = {"max_tokens": "u32", "min_tokens": "u32", "temperature": "f32", "top_p": "f32", "top_k": "i32",
            "min_p": "f32", "seed": "i64", "stop_token_ids": ("seq", "u32"), "logprobs": "i32",
            "prompt_logprobs": "i32", "ignore_eos": B, "presence_penalty": "f32", "frequency_penalty": "f32",
            "repetition_penalty": "f32", "skip_special_tokens": B, "include_stop_str_in_output": B,
            "routed_experts_prompt_start": "u32"}
GENERATE = {"model": S, "token_ids": ("seq", "u32"), "request_id": S, "cache_salt": S, "priority": "i32", "stream": B}


def _worker_refuses(sp: dict) -> bool:
    """What the vLLM worker behind the native route answers "Invalid request" to (recorded)."""
    stop = sp.get("stop")
    if "stop" in sp and not (stop is None or isinstance(stop, str) and stop or
                             isinstance(stop, list) and all(isinstance(s, str) and s for s in stop)):
        return True
    n = sp.get("n")
    if "n" in sp and not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
        return True
    if "min_tokens" in sp and sp["min_tokens"] is None:
        return True
    return "detokenize" in sp and not isinstance(sp["detokenize"], bool)


NOT_READY = ("Model `{model}` is not ready to serve requests yet. The deployment may still be starting up or is not "
             "fully provisioned. Please retry shortly.")


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
            if value is not None and not isinstance(value, dict):
                return _deserialize(f"sampling_params: sampling_params must be a JSON object at line 1 column "
                                    f"{column(raw, (key,))}")
            for k, v in (value or {}).items():
                if k in SAMPLING and v is not None:
                    try:
                        check(v, SAMPLING[k], ("sampling_params", k))
                    except SerdeError as e:
                        return _deserialize(f"sampling_params: sampling_params.{k}: {located(e, raw)}")
        elif key in GENERATE and value is not None:
            try:
                check(value, GENERATE[key], (key,))
            except SerdeError as e:
                return _deserialize(f"{key}: {located(e, raw)}")
    for name in ("token_ids", "sampling_params"):
        if body.get(name) is None:
            return _deserialize(f"missing field `{name}` at line 1 column {len(raw)}")
    sp = body["sampling_params"]
    if _worker_refuses(sp):
        return _worker_error("Invalid request")
    for name, refuses, message in VALIDATION[:7]:
        v = refuses(sp)
        if v is not None:
            return _worker_error(message.format(v=rust_f32(v) if name in FLOAT_FIELDS else v))
    return None
