"""`harness parity`: render a fixed set of conversations on the engine and locally, compare ids.

vLLM renders through `/tokenize`; Dynamo through a one-token messages-in chat completion whose
`nvext.engine_data.prompt_token_ids` is the engine's rendering (a backend without engine_data,
such as the mocker, cannot be checked: the verdict says so).
"""

from __future__ import annotations

from dataclasses import dataclass

from .client import ClientConfig, TitoClient
from .client.parity import ParityReport, compare
from .client.response import from_chat
from .client.transports.base import Sampling
from .client.transports.dynamo import DynamoChat
from .rollout import TOOLS
from .tokenizer import render_ids

CALL = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"query": "Paris"}'}}
CONVERSATIONS: dict[str, tuple[list[dict], list[dict] | None]] = {
    "plain": ([{"role": "user", "content": "Hello, who are you?"}], None),
    "system prompt": ([{"role": "system", "content": "You are a terse assistant."},
                       {"role": "user", "content": "Name three colours."}], None),
    "tools + calls + results": ([
        {"role": "system", "content": "Use tools when they help."},
        {"role": "user", "content": "How many people live in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "2,102,650 (2023)"},
        {"role": "user", "content": "And in thousands?"}], TOOLS),
    "multi-turn": ([
        {"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke."}, {"role": "assistant", "content": "Why did the chicken..."},
        {"role": "user", "content": "Another one."}], None),
    "thinking block": ([
        {"role": "user", "content": "What is 17 * 3?"},
        {"role": "assistant", "content": "<think>\n17 * 3 = 51\n</think>\n\n51"},
        {"role": "user", "content": "And 51 * 2?"}], None),
    "non-ASCII": ([{"role": "user", "content": "Grüße aus Köln! 你好，世界。Привет 👋 ¿Qué tal? naïve café"}], None),
}


@dataclass
class ParityRow:
    conversation: str
    report: ParityReport | None
    error: str | None = None

    @property
    def verdict(self) -> str:
        if self.error:
            return "unknown"
        return "match" if self.report.ok else "MISMATCH"

    def to_dict(self) -> dict:
        return {"conversation": self.conversation, "verdict": self.verdict, "error": self.error,
                **(self.report.to_dict() if self.report else {})}


async def _engine_ids(client: TitoClient, messages, tools) -> list[int]:
    transport = await client.transport()
    if isinstance(transport, DynamoChat):
        body = transport.body(messages, tools, Sampling(max_tokens=1), None)
        body.pop("stream", None)
        body.pop("stream_options", None)
        tokens = from_chat(await client.http.post(f"{client.config.base_url}/chat/completions", body))
        if tokens.prompt_ids is None:
            raise LookupError("the server returned no prompt ids (a backend without engine_data, e.g. the mocker)")
        return tokens.prompt_ids
    return await transport.render(messages, tools, True)


async def probe(config: ClientConfig, names: list[str] | None = None) -> list[ParityRow]:
    rows = []
    async with TitoClient(config) as client:
        tok = await client.tokenizer()
        for name, (messages, tools) in CONVERSATIONS.items():
            if names and name not in names:
                continue
            try:
                engine = await _engine_ids(client, messages, tools)
            except LookupError as exc:
                rows.append(ParityRow(name, None, str(exc)))
                continue
            rows.append(ParityRow(name, compare(engine, render_ids(tok, messages, tools, True), tok)))
    return rows
