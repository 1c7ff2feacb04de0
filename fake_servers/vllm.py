"""A fake vLLM OpenAI server, answering as its profile's version does (`profiles.py`).

Routes (as the profile lists them): /v1/models, /health, /version, /tokenize, /detokenize,
/v1/chat/completions, /v1/chat/completions/tokens (prime-rl), /inference/v1/generate (upstream
vLLM with --enable-scale-out), /v1/completions. Unknown request fields are ignored, as real vLLM does.
"""

from __future__ import annotations

import asyncio
import json
import re
import time

import jinja2
from aiohttp import web

from harness.wire import mutate, vllm_requests
from harness.wire.profiles import ROUTES, Profile

from . import control_routes, errors, experts, generate, metrics
from .base import (SSE, Checked, json_ok, BadBody, ErrorStyle, ServerState, faults_of, make_app, new_id, off_loop,
                   read_json, send_json)
from .engine import ContextLengthExceeded, Generation, SamplingParams, WorkLimitExceeded
from .openai import interleaved, logprobs_content, render_messages, sampling_from, stream, text_pieces, usage
from .control_routes import VLLMControl
from .rl_fields import lora_card, weight_versions
from .validate import FAKE_WORK_TOKENS, VLLM_MODEL_VOCAB, sample_logprobs, vllm_sampling_limits

def _bad_body(exc: BadBody) -> web.Response:
    try:
        exc.raw.decode("utf-8")
    except UnicodeDecodeError:  # FastAPI fails before pydantic sees the body
        return errors.fastapi_detail(400, "There was an error parsing the body")
    if (exc.exc is not None and not exc.raw.strip()) or (exc.exc is None and exc.value is None):
        return errors.vllm_validation("body", "missing", "Field required", "'None'")  # empty body, or null
    if exc.exc is not None:
        import json

        try:
            json.loads(exc.raw)
            pos, why = getattr(exc.exc, "pos", 0), "Expecting value"
        except RecursionError:  # nested past what FastAPI's json.loads reaches: it gives up on the body
            return errors.fastapi_detail(400, "There was an error parsing the body")
        except ValueError as py_exc:
            pos, why = getattr(py_exc, "pos", 0), getattr(py_exc, "msg", "Expecting value")
        return errors.vllm_validation(f"body.{pos}", "json_invalid", "JSON decode error",
                                      "'<dict of 0 items>'", {"error": why})
    kind = "list" if isinstance(exc.value, list) else type(exc.value).__name__
    size = f"'<{kind} of {len(exc.value)} items>'" if isinstance(exc.value, list) else repr(exc.value)
    return errors.vllm_validation("body", "model_attributes_type",
                                  "Input should be a valid dictionary or object to extract fields from", size)


BIG_INT = re.compile(rb"(?<![\d.eE+-])-?\d{20,}(?![\d.eE])")


