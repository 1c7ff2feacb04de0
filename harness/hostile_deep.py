"""Seeded hostile bodies that reach every depth of a request: inside messages, their content parts, tool calls and
their `function`, `tools` and their JSON schemas, `response_format`, every `nvext` sub-object, `sampling_params`,
`chat_template_kwargs`; and bodies JSON does not allow (NaN, Infinity, a trailing comma, a duplicate key, invalid
UTF-8, a body cut mid-string).

Recorded from each real server (`scripts/record_hostile_random.py --deep`), the answers are what the fakes are held
to (tests/test_hostile_deep.py): the same status, the same error shape, the error bytes where the server's words
are deterministic.
"""

from __future__ import annotations

import copy
import json
import random

from .hostile import VALUES

SCHEMA = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
TOOL = {"type": "function", "function": {"name": "lookup", "description": "Look a fact up.", "parameters": SCHEMA}}
CALL = {"id": "call_0", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\": \"x\"}"}}
MESSAGES = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hello"}]},
            {"role": "assistant", "content": "", "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "call_0", "content": "42"},
            {"role": "user", "content": "Thanks", "name": "ann"}]
RESPONSE_FORMAT = {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA}}

# dotted paths inside a chat request (an int is a list index); values are drawn from hostile.VALUES, or the
# field is removed ("<del>"), or a whole message is replaced by {} or a string
CHAT_PATHS = [
    "messages.0", "messages.0.role", "messages.0.content", "messages.0.name",
    "messages.1.content", "messages.1.content.0", "messages.1.content.0.type", "messages.1.content.0.text",
    "messages.1.role", "messages.1.name",
    "messages.2.content", "messages.2.tool_calls", "messages.2.tool_calls.0", "messages.2.tool_calls.0.id",
    "messages.2.tool_calls.0.type", "messages.2.tool_calls.0.function", "messages.2.tool_calls.0.function.name",
    "messages.2.tool_calls.0.function.arguments", "messages.2.reasoning", "messages.2.name",
    "messages.3.tool_call_id", "messages.3.content", "messages.3.role",
    "messages.4.name", "messages.4.content", "messages.4",
    "tools", "tools.0", "tools.0.type", "tools.0.function", "tools.0.function.name", "tools.0.function.description",
    "tools.0.function.parameters", "tools.0.function.parameters.type", "tools.0.function.parameters.properties",
    "tools.0.function.parameters.properties.q", "tools.0.function.parameters.required", "tools.0.function.strict",
    "tool_choice", "tool_choice.function", "tool_choice.function.name", "tool_choice.type",
    "response_format", "response_format.type", "response_format.json_schema", "response_format.json_schema.name",
    "response_format.json_schema.schema", "response_format.json_schema.strict",
    "chat_template_kwargs", "chat_template_kwargs.enable_thinking", "stream_options.include_usage",
]
NVEXT_PATHS = ["nvext", "nvext.extra_fields", "nvext.extra_fields.0", "nvext.annotations", "nvext.annotations.0",
               "nvext.agent_hints", "nvext.agent_hints.priority", "nvext.agent_hints.latency_sensitivity",
               "nvext.agent_hints.osl", "nvext.agent_hints.speculative_prefill", "nvext.greed_sampling",
               "nvext.use_raw_prompt", "nvext.backend_instance_id", "nvext.max_thinking_tokens", "nvext.cache_salt",
               "nvext.token_data", "nvext.token_data.0", "nvext.routing_constraints", "nvext.dp_rank",
               "chat_template_args", "chat_template_args.enable_thinking"]
GENERATE_PATHS = ["token_ids.0", "token_ids", "sampling_params", *(f"sampling_params.{f}" for f in (
    "max_tokens", "min_tokens", "temperature", "top_p", "top_k", "min_p", "seed", "n", "stop", "stop.0",
    "stop_token_ids", "stop_token_ids.0", "logprobs", "prompt_logprobs", "presence_penalty", "frequency_penalty",
    "repetition_penalty", "ignore_eos", "skip_special_tokens", "detokenize", "include_stop_str_in_output",
    "bad_words", "allowed_token_ids", "logit_bias", "structured_outputs")), "priority", "cache_salt", "request_id",
    "model", "stream"]
COMPLETION_PATHS = ["prompt", "prompt.0", "prompt.1", "max_tokens", "stop", "stop.0", "logit_bias", "logit_bias.1",
                    "stream_options", "stream_options.include_usage", "nvext", "nvext.extra_fields",
                    "nvext.extra_fields.0", "nvext.token_data", "nvext.token_data.0", "nvext.agent_hints",
                    "nvext.agent_hints.priority", "nvext.annotations", "suffix", "echo", "best_of", "user", "seed",
                    "n", "temperature", "top_k", "min_tokens", "ignore_eos", "skip_special_tokens"]
