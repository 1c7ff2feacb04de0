"""The public entry point: one turn = stitch -> transport -> normalize -> checks -> TurnResult.

    async with TitoClient(ClientConfig(base_url=..., model=...)) as client:
        convo = client.conversation()
        r1 = await convo.turn([{"role": "user", "content": "hi"}], max_tokens=64)
        r2 = await convo.turn([..., r1.message, {"role": "tool", "content": "42"}])
        r2.mode, r2.fallback_reason, r2.prompt_ids, r2.completion_ids, r2.completion_logprobs
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from .config import ClientConfig
from .errors import ContextLengthError, LogprobMismatchError, RoutedExpertsError, TokenizerMismatchError
from .http import HTTP
from .parity import ParityReport, compare
from ..wire.routed_experts import RoutedExperts, decode_payload
from .stitching import StitchPlan, TurnRecord, normalize, plan_turn
from .transports.base import Sampling, Transport
from .transports.dynamo import DynamoChat
from .transports.dynamo_generate import DynamoGenerate
from .transports.vllm import VLLMGenerate

log = logging.getLogger("harness.client")
# One parity verdict per (base URL, model, tokenizer, template): later clients reuse it.
_PARITY_CACHE: dict[tuple, ParityReport] = {}
ENGINE_PROMPT_SOURCES = ("engine_data", "nvext", "response")


@dataclass
class TurnResult:
    index: int
    mode: str  # "tito" | "mito"
    fallback_reason: str | None
    fallback_detail: str | None
    prompt_ids: list[int] | None
    completion_ids: list[int] | None
    completion_logprobs: list[float] | None
    finish_reason: str | None
    message: dict
    route: str
    logprobs_missing: bool = False
    tokens_dropped: str | None = None
    token_source: str | None = None
    bridge_ids: list[int] = field(default_factory=list)
    routed_experts: RoutedExperts | None = None
    routed_experts_error: str | None = None
    parity: str | None = None  # "ok" | "mismatch" | None (not checked)
    notes: list[str] = field(default_factory=list)
    usage: dict = field(default_factory=dict)

    @property
    def text(self) -> str | None:
        return self.message.get("content")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["routed_experts"] = ({"shape": list(self.routed_experts.shape), "start": self.routed_experts.start,
                                "dtype": str(self.routed_experts.array.dtype)} if self.routed_experts else None)
        return d


def _tokenizer_id(spec) -> str:
    if spec is None or isinstance(spec, str):
        return str(spec)
    return f"{getattr(spec, 'name_or_path', '')}#{id(spec)}"


def _sampling(kwargs: dict) -> Sampling:
    unknown = set(kwargs) - set(Sampling.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown sampling arguments {sorted(unknown)}; pass server extras as extra_body={{...}}")
    return Sampling(**kwargs)


class TitoClient:
    """An async TITO chat client; share one per server, open a `conversation()` per rollout."""

    def __init__(self, config: ClientConfig, http_client: httpx.AsyncClient | None = None):
        self.config = config
        self.http = HTTP(config, http_client)
        self._tokenizer = None
        self._transport: Transport | None = None
        self._max_model_len: int | None | bool = False  # False = not asked yet
        self._init_lock = asyncio.Lock()
        self._parity_key = (config.base_url, config.model, _tokenizer_id(config.tokenizer), config.template)
        self.parity_report: ParityReport | None = None if config.parity_policy == "off" else _PARITY_CACHE.get(self._parity_key)
        self._parity_checked = config.parity_policy == "off" or self.parity_report is not None
        # local bridge tokens (dynamo_*) make a local/engine rendering difference matter for stitching
        self.parity_affects_stitching = config.renderer_transport != "vllm_generate"

    async def __aenter__(self) -> "TitoClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    # -- lazily built parts -----------------------------------------------------------------------
    async def tokenizer(self):
        if self._tokenizer is None:
            spec = self.config.tokenizer
            if spec is not None and hasattr(spec, "apply_chat_template"):
                self._tokenizer = spec
            else:
                from ..tokenizer import load_tokenizer

                self._tokenizer = await asyncio.to_thread(load_tokenizer, spec, self.config.template)
        return self._tokenizer

    async def transport(self) -> Transport:
        async with self._init_lock:
            if self._transport is None:
                if self.config.renderer_transport == "dynamo_chat":
                    self._transport = DynamoChat(self.config, self.http, await self.tokenizer())
                elif self.config.renderer_transport == "dynamo_generate":
                    self._transport = DynamoGenerate(self.config, self.http, await self.tokenizer())
                else:
                    self._transport = VLLMGenerate(self.config, self.http)
            return self._transport

    async def max_model_len(self) -> int | None:
        """The served model's context window from /v1/models (None when the server does not say)."""
        if self._max_model_len is False:
            value = None
            try:
                models = await self.http.get(f"{self.config.base_url}/models")
                for m in models.get("data") or []:
                    if isinstance(m, dict) and m.get("id") == self.config.model:
                        value = m.get("max_model_len") or m.get("context_window") or None
            except Exception as exc:  # the check is advisory: the server's own 400 still applies
                log.debug("could not read max_model_len: %s", exc)
            self._max_model_len = value if isinstance(value, int) and value > 0 else None
        return self._max_model_len

    def conversation(self) -> "Conversation":
        return Conversation(self)

    async def chat(self, messages: list[dict], tools: list[dict] | None = None, **sampling) -> TurnResult:
        """A single messages-in turn with no history (use `conversation()` for multi-turn)."""
        return await self.conversation().turn(messages, tools, **sampling)

    # -- parity -----------------------------------------------------------------------------------
    async def _check_parity(self, transport: Transport, messages, tools, engine_prompt: list[int] | None) -> str | None:
        if self._parity_checked:
            return None if self.parity_report is None else self._parity_verdict()
        self._parity_checked = True
        try:
            tok = await self.tokenizer()
            from ..tokenizer import render_ids

            local = render_ids(tok, messages, tools, True)
            if isinstance(transport, VLLMGenerate):
                engine = await transport.render(messages, tools, True)
            else:
                engine = engine_prompt
            # vllm_generate takes its bridge tokens from the server's /tokenize: a local difference
            # is information there, not a sign that stitched prompts are off-distribution
            self.parity_affects_stitching = not isinstance(transport, VLLMGenerate)
            if engine is None:
                self._parity_checked = False  # try again on a turn that carries engine prompt ids
                return None
            self.parity_report = _PARITY_CACHE[self._parity_key] = compare(engine, local, tok)
        except Exception as exc:
            log.warning("tokenizer parity check could not run: %s", exc)
            return None
        return self._parity_verdict(first=True)

    def _parity_verdict(self, first: bool = False) -> str:
        if not self.parity_report.ok:
            if not self.parity_affects_stitching:
                if first:
                    log.info("tokenizer parity (information: bridge tokens come from the server's /tokenize, so "
                             "stitched prompts are unaffected): %s", self.parity_report.summary())
                return "mismatch"
            if self.config.parity_policy == "raise":
                raise TokenizerMismatchError(self.parity_report)
            if first:
                log.warning("tokenizer parity: %s", self.parity_report.summary())
        return "ok" if self.parity_report.ok else "mismatch"

    @property
    def stitching_blocked(self) -> str | None:
        if (self.config.parity_policy == "mito" and self.parity_affects_stitching and self.parity_report is not None
                and not self.parity_report.ok):
            return self.parity_report.summary()
        return None


