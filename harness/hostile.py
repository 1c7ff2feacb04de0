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


# -- one body per rule: each check of a server's request path (its validation pass, its structs' required
# fields, its passthrough fields), at and past its boundary ----------------------------------------------------

def _tools(*names: str) -> list[dict]:
    return [{"type": "function", "function": {"name": n}} for n in names]


# how a request's chat template arguments are read: a template sent along, names that clash with the request's
# own, names the template reads; the prompt each renders is compared too (usage.prompt_tokens)
TEMPLATE_RULES: list[tuple[str, dict]] = [
    ("template_sent", {"chat_template": "{{ messages }}"}),
    ("template_empty", {"chat_template": ""}),
    ("template_null", {"chat_template": None}),
    ("template_inside_kwargs", {"chat_template_kwargs": {"chat_template": "x"}}),
    ("template_null_inside_kwargs", {"chat_template_kwargs": {"chat_template": None}}),
    ("kwargs_tokenize", {"chat_template_kwargs": {"tokenize": True}}),
    ("kwargs_return_dict", {"chat_template_kwargs": {"return_dict": True}}),
    ("kwargs_messages", {"chat_template_kwargs": {"messages": []}}),
    ("kwargs_tools_not_a_list", {"chat_template_kwargs": {"tools": 5}}),
    ("kwargs_tools", {"chat_template_kwargs": {"tools": [{"type": "function", "function": {"name": "f"}}]}}),
    ("kwargs_conversation", {"chat_template_kwargs": {"conversation": 1}}),
    ("kwargs_unknown_name", {"chat_template_kwargs": {"foo": 1}}),
    ("kwargs_no_generation_prompt", {"chat_template_kwargs": {"add_generation_prompt": False}}),
    ("no_generation_prompt", {"add_generation_prompt": False}),
    ("no_generation_prompt_kwargs_say_yes", {"add_generation_prompt": False,
                                             "chat_template_kwargs": {"add_generation_prompt": True}}),
    ("model_empty", {"model": ""}),
]
# vLLM's chat path: its request models' validators and SamplingParams' checks, each at and past its boundary
VLLM_RULES: list[tuple[str, dict]] = [
    ("tool_choice_auto", {"tools": _tools("f")}),
    ("tool_choice_without_tools", {"tool_choice": "required"}),
    ("tool_choice_named_without_tools", {"tool_choice": {"type": "function", "function": {"name": "f"}}}),
    ("tool_choice_named_not_in_tools", {"tool_choice": {"type": "function", "function": {"name": "g"}},
                                        "tools": _tools("f")}),
    ("tool_choice_named_in_tools", {"tool_choice": {"type": "function", "function": {"name": "f"}}, "tools": _tools("f")}),
    ("tool_choice_required_with_tools", {"tool_choice": "required", "tools": _tools("f")}),
    ("tool_choice_none_with_tools", {"tool_choice": "none", "tools": _tools("f")}),
    ("tools_empty", {"tools": []}),
    ("tool_without_function", {"tools": [{"type": "function"}]}),
    ("top_logprobs_without_logprobs", {"top_logprobs": 2}),
    ("top_logprobs_21", {"logprobs": True, "top_logprobs": 21}),
    ("top_logprobs_negative", {"logprobs": True, "top_logprobs": -1}),
    ("continue_final_message_and_generation_prompt", {"continue_final_message": True, "add_generation_prompt": True}),
    ("continue_final_message", {"continue_final_message": True, "add_generation_prompt": False,
                                "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hel"}]}),
    ("stream_options_without_stream", {"stream_options": {"include_usage": True}}),
    ("cache_salt_empty", {"cache_salt": ""}),
    ("cache_salt_slash", {"cache_salt": "a/b"}),
    ("max_tokens_zero", {"max_tokens": 0}),
    ("max_tokens_negative", {"max_tokens": -1}),
    ("max_completion_tokens_past_window", {"max_completion_tokens": 100000}),
    ("temperature_negative", {"temperature": -0.5}),
    ("top_p_zero", {"top_p": 0}),
    ("top_k_minus_2", {"top_k": -2}),
    ("min_p_2", {"min_p": 2}),
    ("repetition_penalty_zero", {"repetition_penalty": 0}),
    ("presence_penalty_3", {"presence_penalty": 3}),
    ("frequency_penalty_minus_3", {"frequency_penalty": -3}),
    ("seed_negative", {"seed": -1}),
    ("min_tokens_past_max_tokens", {"min_tokens": 10}),
    ("stop_token_ids_negative", {"stop_token_ids": [-1]}),
    ("stop_many", {"stop": ["a"] * 40}),
    ("logit_bias_past_vocab", {"logit_bias": {"999999999": 1}}),
    ("logit_bias_value_200", {"logit_bias": {"1": 200}}),
    ("allowed_token_ids_past_vocab", {"allowed_token_ids": [999999999]}),
    ("allowed_token_ids_empty", {"allowed_token_ids": []}),
    ("bad_words", {"bad_words": ["Hello"]}),
    ("n_2_stream", {"n": 2, "stream": True}),
    ("prompt_logprobs_stream", {"prompt_logprobs": 1, "stream": True}),
    ("prompt_logprobs_21", {"prompt_logprobs": 21}),
    ("truncate_prompt_tokens", {"truncate_prompt_tokens": 2}),
    ("response_format_json_schema_without_schema", {"response_format": {"type": "json_schema"}}),
    ("response_format_json_object", {"response_format": {"type": "json_object"}}),
    ("structured_outputs_two_kinds", {"structured_outputs": {"json": {}, "regex": "a"}}),
    ("echo_last_assistant", {"echo": True, "add_generation_prompt": False,
                             "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hel"}]}),
    ("messages_last_assistant", {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "x"}]}),
    ("message_unknown_role", {"messages": [{"role": "robot", "content": "Hi"}]}),
    ("message_tool_without_id", {"messages": [{"role": "tool", "content": "Hi"}]}),
    ("priority_set", {"priority": 1}),
    ("tokens_as_ids", {"logprobs": True, "top_logprobs": 1, "return_tokens_as_token_ids": True}),
    ("kv_transfer_params", {"kv_transfer_params": {"a": 1}}),
]


