"""A fixed suite of hostile request bodies: what a careless or malicious client sends.

Recorded against each real server (`harness record-suite --scenarios hostile_inputs`), the answers
become the standard the fakes are held to: the same status and the same error shape, never a
500 or a hang. Each body is raw bytes, so invalid UTF-8 and non-standard JSON can be sent.
"""

from __future__ import annotations

import json

HELLO = [{"role": "user", "content": "Hello"}]


def _j(value) -> bytes:
    return json.dumps(value).encode()


def _deep(depth: int):
    v: object = "x"
    for _ in range(depth):
        v = {"k": [v]}
    return v


def chat_bodies(model: str) -> list[tuple[str, bytes]]:
    base = {"model": model, "messages": HELLO}
    return [
        ("huge_max_completion_tokens", _j({**base, "max_completion_tokens": 1e30})),
        ("huge_int_max_tokens", _j({**base, "max_tokens": 2 ** 70})),
        ("fractional_max_tokens", _j({**base, "max_tokens": 1.5})),
        ("huge_top_logprobs", _j({**base, "logprobs": True, "top_logprobs": 1e30})),
        ("huge_temperature", _j({**base, "max_tokens": 2, "temperature": 1e308})),
        ("huge_seed", _j({**base, "max_tokens": 2, "seed": 2 ** 70})),
        ("nan_temperature", b'{"model": "%s", "messages": [{"role": "user", "content": "Hello"}], "temperature": NaN}'
         % model.encode()),
        ("string_in_messages", _j({**base, "messages": ["hello"]})),
        ("number_content", _j({**base, "messages": [{"role": "user", "content": 12}]})),
        ("deep_nesting", _j({**base, "max_tokens": 2, "metadata": _deep(200)})),
        ("invalid_utf8", b'{"model": "%s", "messages": [{"role": "user", "content": "\xff\xfe bad"}]}' % model.encode()),
        ("empty_messages", _j({**base, "messages": []})),
        ("giant_stop_list", _j({**base, "max_tokens": 2, "stop": ["zz%d" % i for i in range(500)]})),
        ("null_body", b"null"),
        ("empty_body", b""),
    ]


def id_list_bodies(wrap) -> list[tuple[str, bytes]]:
    """Bodies whose prompt ids are hostile; `wrap(ids)` builds the request around them."""
    return [
        ("ids_wrong_types", _j(wrap([1.5, "a", None]))),
        ("ids_fractional", _j(wrap([9707, 1879.5]))),
        ("ids_negative", _j(wrap([9707, -1]))),
        ("ids_huge", _j(wrap([9707, 2 ** 40]))),
        ("ids_empty", _j(wrap([]))),
        ("ids_nested", _j(wrap([[9707], [1879]]))),
        ("ids_giant", _j(wrap([9707] * 5000))),
        ("ids_not_a_list", _j(wrap("9707 1879"))),
    ]


def _generate(model: str):
    return lambda ids: {"model": model, "token_ids": ids, "sampling_params": {"max_tokens": 2}}


def vllm_suite(model: str) -> list[tuple[str, str, bytes]]:
    """(name, path, body) for a vLLM server."""
    out = [(n, "/v1/chat/completions", b) for n, b in chat_bodies(model)]
    out += [(n, "/inference/v1/generate", b) for n, b in id_list_bodies(_generate(model))]
    out += [("generate_huge_max_tokens", "/inference/v1/generate",
             _j({"model": model, "token_ids": [9707], "sampling_params": {"max_tokens": 1e30}})),
            ("generate_sampling_not_object", "/inference/v1/generate",
             _j({"model": model, "token_ids": [9707], "sampling_params": [1, 2]}))]
    out += [(n, "/v1/completions", b)
            for n, b in id_list_bodies(lambda ids: {"model": model, "prompt": ids, "max_tokens": 2})[:4]]
    out += [("tokenize_wrong_prompt", "/tokenize", _j({"model": model, "prompt": 12})),
            ("detokenize_wrong_types", "/detokenize", _j({"model": model, "tokens": [1.5, "a", None]}))]
    return out


def dynamo_suite(model: str, native_generate: bool = False) -> list[tuple[str, str, bytes]]:
    def token_data(ids):
        return {"model": model, "messages": [{"role": "user", "content": ""}], "max_tokens": 2,
                "nvext": {"token_data": ids}}

    out = [(n, "/v1/chat/completions", b) for n, b in chat_bodies(model)]
    out += [(n, "/v1/chat/completions", b) for n, b in id_list_bodies(token_data)]
    out += [("extra_fields_wrong_types", "/v1/chat/completions",
             _j({"model": model, "messages": HELLO, "max_tokens": 2, "nvext": {"extra_fields": [1, None]}}))]
    if native_generate:
        out += [(n, "/inference/v1/generate", b) for n, b in id_list_bodies(_generate(model))]
    return out


# -- random hostile bodies: one or two fields of a valid request set to a wrong type or a boundary ---------

