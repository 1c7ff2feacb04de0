"""dynamo_chat: everything rides /v1/chat/completions; stitched turns send placeholder messages
plus `nvext.token_data`, engine tokens come back in nvext; bridge tokens are rendered locally."""

from __future__ import annotations

import logging

from ...tokenizer import render_ids
from .base import Sampling, Sent, Transport, merge_extra

log = logging.getLogger("harness.client")

EXTRA_FIELDS = ["engine_data", "completion_token_ids"]
PLACEHOLDER_MESSAGES = [{"role": "user", "content": ""}]
# vLLM-only request keys that Dynamo's validator rejects with 400 (probed against Dynamo 1.6.1).
VLLM_ONLY_KEYS = ("return_token_ids", "spaces_between_special_tokens", "priority", "add_special_tokens",
                  "bad_words", "chat_template", "documents", "echo", "kv_transfer_params", "length_penalty",
                  "request_id", "structured_outputs", "truncate_prompt_tokens", "use_beam_search", "vllm_xargs",
                  "tokens")


class DynamoChat(Transport):
    name = "dynamo_chat"

    def __init__(self, config, http, tokenizer):
        super().__init__(config, http)
        self.tokenizer = tokenizer

    def body(self, messages, tools, s: Sampling, token_data: list[int] | None) -> dict:
        body = self.common_body(messages, tools, s)
        if s.max_tokens is not None:
            body["max_tokens"] = s.max_tokens
        body["nvext"] = {"extra_fields": list(EXTRA_FIELDS)}
        body = merge_extra(body, self.config.extra_body, s.extra_body, {"nvext": s.nvext} if s.nvext else None)
        priority = s.priority if s.priority is not None else body.get("priority")
        scrubbed = [k for k in VLLM_ONLY_KEYS if body.pop(k, None) is not None]
        if scrubbed:
            log.debug("dynamo_chat: dropped vLLM-only keys %s", scrubbed)
        if priority is not None:
            hints = body["nvext"].setdefault("agent_hints", {})
            hints["priority"] = priority
        if token_data is not None:
            body["nvext"]["token_data"] = list(token_data)
        return body

    async def send_messages(self, messages, tools, s: Sampling) -> Sent:
        tokens, parsed = await self.post_chat(f"{self.config.base_url}/chat/completions",
                                              self.body(messages, tools, s, None), None)
        if tokens.prompt_ids is None and tokens.completion_ids is not None:
            # A backend without engine_data (e.g. the mocker) returns completion ids only: the
            # prompt is what the local template renders, which the parity guard vouches for.
            tokens.prompt_ids = await self.render(messages, tools, True)
            tokens.prompt_source = "local"
            tokens.notes.append("the engine returned no prompt ids; the local rendering stands in for them")
        return Sent(tokens, "/v1/chat/completions", parsed)

    async def send_tokens(self, prompt_ids, messages, tools, s: Sampling) -> Sent:
        tokens, parsed = await self.post_chat(f"{self.config.base_url}/chat/completions",
                                              self.body(PLACEHOLDER_MESSAGES, tools, s, prompt_ids), prompt_ids)
        return Sent(tokens, "/v1/chat/completions+token_data", parsed)

    async def render(self, messages, tools, add_generation_prompt) -> list[int]:
        return render_ids(self.tokenizer, messages, tools, add_generation_prompt)