DYNAMO_RULES: list[tuple[str, dict]] = [
    ("max_tokens_at_limit_plus_one", {"max_tokens": 1048577}),
    ("max_tokens_u32_past_i32", {"max_tokens": 2147483648}),
    ("max_completion_tokens_past_limit", {"max_completion_tokens": 1048577}),
    ("both_max_fields_past_limit", {"max_completion_tokens": 1048577, "max_tokens": 1048577}),
    ("max_tokens_zero", {"max_tokens": 0}),
    ("named_tool_choice_without_type", {"tool_choice": {"function": {"name": "f"}}}),
    ("named_tool_choice_without_name", {"tool_choice": {"type": "function", "function": {}}}),
    ("named_tool_choice_not_in_tools", {"tool_choice": {"type": "function", "function": {"name": "f"}}}),
    ("named_tool_choice_in_tools", {"tool_choice": {"type": "function", "function": {"name": "f"}},
                                    "tools": _tools("f")}),
    ("named_tool_choice_extra_key", {"tool_choice": {"type": "function", "function": {"name": "f"}, "x": 1},
                                     "tools": _tools("f")}),
    ("tool_choice_required_without_tools", {"tool_choice": "required"}),
    ("tool_choice_required_with_tools", {"tool_choice": "required", "tools": _tools("f")}),
    ("tool_without_type", {"tools": [{"function": {"name": "f"}}]}),
    ("tool_without_function", {"tools": [{"type": "function"}]}),
    ("tool_function_without_name", {"tools": [{"type": "function", "function": {}}]}),
    ("tool_null_parameters", {"tools": [{"type": "function", "function": {"name": "f", "parameters": None}}]}),
    ("tool_empty_name", {"tools": _tools("")}),
    ("tool_blank_name", {"tools": _tools("   ")}),
    ("tool_name_with_space", {"tools": _tools("a b")}),
    ("tool_second_name_bad", {"tools": _tools("ok", "no/slash")}),
    ("tool_name_97_chars", {"tools": _tools("x" * 97)}),
    ("tools_empty", {"tools": []}),
    ("tool_schema_without_type", {"tools": [{"type": "function", "function": {
        "name": "f", "parameters": {"properties": {"a": {"type": "string"}}}}}]}),
    ("tool_unknown_key", {"tools": [{"type": "function", "function": {"name": "f", "extra": 1, "strict": False}}]}),
    ("tool_strict_open_schema", {"tools": [{"type": "function", "function": {
        "name": "f", "strict": True, "parameters": {"type": "object", "properties": {}}}}]}),
    ("tool_strict_closed_schema", {"tools": [{"type": "function", "function": {
        "name": "f", "strict": True, "parameters": {"type": "object", "properties": {}, "additionalProperties": False}}}]}),
    ("text_part_without_text", {"messages": [{"role": "user", "content": [{"type": "text"}]}]}),
    ("json_schema_format_without_schema_object", {"response_format": {"type": "json_schema"}}),
    ("json_schema_without_name", {"response_format": {"type": "json_schema", "json_schema": {}}}),
    ("json_schema_without_schema", {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}),
    ("json_schema_empty_name", {"response_format": {"type": "json_schema", "json_schema": {"name": "", "schema": {}}}}),
    ("json_schema_false", {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": False}}}),
    ("json_schema_fine", {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}}),
    ("stream_options_unknown_key", {"stream_options": {"include_usage": True, "x": 1}, "stream": True}),
    ("logit_bias_string_value", {"logit_bias": {"1": "a"}}),
    ("logit_bias_past_100", {"logit_bias": {"1": 200}}),
    ("logit_bias_at_minus_100", {"logit_bias": {"1": -100}}),
    ("logit_bias_word_key", {"logit_bias": {"x": 1}}),
    ("logit_bias_negative_key", {"logit_bias": {"-1": 1}}),
    ("n_2_temperature_0", {"n": 2, "temperature": 0}),
    ("n_2_no_temperature", {"n": 2, "temperature": 0.5}),
    ("user_empty", {"user": ""}),
    ("user_blank", {"user": " "}),
    ("model_blank", {"model": " "}),
    ("temperature_and_top_p", {"temperature": 0.5, "top_p": 0.5}),
    ("chat_template_inside_args", {"chat_template_args": {"chat_template": "x"}}),
    ("tool_call_arguments_a_list", {"messages": [{"role": "assistant", "content": "x", "tool_calls": [
        {"id": "1", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]}),
    ("tool_call_arguments_not_json", {"messages": [{"role": "assistant", "content": "x", "tool_calls": [
        {"id": "1", "type": "function", "function": {"name": "f", "arguments": "{"}}]}]}),
    ("top_logprobs_21", {"logprobs": True, "top_logprobs": 21}),
    ("stop_ids", {"stop": [1, 2]}),
    ("stop_empty_list", {"stop": []}),
    ("stop_33_ids", {"stop": list(range(33))}),
    ("allowed_token_ids_null", {"allowed_token_ids": None}),
    ("stop_token_ids_null", {"stop_token_ids": None}),
    ("detokenize_null", {"detokenize": None}),
    ("cache_salt_null", {"cache_salt": None}),
    ("bad_words_token_ids_null", {"bad_words_token_ids": None}),
    ("bad_words_token_ids_fine", {"bad_words_token_ids": [[1, 2]]}),
    ("bad_words_token_ids_flat", {"bad_words_token_ids": [1, 2]}),
    ("unknown_field_null", {"bogus": None}),
    ("tokens_as_ids", {"logprobs": True, "top_logprobs": 1, "return_tokens_as_token_ids": True}),
    ("continue_final_message_default_generation_prompt", {"continue_final_message": True}),
    ("continue_final_message", {"continue_final_message": True, "add_generation_prompt": False,
                                "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hel"}]}),
    *TEMPLATE_RULES,
]


# Dynamo's native generate (its vLLM worker): each sampling field null (Option fields take it, fields with a default
# do not, the worker refuses some), each range at its edge, the top-level fields null, n choices
_SAMPLING_FIELDS = ("max_tokens", "min_tokens", "temperature", "top_p", "top_k", "min_p", "seed", "stop_token_ids",
                    "logprobs", "prompt_logprobs", "ignore_eos", "presence_penalty", "frequency_penalty",
                    "repetition_penalty", "skip_special_tokens", "include_stop_str_in_output",
                    "routed_experts_prompt_start", "detokenize", "n", "stop")
DYNAMO_GENERATE_RULES: list[tuple[str, dict, dict]] = [
    *((f"sampling_{f}_null", {}, {f: None}) for f in _SAMPLING_FIELDS),
    ("top_p_0", {}, {"top_p": 0}), ("top_p_tiny", {}, {"top_p": 1e-9}), ("top_p_1", {}, {"top_p": 1}),
    ("temperature_2", {}, {"temperature": 2}), ("temperature_past_2", {}, {"temperature": 2.5}),
    ("top_k_minus_1", {}, {"top_k": -1}), ("top_k_minus_2", {}, {"top_k": -2}),
    ("repetition_penalty_0", {}, {"repetition_penalty": 0}), ("min_p_past_1", {}, {"min_p": 1.5}),
    ("presence_and_stop_refused", {}, {"presence_penalty": 3, "stop": False}),
    ("n_3", {}, {"n": 3, "seed": 3}), ("n_0", {}, {"n": 0}),
    *((f"top_{f}_null", {f: None}, {}) for f in ("model", "request_id", "cache_salt", "priority", "stream",
                                                  "token_ids", "sampling_params")),
]


# Dynamo's /v1/completions: the prompt in each form serde's untagged Prompt takes (and some it does not), each of
# the request's fields at and past its boundary, nvext, and what the frontend refuses before the worker sees it
DYNAMO_COMPLETION_RULES: list[tuple[str, dict]] = [
    ("prompt_text", {}), ("prompt_ids", {"prompt": [9707, 11]}), ("prompt_texts", {"prompt": ["Hello", "Hi"]}),
    ("prompt_id_lists", {"prompt": [[9707], [11]]}), ("prompt_one_text_in_a_list", {"prompt": ["Hello"]}),
    ("prompt_number", {"prompt": 12}), ("prompt_null", {"prompt": None}), ("prompt_empty_list", {"prompt": []}),
    ("prompt_empty_text", {"prompt": ""}), ("prompt_fraction", {"prompt": [1.5]}), ("prompt_negative_id", {"prompt": [-1]}),
    ("prompt_id_past_u32", {"prompt": [2 ** 32]}), ("prompt_id_past_vocab", {"prompt": [999999]}),
    ("prompt_object", {"prompt": {"text": "Hello"}}), ("prompt_mixed_list", {"prompt": ["a", 1]}),
    ("no_prompt", {"prompt": ...}), ("no_model", {"model": ...}), ("model_blank", {"model": " "}),
    ("model_empty", {"model": ""}), ("model_unknown", {"model": "other"}),
    ("max_tokens_zero", {"max_tokens": 0}), ("max_tokens_past_limit", {"max_tokens": 1048577}),
    ("max_tokens_text", {"max_tokens": "4"}), ("max_tokens_null", {"max_tokens": None}),
    ("max_tokens_negative", {"max_tokens": -1}), ("temperature_3", {"temperature": 3}), ("top_p_0", {"top_p": 0}),
    ("top_p_past_1", {"top_p": 1.5}), ("n_2", {"n": 2, "temperature": 0.5}), ("n_2_temperature_0", {"n": 2, "temperature": 0}),
    ("n_0", {"n": 0}), ("n_200", {"n": 200}), ("logprobs_1", {"logprobs": 1}), ("logprobs_6", {"logprobs": 6}),
    ("logprobs_true", {"logprobs": True}), ("echo", {"echo": True}), ("suffix", {"suffix": "x"}),
    ("best_of_2", {"best_of": 2}), ("best_of_below_n", {"best_of": 1, "n": 2, "temperature": 0.5}),
    ("stop_text", {"stop": "a"}), ("stop_list", {"stop": ["a", "b"]}), ("stop_ids", {"stop": [1, 2]}),
    ("stop_5", {"stop": ["a", "b", "c", "d", "e"]}), ("stop_33", {"stop": [str(i) for i in range(33)]}),
    ("presence_penalty_3", {"presence_penalty": 3}), ("frequency_penalty_minus_3", {"frequency_penalty": -3}),
    ("logit_bias_fine", {"logit_bias": {"1": 1}}), ("logit_bias_word_key", {"logit_bias": {"x": 1}}),
    ("logit_bias_past_100", {"logit_bias": {"1": 200}}), ("user_empty", {"user": ""}), ("seed_negative", {"seed": -1}),
    ("stream", {"stream": True}), ("stream_usage", {"stream": True, "stream_options": {"include_usage": True}}),
    ("stream_options_without_stream", {"stream_options": {"include_usage": True}}),
    ("nvext_extra_fields", {"nvext": {"extra_fields": ["completion_token_ids"]}}),
    ("nvext_extra_fields_all", {"nvext": {"extra_fields": ["completion_token_ids", "engine_data", "worker_id",
                                                           "timing"]}}),
    ("nvext_unknown_key", {"nvext": {"bogus": 1}}), ("nvext_not_an_object", {"nvext": 5}),
    ("nvext_token_data", {"nvext": {"token_data": [9707, 11]}}), ("nvext_greed", {"nvext": {"greed_sampling": True}}),
    ("nvext_annotations_not_a_list", {"nvext": {"annotations": "x"}}),
    ("unknown_field", {"bogus": 1}), ("unknown_field_null", {"bogus": None}),
    ("min_tokens", {"min_tokens": 2}), ("ignore_eos", {"ignore_eos": True}), ("top_k_minus_2", {"top_k": -2}),
    ("repetition_penalty_0", {"repetition_penalty": 0}), ("min_p_2", {"min_p": 2}),
    ("skip_special_tokens_text", {"skip_special_tokens": "yes"}), ("stop_token_ids", {"stop_token_ids": [1]}),
    ("prompt_embeds", {"prompt_embeds": "AAAA"}), ("return_tokens_as_token_ids", {"return_tokens_as_token_ids": True}),
    ("chat_template_args", {"chat_template_args": {"a": 1}}), ("messages", {"messages": [{"role": "user", "content": "x"}]}),
]


def rule_bodies(route: str, model: str) -> list[tuple[str, str, bytes]]:
    """One body per rule (name, path, body): of Dynamo's chat path (`dynamo-chat`: DYNAMO_RULES), of its native
    generate route (`dynamo-generate`: DYNAMO_GENERATE_RULES), of its /v1/completions (`dynamo-completions`:
    DYNAMO_COMPLETION_RULES), of vLLM's chat path (`vllm-chat`: VLLM_RULES, then TEMPLATE_RULES)."""
    if route == "dynamo-chat":
        base = {"model": model, "messages": HELLO, "max_tokens": 4}
        return [(f"rule_{n}", "/v1/chat/completions", _j({**base, **fields})) for n, fields in DYNAMO_RULES]
    if route == "vllm-chat":
        base = {"model": model, "messages": HELLO, "max_tokens": 4}
        return [(f"rule_{n}", "/v1/chat/completions", _j({**base, **fields}))
                for n, fields in VLLM_RULES + TEMPLATE_RULES]
    if route == "dynamo-generate":
        out = []
        for n, top, sampling in DYNAMO_GENERATE_RULES:
            body = {"model": model, "token_ids": [9707, 11], "sampling_params": {"max_tokens": 3, **sampling}, **top}
            out.append((f"rule_{n}", "/inference/v1/generate", _j(body)))
        return out
    if route == "dynamo-completions":
        base = {"model": model, "prompt": "Hello", "max_tokens": 4}
        out = []
        for n, fields in DYNAMO_COMPLETION_RULES:
            body = {k: v for k, v in {**base, **fields}.items() if v is not ...}  # (... leaves a field out)
            out.append((f"rule_{n}", "/v1/completions", _j(body)))
        return out
    raise ValueError(f"no rule suite for {route!r}; known: dynamo-chat, dynamo-completions, dynamo-generate, vllm-chat")


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