VALUES = ["1", "true", "yes", "", "x", True, False, 0, 1, -1, -3.5, 0.5, 2, 3, 1e9, 2 ** 31, 2 ** 63, 2 ** 64, 1e30,
          None, [], {}, [1, 2], ["a"], {"a": 1}]
CHAT_FIELDS = ["model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "min_p", "n",
               "seed", "stop", "stop_token_ids", "logprobs", "top_logprobs", "presence_penalty", "frequency_penalty",
               "repetition_penalty", "logit_bias", "user", "stream", "stream_options", "tools", "tool_choice",
               "parallel_tool_calls", "response_format", "skip_special_tokens", "return_token_ids", "priority", "echo",
               "add_generation_prompt", "min_tokens", "ignore_eos", "allowed_token_ids", "prompt_logprobs",
               "messages.0.content", "messages.0.role", "messages.0.content_part"]
DYNAMO_FIELDS = ["nvext", "nvext.annotations", "nvext.agent_hints", "nvext.greed_sampling", "nvext.extra_fields",
                 "nvext.token_data", "return_tokens_as_token_ids"]
GENERATE_FIELDS = ["model", "token_ids", "sampling_params", "sampling_params.max_tokens", "sampling_params.temperature",
                   "sampling_params.top_p", "sampling_params.top_k", "sampling_params.seed", "sampling_params.n",
                   "sampling_params.stop", "sampling_params.stop_token_ids", "sampling_params.logprobs",
                   "sampling_params.min_tokens", "sampling_params.detokenize", "sampling_params.skip_special_tokens",
                   "sampling_params.ignore_eos", "sampling_params.presence_penalty", "stream", "priority",
                   "cache_salt", "request_id"]
COMPLETION_FIELDS = ["model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "n", "seed", "stop", "stop_token_ids",
                     "logprobs", "prompt_logprobs", "echo", "presence_penalty", "frequency_penalty",
                     "repetition_penalty", "logit_bias", "user", "stream", "suffix", "min_tokens", "ignore_eos",
                     "skip_special_tokens", "add_special_tokens", "return_token_ids", "priority", "cache_salt"]
TOKENIZE_FIELDS = ["model", "prompt", "messages", "add_special_tokens", "add_generation_prompt", "return_token_strs",
                   "continue_final_message", "chat_template_kwargs", "tools"]
HARMLESS = {("n", 2), ("n", 3), ("max_tokens", 2), ("max_completion_tokens", 2)}  # (values that are fine stay in)
HEAVY = {"n": {1e9, 2 ** 31, 2 ** 63, 2 ** 64, 1e30, 2, 3}, "sampling_params.n": {1e9, 2 ** 31, 2, 3}}


def _set(body: dict, dotted: str, value) -> None:
    *path, last = dotted.split(".")
    node = body
    for p in path:
        if isinstance(node, list) and not p.isdigit():
            return  # (an earlier pick made the parent a list)
        node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
        if not isinstance(node, (dict, list)):
            return
    if last == "content_part":
        node["content"] = [{"type": value if isinstance(value, str) and value else "mystery", "text": "Hello"}]
    elif isinstance(node, list):
        if last.isdigit() and int(last) < len(node):
            node[int(last)] = value
    else:
        node[last] = value


def random_bodies(route: str, model: str, n: int, seed: int, dynamo: bool = False) -> list[tuple[str, str, bytes]]:
    """`n` seeded hostile bodies for `route` ("chat", "generate" or "completions"): a valid request (a few tokens asked for)
    with one or two fields set to a wrong type or a boundary number. (name, path, body); names say what
    was set. Values that would make a real server do heavy work (n in the thousands) are not drawn."""
    import copy
    import random

    rng = random.Random(seed)
    if route == "chat":
        base: dict = {"model": model, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4}
        if dynamo:
            base["nvext"] = {"extra_fields": ["completion_token_ids"]}
        fields, path = CHAT_FIELDS + (DYNAMO_FIELDS if dynamo else []), "/v1/chat/completions"
    elif route == "tokenize":
        base = {"model": model, "prompt": "Hello"} if rng.random() < 0.5 else \
            {"model": model, "messages": [{"role": "user", "content": "Hello"}]}
        fields, path = TOKENIZE_FIELDS, "/tokenize"
    elif route == "completions":
        base = {"model": model, "prompt": "Hello", "max_tokens": 4}
        fields, path = COMPLETION_FIELDS, "/v1/completions"
    else:
        base = {"model": model, "token_ids": [151644, 872, 198, 9707, 151645, 198, 151644, 77091, 198],
                "sampling_params": {"max_tokens": 4}}
        fields, path = GENERATE_FIELDS, "/inference/v1/generate"
    out = []
    while len(out) < n:
        body = copy.deepcopy(base)
        picks = rng.sample(fields, rng.choice((1, 1, 2)))
        names = []
        for f in picks:
            value = rng.choice(VALUES)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value in HEAVY.get(f, ()):
                value = -1
            _set(body, f, value)
            names.append(f"{f}={json.dumps(value)}")
        out.append((f"random_{len(out):03d}: {', '.join(names)}", path, _j(body)))
    return out