class Conversation:
    """One rollout's turns: remembers each turn's engine tokens so later turns can be stitched."""

    def __init__(self, client: TitoClient):
        self.client = client
        self.history: list[TurnRecord] = []
        self.results: list[TurnResult] = []
        self._bridge_cache: dict = {}

    async def turn(self, messages: list[dict], tools: list[dict] | None = None, **sampling) -> TurnResult:
        client, config = self.client, self.client.config
        s = _sampling(sampling)
        msgs = normalize(list(messages))
        tools = normalize(tools) if tools else None
        transport = await client.transport()
        plan: StitchPlan = await plan_turn(self.history, msgs, tools, transport.render, self._bridge_cache,
                                           client.stitching_blocked)
        index = len(self.results)
        if plan.mode == "tito":
            limit = await client.max_model_len() if config.check_context else None
            if limit is not None and len(plan.prompt_ids) >= limit:
                raise ContextLengthError(400, f"stitched prompt of {len(plan.prompt_ids)} tokens does not fit "
                                              f"max_model_len {limit} (checked before sending)",
                                         prompt_tokens=len(plan.prompt_ids), max_model_len=limit)
            sent = await transport.send_tokens(plan.prompt_ids, msgs, tools, s)
        else:
            sent = await transport.send_messages(msgs, tools, s)
        log.debug("turn %d: %s%s via %s", index + 1, plan.mode,
                  f" ({plan.reason}{': ' + plan.detail if plan.detail else ''})" if plan.reason else "", sent.route)
        tokens = sent.tokens
        result = TurnResult(index, plan.mode, plan.reason, plan.detail, tokens.prompt_ids, tokens.completion_ids,
                            tokens.completion_logprobs, tokens.finish_reason, tokens.message, sent.route,
                            logprobs_missing=tokens.completion_logprobs is None, token_source=tokens.token_source,
                            bridge_ids=plan.bridge_ids, notes=list(tokens.notes), usage=tokens.usage)
        self._check_tokens(result)
        self._decode_experts(result, tokens.routed_experts, sent.body)
        if plan.mode == "mito" and config.parity_policy != "off":
            result.parity = await client._check_parity(transport, msgs, tools,
                                                       tokens.prompt_ids if tokens.prompt_source in ENGINE_PROMPT_SOURCES else None)
        elif client.parity_report is not None:
            result.parity = "ok" if client.parity_report.ok else "mismatch"
        self.history.append(TurnRecord(msgs, normalize(result.message), result.prompt_ids, result.completion_ids,
                                       result.finish_reason, result.tokens_dropped))
        self.results.append(result)
        return result

    def _check_tokens(self, r: TurnResult) -> None:
        ids, lps = r.completion_ids, r.completion_logprobs
        if ids is None:
            r.tokens_dropped = "the answer carried no completion ids"
        elif r.prompt_ids is None:
            r.tokens_dropped = "the answer carried no prompt ids"
        elif lps is not None and len(lps) != len(ids):
            if self.client.config.mismatch_policy == "raise":
                raise LogprobMismatchError(len(ids), len(lps))
            r.tokens_dropped = f"{len(lps)} logprobs for {len(ids)} completion ids (engine answer out of sync)"
            log.warning("turn %d: %s; tokens dropped, next turn falls back to MITO", r.index + 1, r.tokens_dropped)
            r.completion_ids = r.prompt_ids = r.completion_logprobs = None
        if r.logprobs_missing and ids is not None:
            r.notes.append("completion ids without logprobs: usable for stitching, not for training")

    def _decode_experts(self, r: TurnResult, payload, body: dict) -> None:
        if payload is None:
            return
        try:
            r.routed_experts = decode_payload(payload, body.get("_blobs"))
        except RoutedExpertsError as exc:
            r.routed_experts_error = str(exc)
            log.warning("turn %d: routed experts not decoded: %s", r.index + 1, exc)
