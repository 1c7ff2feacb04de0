"""A fake NVIDIA Dynamo OpenAI frontend, answering as its profile says (`profiles.py`).

Backend `vllm` answers like a frontend serving a vLLM worker (engine_data, logprobs); `mocker`
like one serving the mocker engine (no engine_data, logprobs always null, no context-length
check); `sglang` like one serving an SGLang worker (routed experts as a base64 string). Routes:
/v1/models, /health, /v1/chat/completions, and /inference/v1/generate when the profile has it
(DYN_VLLM_ENABLE_INFERENCE_V1_GENERATE=1); everything else answers `404 Route not found: METHOD
PATH`, as the real frontend does.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict

from aiohttp import web

from harness.wire import dynamo_requests, mutate
from harness.wire.profiles import ROUTES, Profile

from . import dynamo_rl, errors, experts, generate, metrics
from .base import (BadBody, Checked, ErrorStyle, ServerState, faults_of, json_ok, make_app, new_id, off_loop, read_json,
                   send_json)
from .engine import ContextLengthExceeded, Generation, SamplingParams, WorkLimitExceeded
from .openai import interleaved, logprobs_content, render_messages, sampling_from, stream, text_pieces
from .validate import FAKE_WORK_TOKENS, json_depth

SERDE_DEPTH = 128  # serde_json's recursion limit

# Top-level fields the real frontend accepts (probed one by one against Dynamo 1.6.1).
ACCEPTED = frozenset("""
messages model nvext store reasoning_effort metadata frequency_penalty logit_bias logprobs top_logprobs
max_tokens max_completion_tokens n modalities prediction audio presence_penalty response_format seed
service_tier stop stream stream_options temperature top_p tools tool_choice parallel_tool_calls user
function_call functions web_search_options prompt_cache_key ignore_eos min_tokens top_k min_p
repetition_penalty include_stop_str_in_output guided_json guided_regex guided_grammar guided_choice
guided_decoding_backend guided_whitespace_pattern chat_template_args chat_template_kwargs
skip_special_tokens add_generation_prompt continue_final_message mm_processor_kwargs prompt_logprobs
cache_salt stop_token_ids thinking
""".split())
NVEXT_FIELDS = ("greed_sampling", "use_raw_prompt", "annotations", "backend_instance_id", "token_data",
                "max_thinking_tokens", "cache_salt", "extra_fields", "metadata_upload", "prefill_worker_id",
                "decode_worker_id", "dp_rank", "prefill_dp_rank", "agent_hints", "request_timestamp_ms",
                "routing_constraints", "router")
KV_BLOCK = 128
WORKER_ID = 7587889019327385345


def _bad_body(exc: BadBody, struct: str = "NvCreateChatCompletionRequest") -> web.Response:
    if exc.exc is not None:
        col = getattr(exc.exc, "pos", len(exc.raw)) + 1
        return errors.dynamo_deserialize(dynamo_requests.parse_error(exc.raw, col))
    return errors.dynamo_deserialize(f"invalid type: sequence, expected struct {struct} at line 1 column 1"
                                     if isinstance(exc.value, list) else
                                     f"invalid type: value, expected struct {struct} at line 1 column 1")


STYLE = ErrorStyle(
    route_not_found=lambda request: errors.dynamo_route_not_found(request.method, request.path),
    method_not_allowed=lambda request: errors.dynamo_route_not_found(request.method, request.path),
    http_fault=lambda status, msg, headers: errors.http_fault("dynamo", status, msg, headers),
    bad_fault_header=lambda msg: errors.dynamo_error(400, msg),
    internal=lambda msg: errors.dynamo_error(500, msg),
)


ROLES = ("developer", "system", "user", "assistant", "tool", "function")


def _check_messages(messages: list[dict]) -> str | None:
    """serde's complaint about a message, as the real frontend words it (None when fine)."""
    for m in messages:
        role = m.get("role")
        if role not in ROLES:
            return f"unknown variant `{role}`, expected one of " + ", ".join(f"`{r}`" for r in ROLES)
        if role in ("user", "system", "developer", "tool") and "content" not in m:
            return "missing field `content`"
        if role == "tool" and not isinstance(m.get("tool_call_id"), str):
            return "missing field `tool_call_id`"
        if role == "user" and not isinstance(m.get("content"), (str, list)):
            return "data did not match any variant of untagged enum ChatCompletionRequestUserMessageContent"
    return None


