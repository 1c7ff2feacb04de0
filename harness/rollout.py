"""A scripted multi-turn, tool-using conversation, driven through the client as an RL env would.

Turn 1 is a user question; the middle turns answer with tool results; the last turn is a final
user message. The report says, per turn, whether the client stitched (TITO) or fell back (MITO).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .client import BadRequestError, ClientConfig, TitoClient, TurnResult

SYSTEM = "You are a research assistant. Use the tools when they help; answer briefly."
TOOLS = [
    {"type": "function", "function": {
        "name": "lookup", "description": "Look a fact up in the encyclopedia.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}},
    {"type": "function", "function": {
        "name": "calculator", "description": "Evaluate an arithmetic expression.",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}}},
]
QUESTION = "What is the population of the capital of France, divided by 1000?"
TOOL_RESULTS = ["Paris is the capital of France.", "Paris has 2,102,650 inhabitants (2023).", "2102.65",
                "No further results."]
FINAL = "Thanks. Summarize your answer in one sentence."


@dataclass
class RolloutReport:
    transport: str
    base_url: str
    model: str
    turns: list[TurnResult] = field(default_factory=list)
    parity: dict | None = None
    tools: bool = True  # the conversation offered tools to the model
    notes: list[str] = field(default_factory=list)

    @property
    def summary(self) -> dict:
        tito = sum(1 for t in self.turns if t.mode == "tito")
        return {"tito_turns": tito, "mito_turns": len(self.turns) - tito}

    def continuity_ok(self) -> bool:
        """Each stitched prompt starts with the previous turn's prompt + completion ids."""
        for prev, cur in zip(self.turns, self.turns[1:]):
            if cur.mode == "tito":
                head = (prev.prompt_ids or []) + (prev.completion_ids or [])
                if not head or (cur.prompt_ids or [])[: len(head)] != head:
                    return False
        return True

    def to_dict(self) -> dict:
        return {
            "transport": self.transport, "base_url": self.base_url, "model": self.model,
            "turns": [{"index": t.index, "mode": t.mode, "fallback_reason": t.fallback_reason,
                       "fallback_detail": t.fallback_detail, "route": t.route, "prompt_ids": t.prompt_ids,
                       "completion_ids": t.completion_ids, "completion_logprobs": t.completion_logprobs,
                       "finish_reason": t.finish_reason, "tokens_dropped": t.tokens_dropped,
                       "parity": t.parity, "notes": t.notes} for t in self.turns],
            "summary": self.summary, "continuity_ok": self.continuity_ok(), "parity": self.parity,
            "tools": self.tools, "notes": self.notes,
        }


def _tool_message(result: TurnResult, k: int) -> dict:
    calls = result.message.get("tool_calls") or []
    call_id = calls[0].get("id") if calls and isinstance(calls[0], dict) else None
    return {"role": "tool", "tool_call_id": call_id or f"call_{k}", "content": TOOL_RESULTS[k % len(TOOL_RESULTS)]}


def refuses_tools(exc: BadRequestError) -> bool:
    """A server that will not take `tools` (vLLM without --enable-auto-tool-choice, and the like)."""
    text = str(exc).lower()
    return "tool" in text and ("auto-tool-choice" in text or "tool choice" in text or "tool_choice" in text
                               or "does not support tools" in text or "tools are not supported" in text)


async def run_rollout(config: ClientConfig, turns: int = 4, max_tokens: int = 96, seed: int = 0,
                      client: TitoClient | None = None, tools: bool = True) -> RolloutReport:
    """Run the scripted conversation; a server error raises the client's typed exception. A server
    that refuses tools gets the same conversation without them (`report.tools` False, and a note)."""
    if turns < 1:
        raise ValueError("turns must be >= 1")
    own = client is None
    client = client or TitoClient(config)
    report = RolloutReport(config.renderer_transport, config.base_url, config.model, tools=tools)
    if not tools:
        report.notes.append("ran without tools (--no-tools)")
    try:
        try:
            await _converse(client, report, turns, max_tokens, seed)
        except BadRequestError as exc:
            if not (report.tools and not report.turns and refuses_tools(exc)):
                raise
            report.tools = False
            report.notes.append(f"the server refuses tools ({exc.message[:160]}); the conversation ran without them")
            await _converse(client, report, turns, max_tokens, seed)
        if client.parity_report is not None:
            report.parity = {**client.parity_report.to_dict(), "affects_stitching": client.parity_affects_stitching}
    finally:
        if own:
            await client.aclose()
    return report


async def _converse(client: TitoClient, report: RolloutReport, turns: int, max_tokens: int, seed: int) -> None:
    convo = client.conversation()
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
    for k in range(turns):
        result = await convo.turn(messages, TOOLS if report.tools else None, max_tokens=max_tokens, seed=seed + k)
        report.turns.append(result)
        messages = [*messages, result.message]
        if k == turns - 2:
            messages.append({"role": "user", "content": FINAL})
        elif report.tools:
            messages.append(_tool_message(result, k))
        else:  # no tools: the tool result comes back as what a user tells the model
            messages.append({"role": "user", "content": TOOL_RESULTS[k % len(TOOL_RESULTS)]})
