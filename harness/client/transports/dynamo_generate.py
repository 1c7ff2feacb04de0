"""dynamo_generate: stitched turns go to Dynamo's own `/inference/v1/generate` (served when the
frontend runs with DYN_VLLM_ENABLE_INFERENCE_V1_GENERATE=1 in front of a vLLM worker).

First turns are chat completions with the `nvext` opt-in, as on `dynamo_chat`; bridge tokens are
local (Dynamo has no `/tokenize`), and so is the text of a generated turn (nor `/detokenize`). When
the route answers 404, stitched turns fall back to `nvext.token_data` on chat completions, and
each such turn says so.
"""

from __future__ import annotations

import logging

from ..errors import RouteNotFoundError
from ..response import from_generate
from .base import Sampling, Sent
from .dynamo import DynamoChat

log = logging.getLogger("harness.client")
NO_ROUTE_NOTE = ("Dynamo answered 404 for /inference/v1/generate (start the frontend with "
                 "DYN_VLLM_ENABLE_INFERENCE_V1_GENERATE=1); this turn went through nvext.token_data")


class DynamoGenerate(DynamoChat):
    name = "dynamo_generate"

    def __init__(self, config, http, tokenizer):
        super().__init__(config, http, tokenizer)
        self.native = True  # until the route answers 404

    async def send_tokens(self, prompt_ids, messages, tools, s: Sampling) -> Sent:
        if self.native:
            try:
                return await self._generate(prompt_ids, s)
            except RouteNotFoundError as exc:
                log.warning("%s (%s)", NO_ROUTE_NOTE, exc)
                self.native = False
        sent = await super().send_tokens(prompt_ids, messages, tools, s)
        sent.tokens.notes.append(NO_ROUTE_NOTE)
        return sent

    async def _generate(self, prompt_ids, s: Sampling) -> Sent:
        sp: dict = {"logprobs": s.top_logprobs or 0}
        for key, value in (("max_tokens", s.max_tokens), ("temperature", s.temperature), ("top_p", s.top_p),
                           ("seed", s.seed), ("stop", s.stop)):
            if value is not None:
                sp[key] = value
        body = {"model": self.config.model, "token_ids": list(prompt_ids), "sampling_params": sp}
        parsed = await self.http.post(f"{self.config.root_url}/inference/v1/generate", body)
        tokens = from_generate(parsed, prompt_ids, None)
        ids = tokens.completion_ids
        if ids is not None:  # no /detokenize on Dynamo: the text comes from the local tokenizer
            body_ids = ids[:-1] if ids and ids[-1] == self.tokenizer.eos_token_id and tokens.finish_reason == "stop" else ids
            tokens.message["content"] = self.tokenizer.decode(body_ids, skip_special_tokens=True)
        if tokens.routed_experts is None and isinstance(parsed.get("nvext"), dict):
            tokens.routed_experts = parsed["nvext"].get("routed_experts")
        return Sent(tokens, "/inference/v1/generate", parsed)