def _python_json(exc: BadBody) -> dict | None:
    """The body as FastAPI reads it (Python's json.loads) where orjson would not: NaN, Infinity and integers past
    64 bits are values there, for pydantic to refuse in its words (recorded from vLLM 0.32)."""
    import json

    if exc.exc is None:
        return None
    try:
        value = json.loads(exc.raw.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


UNTRUSTED_TEMPLATE = ("Chat template is passed with request, but --trust-request-chat-template is not set. Refused "
                      "request with untrusted chat template.")
STYLE = ErrorStyle(
    route_not_found=lambda request: errors.fastapi_detail(404, "Not Found"),
    method_not_allowed=lambda request: errors.fastapi_detail(405, "Method Not Allowed"),
    http_fault=lambda status, msg, headers: errors.http_fault("vllm", status, msg, headers),
    bad_fault_header=lambda msg: errors.vllm_error(400, msg, "BadRequestError", "x-fake-fault"),
    internal=lambda msg: errors.vllm_error(500, msg, "InternalServerError"),
)


class VLLMHandlers:
    def __init__(self, state: ServerState, profile: Profile, tool_parser: str | None = "hermes"):
        self.tool_parser = tool_parser
        self.state = state
        self.profile = profile
        self.fingerprint = f"vllm-{profile.version}-fake"
        self.engine = state.engine
        self.model = state.engine.config.model
        self.checked = Checked()  # (route, body bytes) -> the body as the request models read it

    # -- shared checks --------------------------------------------------------------------------
    async def _body(self, request: web.Request, route: str) -> dict | web.Response:
        """The request body as vLLM reads it: its own request model for `route` (harness.wire.vllm_requests:
        its lax coercion, its checks, its words)."""
        raw = await request.read()
        body = self.checked.get((route, raw))
        if body is None:
            body = await self._checked_body(request, route)
            if isinstance(body, web.Response):
                return body
            self.checked.put((route, raw), body, len(raw))
        body = dict(body)
        model = body.get("model")
        if model and model != self.model and model not in self.state.control.loras:  # (no model, or "": the served one)
            return errors.vllm_model_not_found(model, self.model)
        return body

    async def _checked_body(self, request: web.Request, route: str) -> dict | web.Response:
        try:
            body = await read_json(request)
            if BIG_INT.search(await request.read()):  # (orjson reads an integer past 64 bits as a float)
                body = json.loads(await request.read())
        except BadBody as exc:
            body = _python_json(exc)
            if body is None:
                return _bad_body(exc)
        try:
            return vllm_requests.validate(route, body, self.profile.version)
        except vllm_requests.RequestError as exc:
            return errors.vllm_body(exc.body)

    def _check_sampling(self, body: dict, key: str = "max_tokens", window: bool = True,
                        route: str = "generate") -> web.Response | None:
        """What vLLM checks past its request models (their types and ranges are the wire layer's), before any
        work is sized: the context window and the counts that size work (`route`: chat, completions or
        generate, whose request models read the logprobs count differently)."""
        name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else key
        mt = body.get(name)
        limit = self.engine.config.max_model_len
        if window and isinstance(mt, int) and mt > limit:
            return errors.vllm_error(400, f"{name}={mt} cannot be greater than "
                                          f"{self.profile.window_words.format(limit=limit)}. Please request fewer "
                                          f"output tokens. (parameter={name}, value={mt})", "BadRequestError", name)
        limits = vllm_sampling_limits(body.get("n"), sample_logprobs(route, body), body.get("prompt_logprobs"))
        if limits:
            return errors.vllm_error(400, limits[0], "BadRequestError", limits[1])
        bad = vllm_requests.engine_checks(body, VLLM_MODEL_VOCAB)
        if bad:
            return errors.vllm_body(bad.body)
        return None

    def _render(self, body: dict, active, add_generation_prompt: bool = True,
                bound: int | None = None) -> list[int] | web.Response:
        """The prompt of a messages request, as vLLM's serving renders it: a template sent with the request is
        refused (the server runs without --trust-request-chat-template), and a template that fails to render
        (a chat_template_kwargs name clashing with the request's own) answers 400 with the error's words."""
        kwargs = body.get("chat_template_kwargs")
        if body.get("chat_template") is not None or (isinstance(kwargs, dict) and kwargs.get("chat_template") is not None):
            return errors.vllm_error(400, UNTRUSTED_TEMPLATE)
        try:
            ids = render_messages(self.state, {**body, "tools": vllm_requests.template_tools(body.get("tools"))},
                                  active, add_generation_prompt,
                                  bound=bound if body.get("truncate_prompt_tokens") is None else None)
        except (TypeError, ValueError, RuntimeError, jinja2.TemplateError) as exc:
            return errors.vllm_error(400, str(exc))
        return vllm_requests.prompt_cut(ids, body.get("truncate_prompt_tokens"))

    def _choices(self, prompt_ids: list[int], params: SamplingParams, n: int,
                 model: str | None = None) -> list[Generation] | web.Response:
        """The `n` answers of a request (by the policy serving `model`: a LoRA adapter's, or the engine's);
        past the fake's work limit, vLLM's error shape saying so."""
        policy = self.state.control.policy_for(model)
        try:
            return self.engine.samples(prompt_ids, params, n, FAKE_WORK_TOKENS, policy=policy)
        except WorkLimitExceeded as exc:
            return errors.vllm_error(400, f"{exc}. (parameter=n, value={n})", "BadRequestError", "n")

    def _experts(self, gen: Generation, route: str, body: dict):
        """routed_experts of a choice, in the profile's format, on the routes that carry them."""
        if route not in self.profile.experts_routes or self.profile.routed_experts not in ("npy", "object"):
            return None
        start = body.get("routed_experts_prompt_start")
        return experts.cached(gen, self.profile.routed_experts, start if isinstance(start, int) else 0)

    def _vocab_error(self, ids: list[int]) -> web.Response | None:
        for t in ids:
            if t >= self.engine.vocab_size:
                return errors.vllm_error(400, f"Token id {t} is out of vocabulary")
        return None

    # -- routes ---------------------------------------------------------------------------------
    async def models(self, request):
        created = int(self.state.started)
        return json_ok({"object": "list", "data": [{
            "id": self.model, "object": "model", "created": created, "owned_by": "vllm",
            "root": self.model, "parent": None, "max_model_len": self.engine.config.max_model_len,
            "permission": [{"id": f"modelperm-{created:x}", "object": "model_permission", "created": created,
                            "allow_create_engine": False, "allow_sampling": True, "allow_logprobs": True,
                            "allow_search_indices": False, "allow_view": True, "allow_fine_tuning": False,
                            "organization": "*", "group": None, "is_blocking": False}]}]
                         + [lora_card(name, path, created, self.model) for name, (path, _, _) in self.state.control.loras.items()]})

    async def health(self, request):
        return web.Response(status=503 if self.state.control.dead else 200)  # (dead after a failed reload)

    async def version(self, request):
        return json_ok({"version": self.profile.version})

    async def tokenize(self, request):
        body = await self._body(request, route="tokenize")
        if isinstance(body, web.Response):
            return body
        if body.get("messages") is not None:
            if not body["messages"]:
                return errors.vllm_error(400, "Cannot apply chat template to an empty conversation. "
                                              "Provide at least one message.")
            add_gen = body.get("add_generation_prompt")
            ids = await off_loop(request, self._render, body, faults_of(request), True if add_gen is None else add_gen)
            if isinstance(ids, web.Response):
                return ids
        elif isinstance(body.get("prompt"), str):
            ids = self.engine.encode(body["prompt"])
        else:
            return errors.vllm_validation("body", "missing", "Field required: `prompt` or `messages`",
                                          f"'<dict of {len(body)} items>'")
        strs = self.engine.tokenizer.convert_ids_to_tokens(ids) if body.get("return_token_strs") else None
        return await send_json(request, {"count": len(ids), "max_model_len": self.engine.config.max_model_len,
                                         "tokens": ids, "token_strs": strs})

    async def detokenize(self, request):
        body = await self._body(request, route="detokenize")
        if isinstance(body, web.Response):
            return body
        ids = [t for t in body["tokens"] if t < self.engine.vocab_size]
        text = self.engine.decode(ids) if len(ids) == len(body["tokens"]) else ""
        return await send_json(request, {"prompt": text})

    async def chat(self, request):
        return await self._chat(request, tokens_route=False)

    async def chat_tokens(self, request):
        return await self._chat(request, tokens_route=True)

    async def _chat(self, request, tokens_route: bool):
        body = await self._body(request, route="chat_tokens" if tokens_route else "chat")
        if isinstance(body, web.Response):
            return body
        bad = self._check_sampling(body, route="chat")
        if bad:
            return bad
        active = faults_of(request)
        if tokens_route:
            prompt_ids = list(body["tokens"])
            bad = self._vocab_error(prompt_ids)
            if bad:
                return bad
        else:
            if not body["messages"]:
                return errors.vllm_error(400, "Cannot apply chat template to an empty conversation. "
                                              "Provide at least one message.")
            # (only whether a prompt is past the window is said, "at least N", as vLLM words it: never all of it)
            prompt_ids = await off_loop(request, self._render, body, active,
                                        body.get("add_generation_prompt") is not False, self.engine.config.max_model_len)
            if isinstance(prompt_ids, web.Response):
                return prompt_ids
        if body.get("tools") and not self.tool_parser:  # a server started without a tool parser
            choice = body.get("tool_choice")
            if choice in (None, "auto"):
                return errors.vllm_error(400, '"auto" tool choice requires --enable-auto-tool-choice and '
                                              '--tool-call-parser to be set')
            if choice == "required":
                return errors.vllm_error(400, 'tool_choice="required" requires --tool-call-parser to be set')
            if isinstance(choice, dict):
                return errors.vllm_error(400, f'tool_choice=function "{choice["function"]["name"]}" requires '
                                              f'--tool-call-parser to be set')
        params = sampling_from(body, active)
        limit = self.engine.config.max_model_len
        if len(prompt_ids) > limit and not tokens_route:
            return errors.vllm_chat_too_long(limit)
        try:
            gens = self._choices(prompt_ids, params, body.get("n") or 1, body.get("model"))
        except ContextLengthExceeded as exc:
            return errors.vllm_decoder_too_long(exc.prompt_len, limit)
        if isinstance(gens, web.Response):
            return gens
        gens, pace = await self.state.control.flow(request, body, prompt_ids, gens, params, bool(body.get("stream")))
        if body.get("stream"):
            return await self._stream(request, body, prompt_ids, gens, params, pace)
        return await send_json(request, mutate.apply(active, self._chat_body(body, prompt_ids, gens, params,
                                                                            "chat_tokens" if tokens_route else "chat")))

    def _chat_body(self, body, prompt_ids, gens: list[Generation], params: SamplingParams, route: str) -> dict:
        want_ids = bool(body.get("return_token_ids"))
        as_ids = bool(body.get("return_tokens_as_token_ids"))
        choices = []
        for i, gen in enumerate(gens):
            message = {"role": "assistant", "content": gen.text, "refusal": None, "annotations": None,
                       "audio": None, "function_call": None, "reasoning": None}
            if "message.annotations" in self.profile.omitted_when_null:
                del message["annotations"]
            choices.append({
                "index": i,
                "message": message,
                "logprobs": {"content": logprobs_content(self.engine, gen, params, as_ids=as_ids,
                                                         past_k="chat" in self.profile.top_logprobs_past_k)}
                if params.logprobs else None,
                "finish_reason": gen.finish_reason,
                "stop_reason": gen.stop_reason,
                "token_ids": list(gen.token_ids) if want_ids else None,
                "routed_experts": self._experts(gen, route, body),
                **weight_versions(self.profile, self.state.control, gen, body, "chat"),
                **{k: None for k in sorted(self.profile.chat_choice_keys)},
            })
        completion = sum(len(g.token_ids) for g in gens)
        return {"id": new_id("chatcmpl-"), "object": "chat.completion", "created": int(time.time()),
                "model": self.model, "choices": choices, "service_tier": None,
                "system_fingerprint": self.fingerprint, "usage": usage(len(prompt_ids), completion, self.profile.omitted_when_null),
                "prompt_logprobs": None, "prompt_token_ids": list(prompt_ids) if want_ids else None,
                "prompt_text": None, "kv_transfer_params": None, "ec_transfer_params": None, "metrics": None,
                **{k: None for k in sorted(self.profile.chat_keys)}}

    async def _stream(self, request, body, prompt_ids, gens: list[Generation], params: SamplingParams,
                      pace: bool = True):
        """A streamed chat answer: a first chunk per choice (its role), then a chunk per token of each choice,
        the choices interleaved step by step (recorded from vLLM 0.32), then usage when asked."""
        want_ids = bool(body.get("return_token_ids"))
        as_ids = bool(body.get("return_tokens_as_token_ids"))
        usage_asked = bool((body.get("stream_options") or {}).get("include_usage"))
        cid, created = new_id("chatcmpl-"), int(time.time())
        head = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": self.model}
        steps = []
        for index, gen in enumerate(gens):
            first = {**head, "choices": [{"index": index, "delta": {"role": "assistant", "content": ""},
                                          "logprobs": None, "finish_reason": None}],
                     "prompt_token_ids": list(prompt_ids) if want_ids else None, "prompt_text": None}
            steps.append((0, index, first))
            pieces = text_pieces(self.engine, gen)
            lps = logprobs_content(self.engine, gen, params, as_ids=as_ids,
                                   past_k="chat" in self.profile.top_logprobs_past_k) if params.logprobs else None
            last = len(gen.token_ids) - 1
            for i, (tid, piece) in enumerate(zip(gen.token_ids, pieces)):
                delta = {"content": piece} if piece or i < last or self.profile.empty_final_content else {}
                choice = {"index": index, "delta": delta, "logprobs": {"content": [lps[i]]} if lps else None,
                          "finish_reason": gen.finish_reason if i == last else None}
                if i == last:
                    choice["stop_reason"] = gen.stop_reason
                choice["token_ids"] = [tid] if want_ids else None
                if i == last:  # (0.33+: the final chunk covers the whole output)
                    choice.update(weight_versions(self.profile, self.state.control, gen, body, "chat"))
                chunk = {**head, "choices": [choice]}
                if i == last and not usage_asked:  # (the usage chunk carries it when there is one)
                    chunk["system_fingerprint"] = self.fingerprint
                steps.append((i + 1, index, chunk))
        return await stream(request, self.engine, interleaved(steps),
                            self._usage_chunk(head, prompt_ids, gens) if usage_asked else None, pace)

    def _usage_chunk(self, head: dict, prompt_ids, gens: list[Generation]) -> dict:
        u = usage(len(prompt_ids), sum(len(g.token_ids) for g in gens))
        return {**head, "choices": [], "usage": {k: u[k] for k in ("prompt_tokens", "total_tokens", "completion_tokens")},
                "system_fingerprint": self.fingerprint}

    async def generate(self, request):
        body = await self._body(request, route="generate")
        if isinstance(body, web.Response):
            return body
        sp = body["sampling_params"]
        mode = body.get("output_mode") or "tokens"
        if mode not in self.profile.output_modes:
            return errors.vllm_validation("body.output_mode", "literal_error",
                                          "Input should be " + " or ".join(f"'{m}'" for m in self.profile.output_modes),
                                          repr(mode), {"expected": " or ".join(f"'{m}'" for m in self.profile.output_modes)})
        bad = self._check_sampling(sp, window=False) or self._vocab_error(body["token_ids"])
        if bad:
            return bad
        n_logprobs = sp.get("logprobs")
        params = sampling_from({**sp, "logprobs": n_logprobs is not None, "top_logprobs": n_logprobs or 0},
                               faults_of(request))
        prompt_ids = list(body["token_ids"])
        try:
            gens = self._choices(prompt_ids, params, sp.get("n") or 1, body.get("model"))
        except ContextLengthExceeded as exc:
            return errors.vllm_decoder_too_long(exc.prompt_len, self.engine.config.max_model_len)
        if isinstance(gens, web.Response):
            return gens
        gens, _ = await self.state.control.flow(request, body, prompt_ids, gens, params)
        if body.get("stream"):
            async with SSE(request) as sse:
                for chunk in generate.stream_chunks(self.engine, self.profile, gens[0], params.logprobs):
                    await sse.send(chunk)
            return sse.resp
        start = sp.get("routed_experts_prompt_start")
        out = generate.answer(self.engine, self.profile, self.model, prompt_ids, gens, params.logprobs, mode,
                              start if isinstance(start, int) else 0, self.state.control.version or "default")
        return await send_json(request, mutate.apply(faults_of(request), out))

    async def completions(self, request):
        body = await self._body(request, route="completions")
        if isinstance(body, web.Response):
            return body
        if body.get("suffix") is not None:  # the served model has no fill-in-the-middle rendering (recorded)
            return errors.vllm_error(400, "suffix is only supported for models with FIM completion rendering",
                                     "BadRequestError", "suffix")
        bad = self._check_sampling(body, route="completions")
        if bad:
            return bad
        prompt = body["prompt"]
        if isinstance(prompt, str):
            prompt_ids = self.engine.encode(prompt)
        elif isinstance(prompt, list) and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in prompt):
            prompt_ids = list(prompt)
            bad = self._vocab_error(prompt_ids)
            if bad:
                return bad
        else:
            return errors.vllm_validation("body.prompt", "string_type", "Input should be a valid string",
                                          repr(prompt) if not isinstance(prompt, list) else f"'<list of {len(prompt)} items>'")
        prompt_ids = vllm_requests.prompt_cut(prompt_ids, body.get("truncate_prompt_tokens"))
        n_logprobs = body.get("logprobs")  # (an int by now: the request model coerced or refused it)
        params = sampling_from({**body, "logprobs": n_logprobs is not None, "top_logprobs": n_logprobs or 0},
                               faults_of(request))
        try:
            gens = self._choices(prompt_ids, params, body.get("n") or 1, body.get("model"))
        except ContextLengthExceeded as exc:
            return errors.vllm_decoder_too_long(exc.prompt_len, self.engine.config.max_model_len)
        if isinstance(gens, web.Response):
            return gens
        # (a completion was never paced as a whole: only a control plane paces it, token by token)
        gens, pace = await self.state.control.flow(request, body, prompt_ids, gens, params, streamed=True)
        if body.get("stream"):
            return await self._stream_completions(request, body, prompt_ids, gens, params, pace)
        want_ids = bool(body.get("return_token_ids"))
        out = {"id": new_id("cmpl-"), "object": "text_completion", "created": int(time.time()), "model": self.model,
               "choices": [{"index": i, "text": gen.text, "logprobs": self._completion_logprobs(gen, params),
                            "finish_reason": gen.finish_reason, "stop_reason": gen.stop_reason,
                            "token_ids": list(gen.token_ids) if want_ids else None, "prompt_logprobs": None,
                            "prompt_token_ids": prompt_ids if want_ids else None,
                            "routed_experts": self._experts(gen, "completions", body),
                            **weight_versions(self.profile, self.state.control, gen, body, "completions")} for i, gen in enumerate(gens)],
               "service_tier": None, "system_fingerprint": self.fingerprint,
               "usage": usage(len(prompt_ids), sum(len(g.token_ids) for g in gens), self.profile.omitted_when_null),
               "kv_transfer_params": None, "ec_transfer_params": None, "metrics": None}
        return await send_json(request, mutate.apply(faults_of(request), out))


    async def _stream_completions(self, request, body, prompt_ids, gens: list[Generation], params: SamplingParams,
                                  pace: bool = True):
        """A streamed /v1/completions answer (recorded from vLLM 0.30 and 0.32): a chunk per token of each
        choice, the choices interleaved step by step, the last one of a choice with its finish_reason; the
        system fingerprint on the last chunk, or on the usage chunk when `stream_options.include_usage`."""
        want_ids = bool(body.get("return_token_ids"))
        head = {"id": new_id("cmpl-"), "object": "text_completion", "created": int(time.time()), "model": self.model}
        usage_asked = bool((body.get("stream_options") or {}).get("include_usage"))
        steps = []
        for index, gen in enumerate(gens):
            lps = self._completion_logprobs(gen, params)
            pieces, last = text_pieces(self.engine, gen), len(gen.token_ids) - 1
            for k, (tid, piece) in enumerate(zip(gen.token_ids, pieces)):
                steps.append((k, index, {
                    "index": index, "text": piece,
                    "logprobs": {key: [values[k]] for key, values in lps.items()} if lps else None,
                    "finish_reason": gen.finish_reason if k == last else None,
                    "stop_reason": gen.stop_reason if k == last else None,
                    "prompt_token_ids": list(prompt_ids) if want_ids and k == 0 else None,
                    "token_ids": [tid] if want_ids else None,
                    **weight_versions(self.profile, self.state.control, gen, body, "completions", k == last)}))
        chunks = [{**head, "choices": [choice]} for choice in interleaved(steps)]
        if not usage_asked:  # (the usage chunk carries it when there is one)
            chunks[-1]["system_fingerprint"] = self.fingerprint
        return await stream(request, self.engine, chunks,
                            self._usage_chunk(head, prompt_ids, gens) if usage_asked else None, pace)

    def _completion_logprobs(self, gen: Generation, params: SamplingParams) -> dict | None:
        if not params.logprobs:
            return None
        toks = [self.engine.token_text(t) for t in gen.token_ids]
        offsets, pos = [], 0
        for t in toks:
            offsets.append(pos)
            pos += len(t)
        tops = gen.top_logprobs or [[(t, lp)] for t, lp in zip(gen.token_ids, gen.logprobs)]
        return {"text_offset": offsets, "token_logprobs": list(gen.logprobs), "tokens": toks,
                "top_logprobs": [{self.engine.token_text(a): v for a, v in alts} for alts in tops]}


def create_app(state: ServerState, profile: Profile, tool_parser: str | None = "hermes") -> web.Application:
    """The routes `profile` serves; `tool_parser=None` emulates a server started without
    --enable-auto-tool-choice."""
    h = VLLMHandlers(state, profile, tool_parser)
    handlers = {"models": h.models, "health": h.health, "version": h.version, "tokenize": h.tokenize,
                "detokenize": h.detokenize, "chat": h.chat, "chat_tokens": h.chat_tokens, "generate": h.generate,
                "completions": h.completions}
    app = make_app(state, STYLE, [(*ROUTES[name], handlers[name]) for name in ROUTES if profile.serves(name)])
    metrics.add_routes(app, profile.metrics)
    for plane in (state.control.plane, state.control.lora_plane):
        if plane is not None:
            control_routes.attach(app, plane, VLLMControl(state.control, plane, h.model))
    return app
