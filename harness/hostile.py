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
