"""vllm_generate: chat completions with ids for messages-in turns; stitched turns to
/v1/chat/completions/tokens (prime-rl style) or /inference/v1/generate (upstream vLLM);
bridge tokens from the server's /tokenize."""

from __future__ import annotations

import logging

from ..errors import RouteNotFoundError
from ..response import from_generate
from .base import Sampling, Sent, Transport, merge_extra

log = logging.getLogger("harness.client")


class VLLMGenerate(Transport):
    name = "vllm_generate"

    def __init__(self, config, http):
        super().__init__(config, http)
        self.route = config.tito_route  # "auto" until the server has been probed

    def chat_body(self, messages, tools, s: Sampling) -> dict:
        body = self.common_body(messages, tools, s)
        body["return_token_ids"] = True
        if s.max_tokens is not None:
            body["max_completion_tokens"] = s.max_tokens
        if s.priority is not None:
            body["priority"] = s.priority
        return merge_extra(body, self.config.extra_body, s.extra_body)

    async def send_messages(self, messages, tools, s: Sampling) -> Sent:
        url = f"{self.config.base_url}/chat/completions"
        tokens, body = await self.post_chat(url, self.chat_body(messages, tools, s), None)
        return Sent(tokens, "/v1/chat/completions", body)

    async def send_tokens(self, prompt_ids, messages, tools, s: Sampling) -> Sent:
        if self.route in ("auto", "chat_tokens"):
            body = self.chat_body(messages, tools, s)
            body["tokens"] = list(prompt_ids)
            try:
                tokens, parsed = await self.post_chat(f"{self.config.base_url}/chat/completions/tokens", body, prompt_ids)
                self.route = "chat_tokens"
                return Sent(tokens, "/v1/chat/completions/tokens", parsed)
            except RouteNotFoundError:
                if self.route != "auto":
                    raise
                log.info("no /v1/chat/completions/tokens on %s; stitched turns go to /inference/v1/generate",
                         self.config.base_url)
                self.route = "generate"
        return await self._generate(prompt_ids, s)

    async def _generate(self, prompt_ids, s: Sampling) -> Sent:
        sp = {"logprobs": s.top_logprobs or 0}
        for key, value in (("max_tokens", s.max_tokens), ("temperature", s.temperature), ("top_p", s.top_p),
                           ("seed", s.seed), ("stop", s.stop)):
            if value is not None:
                sp[key] = value
        body = {"model": self.config.model, "token_ids": list(prompt_ids), "sampling_params": sp}
        if s.priority is not None:
            body["priority"] = s.priority
        parsed = await self.http.post(f"{self.config.root_url}/inference/v1/generate", body)
        choice = (parsed.get("choices") or [{}])[0] if isinstance(parsed.get("choices"), list) else {}
        ids = choice.get("token_ids") if isinstance(choice, dict) else None
        text = None
        if isinstance(ids, list):
            # an EOS or stop-token finish ends with that token, which the message text leaves out
            if ids and choice.get("finish_reason") == "stop" and not isinstance(choice.get("stop_reason"), str):
                ids = ids[:-1]
            out = await self.http.post(f"{self.config.root_url}/detokenize", {"model": self.config.model, "tokens": ids})
            text = out.get("prompt", "")
        return Sent(from_generate(parsed, prompt_ids, text), "/inference/v1/generate", parsed)

    async def render(self, messages, tools, add_generation_prompt) -> list[int]:
        body = {"model": self.config.model, "messages": messages, "add_generation_prompt": add_generation_prompt}
        if tools:
            body["tools"] = tools
        out = await self.http.post(f"{self.config.root_url}/tokenize", body)
        tokens = out.get("tokens")
        if not isinstance(tokens, list):
            raise ValueError(f"/tokenize answered without tokens: {str(out)[:200]}")
        return tokens