DEEP_VALUES = VALUES + ["<del>", "<del>", {"type": "x"}, [{}], [[1]], "a" * 300, {"role": "user"}]
HEAVY = {"sampling_params.n": 4, "n": 4, "best_of": 4}  # (a count a real server would spend work on: kept small)
NOT_JSON = ["nan", "infinity", "minus_infinity", "trailing_comma", "duplicate_key", "invalid_utf8", "cut"]


def _base(route: str, model: str, dynamo: bool) -> tuple[dict, list[str], str]:
    if route == "chat":
        base = {"model": model, "messages": copy.deepcopy(MESSAGES), "tools": [copy.deepcopy(TOOL)], "max_tokens": 4,
                "chat_template_kwargs": {"enable_thinking": False}}
        paths = CHAT_PATHS
        if dynamo:
            base["nvext"] = {"extra_fields": ["completion_token_ids"], "annotations": ["a"],
                             "agent_hints": {"priority": 1, "osl": 4}}
            base["chat_template_args"] = {"enable_thinking": False}
            del base["chat_template_kwargs"]
            paths = [p for p in CHAT_PATHS if not p.startswith("chat_template_kwargs")] + NVEXT_PATHS
        return base, paths, "/v1/chat/completions"
    if route == "completions":
        base = {"model": model, "prompt": [9707, 11], "max_tokens": 4, "logit_bias": {"1": 1},
                "nvext": {"extra_fields": ["completion_token_ids"], "agent_hints": {"priority": 1}}}
        return base, COMPLETION_PATHS, "/v1/completions"
    base = {"model": model, "token_ids": [151644, 872, 198, 9707, 151645, 198, 151644, 77091, 198],
            "sampling_params": {"max_tokens": 4, "temperature": 0.5, "stop": ["zz"], "stop_token_ids": [151643]}}
    return base, GENERATE_PATHS, "/inference/v1/generate"


def _set(body, path: str, value) -> bool:
    """Set (or with "<del>" remove) the value at a dotted path, making objects on the way; False where a parent
    is not a container."""
    *parents, last = path.split(".")
    node = body
    for p in parents:
        if isinstance(node, list):
            if not p.isdigit() or int(p) >= len(node):
                return False
            node = node[int(p)]
        elif isinstance(node, dict):
            if not isinstance(node.get(p), (dict, list)):
                node[p] = {}
            node = node[p]
        else:
            return False
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            return False
        if value == "<del>":
            del node[int(last)]
        else:
            node[int(last)] = value
        return True
    if not isinstance(node, dict):
        return False
    if value == "<del>":
        node.pop(last, None)
    else:
        node[last] = value
    return True


def _not_json(kind: str, body: dict) -> bytes:
    text = json.dumps(body)
    if kind in ("nan", "infinity", "minus_infinity"):
        literal = {"nan": "NaN", "infinity": "Infinity", "minus_infinity": "-Infinity"}[kind]
        return text.replace('"max_tokens": 4', f'"max_tokens": {literal}', 1).encode() if '"max_tokens": 4' in text \
            else text.replace('"model": ', f'"priority": {literal}, "model": ', 1).encode()
    if kind == "trailing_comma":
        return (text[:-1] + ", }").encode()
    if kind == "duplicate_key":
        return (text[:-1] + ', "model": "other"}').encode()
    if kind == "invalid_utf8":
        return text.replace('"model": "', '"model": "\xff', 1).encode("latin-1", "replace") \
            if text.isascii() else text.encode()
    at = text.find('"', len(text) // 2)  # cut mid-string: just past an opening quote
    return text[:at + 3].encode()


def deep_bodies(route: str, model: str, n: int, seed: int, dynamo: bool = False) -> list[tuple[str, str, bytes]]:
    """`n` seeded bodies for `route` ("chat", "completions" or "generate"): a valid request with one or two values
    set deep inside it (or removed), or, one in ten, a body JSON does not allow. (name, path, body)."""
    rng = random.Random(seed)
    base, paths, url = _base(route, model, dynamo)
    out = []
    while len(out) < n:
        body = copy.deepcopy(base)
        if rng.random() < 0.1:
            kind = rng.choice(NOT_JSON)
            out.append((f"deep_{len(out):03d}: not json: {kind}", url, _not_json(kind, body)))
            continue
        names = []
        for path in rng.sample(paths, rng.choice((1, 1, 2))):
            value = copy.deepcopy(rng.choice(DEEP_VALUES))
            if isinstance(value, (int, float)) and not isinstance(value, bool) and path in HEAVY \
                    and not -1 <= value <= HEAVY[path]:
                value = -1
            if _set(body, path, value):
                names.append(f"{path}={json.dumps(value)[:40]}")
        if names:
            out.append((f"deep_{len(out):03d}: {', '.join(names)}", url, json.dumps(body).encode()))
    return out