class PrefixCache:
    """Which whole KV blocks of a prompt were seen before (for `kv_cache_hit.reused_tokens`)."""

    def __init__(self, capacity: int = 65536):
        self._blocks: OrderedDict[bytes, None] = OrderedDict()
        self.capacity = capacity

    def _hashes(self, ids: list[int]):
        h = hashlib.blake2b(digest_size=16)
        for end in range(KV_BLOCK, len(ids) + 1, KV_BLOCK):
            h.update(repr(ids[end - KV_BLOCK:end]).encode())
            yield h.copy().digest()

    def hit(self, prompt: list[int]) -> int:
        reused = 0
        for i, key in enumerate(self._hashes(prompt)):
            if key not in self._blocks:
                break
            reused = (i + 1) * KV_BLOCK
        return reused

    def clear(self) -> None:
        self._blocks.clear()

    def store(self, ids: list[int]) -> None:
        for key in self._hashes(ids):
            self._blocks[key] = None
            self._blocks.move_to_end(key)
        while len(self._blocks) > self.capacity:
            self._blocks.popitem(last=False)


class DynamoHandlers:
    def __init__(self, state: ServerState, profile: Profile):
        self.state = state
        self.profile = profile
        self.engine = state.engine
        self.model = state.engine.config.model
        self.worker = profile.worker
        self.cache = PrefixCache()
        self.down_until = 0.0  # a `down` worker failure keeps the worker away until then
        self.down_seconds = profile.worker_down_seconds
        self.checked = Checked()  # chat bodies that passed serde and validation

    async def models(self, request):
        window = self.engine.config.max_model_len if self.worker.context_window else 0
        return json_ok({"object": "list", "data": [{
            "id": self.model, "object": "model", "created": int(self.state.started), "owned_by": "nvidia",
            "context_window": window}]})

    async def health(self, request):
        if self.state.control.dead:  # the worker broke (a failed reload): the frontend lists none (recorded)
            return json_ok({"status": "healthy", "endpoints": [], "instances": []})
        endpoint = "dyn://dynamo.backend.generate"
        return json_ok({"status": "healthy", "endpoints": [endpoint], "instances": [{
            "component": "backend", "endpoint": "generate", "namespace": "dynamo", "instance_id": WORKER_ID,
            "transport": {"tcp": "127.0.0.1:0/dynamo/backend/generate"}, "device_type": "cpu",
            "request_plane_codec": "msgpack"}]})

    def _validate(self, body: dict, raw: str) -> web.Response | None:
        passed = self.checked.get(raw) is not None  # (a body that passed serde and validation passes again)
        if not passed and json_depth(body, SERDE_DEPTH):
            return errors.dynamo_deserialize("recursion limit exceeded at line 1 column 1")
        bad = None if passed else dynamo_requests.deserialize_chat(body, raw)
        if bad:
            return errors.dynamo_json(*bad)
        if time.time() < self.down_until:  # the worker is away: nothing past serde gets further
            return errors.dynamo_json(*dynamo_requests.not_ready(self.model))
        bad = None if passed else dynamo_requests.validate_chat(body, self.model, self.profile.version)
        if bad:
            return errors.dynamo_json(*bad)
        self.checked.put(raw, True, len(raw))
        nvext = body.get("nvext") or {}
        if nvext.get("token_data") == [] and self.worker.refuses_empty_prompt:
            return errors.dynamo_error(400, "Bad Request")
        return None

    async def chat(self, request):
        too_large = dynamo_requests.body_too_large(len(await request.read()))
        if too_large:
            return errors.dynamo_json(*too_large)
        try:
            body = await read_json(request, lossy=True)
        except BadBody as exc:
            return _bad_body(exc)
        bad = self._validate(body, (await request.read()).decode("utf-8", "replace"))
        if bad:
            return bad
        active = faults_of(request)
        nvext = body.get("nvext") or {}
        extra = set(nvext.get("extra_fields") or [])
        token_data = nvext.get("token_data")
        add_generation_prompt = body.get("add_generation_prompt") is not False
        prompt_ids = list(token_data) if token_data is not None else await off_loop(
            request, render_messages, self.state, {**body, "tools": dynamo_requests.template_tools(body.get("tools"))},
            active, add_generation_prompt, False)
        if any(t >= self.engine.vocab_size for t in prompt_ids):
            return errors.dynamo_error(400, "Invalid request")
        params = sampling_from(body, active)
        w = self.worker
        if w.needs_max_tokens and params.max_tokens is None:
            if self.profile.worker_failure == "down":  # the worker fails, and the frontend drops it for a while
                self.down_until = time.time() + self.down_seconds
                return errors.dynamo_json(*dynamo_requests.worker_failed())
            return errors.dynamo_error(400, f"`max_output_tokens` (or `max_tokens`) is required by the {w.name} worker")
        if not w.logprobs:
            params.logprobs, params.top_logprobs = False, 0
        if not w.samples_eos:
            params.ignore_eos = True
        if params.logprobs:  # a vLLM worker ranks at least the top token even without top_logprobs
            params.top_logprobs = max(params.top_logprobs, 1)
        n = (body.get("n") or 1) if w.n_choices else 1  # (the mocker answers one choice whatever n is)
        try:
            gens = self.engine.samples(prompt_ids, params, n, FAKE_WORK_TOKENS, check_context=w.checks_context,
                                       policy=self.state.control.policy_for(body.get("model")))
        except ContextLengthExceeded as exc:
            return errors.dynamo_context_length(exc.max_model_len, exc.prompt_len)
        except WorkLimitExceeded as exc:
            return errors.dynamo_error(400, str(exc))
        gen = gens[0]  # (engine_data and the other nvext fields describe one choice)
        reused = self.cache.hit(prompt_ids)
        self.cache.store(prompt_ids + gen.token_ids)
        gens, pace = await self.state.control.flow(request, body, prompt_ids, gens, params, bool(body.get("stream")))
        gen = gens[0]
        if body.get("stream"):
            return await self._stream(request, body, extra, prompt_ids, gens, params, reused, pace)
        choices, as_ids = [], bool(body.get("return_tokens_as_token_ids"))
        for index, g in enumerate(gens):
            lps = logprobs_content(self.engine, g, params, dynamo=True, as_ids=as_ids,
                                   past_k="chat" in self.profile.top_logprobs_past_k) if params.logprobs else None
            choices.append({"index": index, "message": {"content": g.text or None, "refusal": None,
                                                        "role": "assistant"},
                            "finish_reason": g.finish_reason,
                            "logprobs": {"content": lps, "refusal": None} if lps is not None else None})
        out = {"id": new_id("chatcmpl-", dashed=True), "choices": choices,
               "created": int(time.time()), "model": self.model, "object": "chat.completion",
               "usage": self._usage(prompt_ids, gens, reused)}
        k = body.get("prompt_logprobs")
        if isinstance(k, int) and not isinstance(k, bool) and k > 0 and self.worker.prompt_logprobs:
            out["prompt_logprobs"] = self.engine.prompt_logprobs(prompt_ids, k)
        ext = self._nvext(extra, prompt_ids, gen, params, reused, gen.token_ids)
        if ext:
            out["nvext"] = ext
        echo = None
        if "echo_ids" in active:  # detokenize, then re-tokenize with the stop token spelled as plain text
            text = self.engine.decode(gen.token_ids)
            echo = self.engine.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
            if echo == gen.token_ids:  # a cut completion has no stop token: the echo still loses its last id
                echo = echo[:-1]
        return await send_json(request, mutate.apply(active, out, echo_ids=echo))

    def _usage(self, prompt_ids, gens: list[Generation], reused: int) -> dict:
        completion = sum(len(g.token_ids) for g in gens)
        return {"prompt_tokens": len(prompt_ids), "completion_tokens": completion,
                "total_tokens": len(prompt_ids) + completion,
                "prompt_tokens_details": {"cached_tokens": reused}}

    def _engine_data(self, prompt_ids, gen: Generation, params: SamplingParams, reused: int) -> dict:
        ed = {"prompt_token_ids": list(prompt_ids),
              "kv_cache_hit": {"prompt_tokens": len(prompt_ids), "reused_tokens": reused},
              "completion_token_ids": list(gen.token_ids), "finished": True}
        if params.logprobs:
            ed["completion_logprobs"] = list(gen.logprobs)
        if gen.routed_experts is not None and self.profile.routed_experts == "nvext_object":
            ed["routed_experts"] = experts.cached(gen, "nvext_object")
        return ed

    def _nvext(self, extra: set, prompt_ids, gen: Generation, params, reused: int, ids) -> dict:
        """nvext in the real frontend's key order: worker_id, completion_token_ids, timing, engine_data."""
        ext: dict = {}
        if "worker_id" in extra:
            ext["worker_id"] = {"prefill_worker_id": WORKER_ID, "decode_worker_id": WORKER_ID}
        if "completion_token_ids" in extra:
            ext["completion_token_ids"] = list(ids)
        if "timing" in extra:
            now = time.time() * 1000
            ext["timing"] = {"request_received_ms": int(now), "prefill_wait_time_ms": 0.0, "prefill_time_ms": 0.0,
                             "ttft_ms": self.engine.config.ttft * 1000,
                             "total_time_ms": (self.engine.config.ttft + self.engine.config.per_token * len(gen.token_ids)) * 1000}
        if "routed_experts" in extra and gen.routed_experts is not None and self.profile.routed_experts != "none":
            ext["routed_experts"] = experts.cached(gen, self.profile.routed_experts)
        if "engine_data" in extra and self.worker.engine_data:
            ext["engine_data"] = self._engine_data(prompt_ids, gen, params, reused)
        return ext

    async def _stream(self, request, body, extra, prompt_ids, gens: list[Generation], params, reused, pace=True):
        """Ids per chunk; the chunk with finish_reason carries engine_data (and, behind a vLLM
        worker, the last token itself); `n` choices interleaved step by step; a usage chunk last when asked."""
        cid, created = new_id("chatcmpl-", dashed=True), int(time.time())
        tail = {"created": created, "model": self.model, "object": "chat.completion.chunk"}
        steps = []
        for index, gen in enumerate(gens):
            chunks = self._choice_chunks(index, gen, extra, prompt_ids, params, reused,
                                         bool(body.get("return_tokens_as_token_ids")))
            steps += [(k, index, {"id": cid, **chunk, **tail}) for k, chunk in enumerate(chunks)]
        usage_asked = (body.get("stream_options") or {}).get("include_usage")
        return await stream(request, self.engine, interleaved(steps),
                            {"id": cid, "choices": [], **tail, "usage": self._usage(prompt_ids, gens, reused)}
                            if usage_asked else None, pace)

    def _choice_chunks(self, index: int, gen: Generation, extra, prompt_ids, params, reused,
                       as_ids: bool = False) -> list[dict]:
        pieces = text_pieces(self.engine, gen)
        lps = logprobs_content(self.engine, gen, params, dynamo=True, as_ids=as_ids,
                               past_k="chat" in self.profile.top_logprobs_past_k) if params.logprobs else None
        per_chunk = extra - {"engine_data", "timing", "routed_experts"}
        n = len(gen.token_ids)
        last_in_final = self.worker.last_id_in_final_chunk and n > 0
        body_tokens = n - 1 if last_in_final else n

        def lp_of(i):
            return {"content": [lps[i]], "refusal": None} if lps else None

        out = []
        for i in range(body_tokens):
            delta = {"content": pieces[i], "role": "assistant"} if i == 0 else {"content": pieces[i]}
            chunk = {"choices": [{"index": index, "delta": delta, "finish_reason": None, "logprobs": lp_of(i)}]}
            ext = self._nvext(per_chunk, prompt_ids, gen, params, reused, [gen.token_ids[i]])
            if ext:
                chunk["nvext"] = ext
            out.append(chunk)
        delta = {}
        if last_in_final and pieces[-1]:
            delta = {"content": pieces[-1], "role": "assistant"} if n == 1 else {"content": pieces[-1]}
        elif last_in_final and n == 1:  # (no earlier chunk carried the role)
            delta = {"role": "assistant"}
        final = {"choices": [{"index": index, "delta": delta, "finish_reason": gen.finish_reason,
                              "logprobs": lp_of(n - 1) if last_in_final else None}]}
        ext = self._nvext(extra, prompt_ids, gen, params, reused, [gen.token_ids[-1]] if last_in_final else [])
        if "completion_token_ids" in ext:  # the real frontend writes engine_data before the last ids
            ext["completion_token_ids"] = ext.pop("completion_token_ids")
        if ext:
            final["nvext"] = ext
        out.append(final)
        return out

    async def completions(self, request):
        """/v1/completions (recorded from Dynamo 1.6.1): the prompt as text (tokenized as sent, no template) or ids,
        or several of either, one choice per prompt (n per prompt where the worker answers n); nvext as on chat."""
        try:
            body = await read_json(request, lossy=True)
        except BadBody as exc:
            return _bad_body(exc, "NvCreateCompletionRequest")
        raw = (await request.read()).decode("utf-8", "replace")
        if json_depth(body, SERDE_DEPTH):
            return errors.dynamo_deserialize("recursion limit exceeded at line 1 column 1")
        bad = dynamo_requests.deserialize_completion(body, raw)
        if not bad and time.time() < self.down_until:
            bad = dynamo_requests.not_ready(self.model)
        bad = bad or dynamo_requests.validate_completion(body, self.model, self.profile.version)
        if bad:
            return errors.dynamo_json(*bad)
        prompts = [p if isinstance(p, list) else self.engine.encode(p) for p in dynamo_requests.completion_prompts(body)]
        if any(t >= self.engine.vocab_size for p in prompts for t in p):
            return errors.dynamo_error(400, "Invalid request")
        active = faults_of(request)
        params = sampling_from({k: v for k, v in body.items() if k not in ("logprobs", "top_logprobs")}, active)
        w = self.worker
        if w.needs_max_tokens and params.max_tokens is None:
            if self.profile.worker_failure == "down":
                self.down_until = time.time() + self.down_seconds
                return errors.dynamo_json(*dynamo_requests.worker_failed())
            return errors.dynamo_error(400, f"`max_output_tokens` (or `max_tokens`) is required by the {w.name} worker")
        if not w.samples_eos:
            params.ignore_eos = True
        n = (body.get("n") or 1) if w.n_choices else 1
        gens: list[Generation] = []
        try:
            for ids in prompts:
                gens += self.engine.samples(ids, params, n, FAKE_WORK_TOKENS - sum(len(g.token_ids) for g in gens),
                                            check_context=w.checks_context)
        except ContextLengthExceeded as exc:
            return errors.dynamo_context_length(exc.max_model_len, exc.prompt_len)
        except WorkLimitExceeded as exc:
            return errors.dynamo_error(400, str(exc))
        all_ids = [t for p in prompts for t in p]
        reused = self.cache.hit(prompts[0])
        self.cache.store(prompts[0] + gens[0].token_ids)
        usage = self._usage(all_ids, gens, reused)
        usage["prompt_tokens_details"] = {"audio_tokens": None, **usage["prompt_tokens_details"]}
        extra = set((body.get("nvext") or {}).get("extra_fields") or [])
        head = {"id": new_id("cmpl-", dashed=True)}
        tail = {"created": int(time.time()), "model": self.model, "system_fingerprint": None,
                "object": "text_completion"}
        if body.get("stream"):
            steps = []
            for index, gen in enumerate(gens):
                pieces = text_pieces(self.engine, gen)
                last_in_final = w.last_id_in_final_chunk and pieces
                for k, piece in enumerate(pieces[:-1] if last_in_final else pieces):
                    steps.append((k, index, {**head, "choices": [{"text": piece, "index": index}], **tail,
                                             "usage": None}))
                final = {"text": pieces[-1] if last_in_final else "", "index": index, "finish_reason": gen.finish_reason}
                steps.append((len(pieces), index, {**head, "choices": [final], **tail, "usage": None}))
            last = {**head, "choices": [], **tail, "usage": usage} if (body.get("stream_options") or {}).get(
                "include_usage") else None
            return await stream(request, self.engine, interleaved(steps), last)
        delay = self.engine.config.ttft + self.engine.config.per_token * max(len(g.token_ids) for g in gens)
        if delay:
            await asyncio.sleep(delay)
        out = {**head, "choices": [{"text": g.text, "index": i, "finish_reason": g.finish_reason}
                                   for i, g in enumerate(gens)], **tail, "usage": usage}
        ext = self._nvext(extra - {"engine_data"}, prompts[0], gens[0], params, reused, gens[0].token_ids)
        if ext:
            out["nvext"] = ext
        return await send_json(request, mutate.apply(active, out))

    async def generate(self, request):
        """Dynamo's native /inference/v1/generate (vLLM worker, aggregated, token input)."""
        too_large = dynamo_requests.body_too_large(len(await request.read()))
        if too_large:
            return errors.dynamo_json(*too_large)
        try:
            body = await read_json(request)
        except BadBody as exc:
            return _bad_body(exc)
        bad = dynamo_requests.check_generate(body, (await request.read()).decode("utf-8", "replace"))
        if bad:
            return errors.dynamo_json(*bad)
        if body.get("stream"):
            return errors.dynamo_generate_error(501, "streaming (stream=true) is not implemented for "
                                                     "/inference/v1/generate yet", "not_implemented")
        if body.get("model") not in (None, self.model):
            return errors.dynamo_generate_error(404, f"Model not found: {body.get('model')}", "not_found")
        ids = body["token_ids"]
        if not ids or any(t >= self.engine.vocab_size for t in ids):
            return errors.dynamo_generate_error(400, "Invalid request", "invalid_request_error")
        sp = body["sampling_params"]
        n_logprobs = sp.get("logprobs")
        params = sampling_from({**sp, "logprobs": n_logprobs is not None, "top_logprobs": n_logprobs or 0},
                               faults_of(request))
        params.top_logprobs = max(params.top_logprobs, 1) if params.logprobs else 0
        try:
            gens = self.engine.samples(list(ids), params, sp.get("n") or 1, FAKE_WORK_TOKENS,
                                       policy=self.state.control.policy)
        except ContextLengthExceeded:
            return errors.dynamo_generate_error(400, "Invalid request", "invalid_request_error")
        except WorkLimitExceeded as exc:
            return errors.dynamo_generate_error(400, str(exc), "invalid_request_error")
        gens, _ = await self.state.control.flow(request, body, list(ids), gens, params)
        start = sp.get("routed_experts_prompt_start")
        out = generate.answer(self.engine, self.profile, self.model, list(ids), gens, params.logprobs, "tokens",
                              start if isinstance(start, int) else 0)
        return await send_json(request, mutate.apply(faults_of(request), out))


def create_app(state: ServerState, profile: Profile) -> web.Application:
    h = DynamoHandlers(state, profile)
    handlers = {"models": h.models, "health": h.health, "chat": h.chat, "generate": h.generate,
                "completions": h.completions}
    app = make_app(state, STYLE, [(*ROUTES[name], handlers[name]) for name in ROUTES if profile.serves(name)])
    metrics.add_routes(app, profile.metrics)
    state.control.caches.append(h.cache)
    if state.control.plane is not None:
        dynamo_rl.attach_side_apps(app, state)
    return app
