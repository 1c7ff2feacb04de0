"""What a transport must do: send a messages-in or a tokens-in turn, and render messages to ids."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from ..config import ClientConfig
from ..http import HTTP
from ..response import TurnTokens, assemble_stream, from_chat


@dataclass
class Sampling:
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: list[str] | str | None = None
    top_logprobs: int | None = None
    priority: int | None = None
    nvext: dict[str, Any] | None = None
    extra_body: dict[str, Any] = field(default_factory=dict)


@dataclass
class Sent:
    """One turn's answer as a transport got it: the tokens, the route, and the raw parsed body."""

    tokens: TurnTokens
    route: str
    body: dict


class Transport(ABC):
    name = "base"

    def __init__(self, config: ClientConfig, http: HTTP):
        self.config = config
        self.http = http

    @abstractmethod
    async def send_messages(self, messages: list[dict], tools: list[dict] | None, s: Sampling) -> Sent:
        """A messages-in (MITO) turn."""

    @abstractmethod
    async def send_tokens(self, prompt_ids: list[int], messages: list[dict], tools: list[dict] | None,
                          s: Sampling) -> Sent:
        """A tokens-in (TITO) turn with a stitched prompt."""

    @abstractmethod
    async def render(self, messages: list[dict], tools: list[dict] | None, add_generation_prompt: bool) -> list[int]:
        """Token ids of `messages` as the engine's chat template renders them (bridge tokens)."""

    def common_body(self, messages: list[dict], tools: list[dict] | None, s: Sampling) -> dict:
        body: dict[str, Any] = {"model": self.config.model, "messages": messages}
        if tools:
            body["tools"] = tools
        body["logprobs"] = True
        for key in ("top_logprobs", "temperature", "top_p", "seed", "stop"):
            value = getattr(s, key)
            if value is not None:
                body[key] = value
        if self.config.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    async def post_chat(self, url: str, body: dict, sent_prompt_ids: list[int] | None) -> tuple[TurnTokens, dict]:
        if body.get("stream"):
            parsed = assemble_stream(await self.http.post_stream(url, body))
        else:
            parsed = await self.http.post(url, body)
        return from_chat(parsed, sent_prompt_ids), parsed


def merge_extra(body: dict, *extras: dict | None) -> dict:
    """Merge caller extras into a body; nested `nvext` dicts are merged, `extra_fields` unioned."""
    for extra in extras:
        for key, value in (extra or {}).items():
            if key == "nvext" and isinstance(value, dict):
                nv = body.setdefault("nvext", {})
                for k, v in value.items():
                    if k == "extra_fields":
                        nv["extra_fields"] = list(dict.fromkeys([*(v or []), *nv.get("extra_fields", [])]))
                    elif isinstance(v, dict) and isinstance(nv.get(k), dict):
                        nv[k] = {**nv[k], **v}
                    else:
                        nv[k] = v
            else:
                body[key] = value
    return body
