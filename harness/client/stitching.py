"""Multi-turn stitching: reuse an earlier turn's engine tokens byte-exact, add bridge tokens.

prompt(N+1) = prompt_ids + completion_ids of the longest matching earlier turn + bridge, where
the bridge is what the chat template puts between that turn's stop token and the new generation
prompt (the dual-tokenization rule of WIRE.md). Anything that makes this unsafe falls back to
messages-in (MITO) with a named reason.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

log = logging.getLogger("harness.client")

# Fallback reasons (TurnResult.fallback_reason); the README documents each.
NO_PRIOR_TURN = "no_prior_turn"
NO_PREFIX_MATCH = "no_prefix_match"
TRUNCATED = "truncated"
NO_ENGINE_TOKENS = "no_engine_tokens"
NO_STOP_TOKEN = "no_stop_token"
INVALID_ENV_TAIL = "invalid_env_tail"
BRIDGE_PREFIX_BROKEN = "bridge_prefix_broken"
BRIDGE_TOKENIZE_FAILED = "bridge_tokenize_failed"
MULTIMODAL = "multimodal"
TOKENIZER_MISMATCH = "tokenizer_mismatch"
REASONS = (NO_PRIOR_TURN, NO_PREFIX_MATCH, TRUNCATED, NO_ENGINE_TOKENS, NO_STOP_TOKEN, INVALID_ENV_TAIL,
           BRIDGE_PREFIX_BROKEN, BRIDGE_TOKENIZE_FAILED, MULTIMODAL, TOKENIZER_MISMATCH)

DUMMY_ASSISTANT = {"role": "assistant", "content": "x"}

Render = Callable[[list[dict], list[dict] | None, bool], Awaitable[list[int]]]


def normalize(obj: Any) -> Any:
    """Plain JSON-like data with None-valued keys dropped (pydantic models and dataclasses dumped)."""
    if hasattr(obj, "model_dump"):
        obj = obj.model_dump()
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    if isinstance(obj, dict):
        return {k: normalize(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, (list, tuple)):
        return [normalize(v) for v in obj]
    return obj


@dataclass
class TurnRecord:
    """What stitching needs to remember of a finished turn."""

    messages: list[dict]  # normalized messages sent
    assistant: dict  # normalized assistant message returned
    prompt_ids: list[int] | None
    completion_ids: list[int] | None
    finish_reason: str | None
    tokens_dropped: str | None = None  # why the engine tokens are unusable, if they are

    @property
    def prefix(self) -> list[dict]:
        return [*self.messages, self.assistant]


@dataclass
class StitchPlan:
    mode: str  # "tito" | "mito"
    reason: str | None = None
    detail: str | None = None
    prompt_ids: list[int] | None = None
    bridge_ids: list[int] = field(default_factory=list)
    matched_turn: int | None = None


def _is_multimodal(message: dict) -> bool:
    content = message.get("content")
    return isinstance(content, list) and any(isinstance(p, dict) and p.get("type") not in (None, "text")
                                             for p in content)


def find_match(history: list[TurnRecord], messages: list[dict]) -> tuple[int, TurnRecord] | None:
    """The earlier turn with the longest prefix of `messages` (normalized), latest first on ties."""
    best: tuple[int, TurnRecord] | None = None
    for i in range(len(history) - 1, -1, -1):
        prefix = history[i].prefix
        if len(prefix) <= len(messages) and messages[: len(prefix)] == prefix:
            if best is None or len(prefix) > len(best[1].prefix):
                best = (i, history[i])
    return best


def check_env_tail(tail: list[dict]) -> str | None:
    """None if `tail` is tool messages with at most one final user message; else why not."""
    if not tail:
        return "no new messages after the matched turn"
    for i, m in enumerate(tail):
        role = m.get("role")
        if role == "tool":
            continue
        if role == "user" and i == len(tail) - 1:
            continue
        return f"message {i} after the matched turn has role {role!r} (only tool messages and one final user message can be bridged)"
    return None


async def bridge_tokens(render: Render, env: list[dict], tools: list[dict] | None, stop_id: int,
                        cache: dict | None = None) -> tuple[list[int] | None, str | None, str | None]:
    """(bridge ids, fallback reason, detail) by the dual-tokenization rule."""
    key = repr(tools)
    try:
        b = cache.get(key) if cache is not None else None
        if b is None:
            b = await render([DUMMY_ASSISTANT], tools, False)
            if cache is not None:
                cache[key] = b
        a = await render([DUMMY_ASSISTANT, *env], tools, True)
    except Exception as exc:  # a failed /tokenize or a template error: fall back, say why
        return None, BRIDGE_TOKENIZE_FAILED, f"{type(exc).__name__}: {exc}"
    if a[: len(b)] != b:
        return None, BRIDGE_PREFIX_BROKEN, "the template renders the dummy assistant turn differently once messages follow it"
    try:
        stop_at = len(b) - 1 - b[::-1].index(stop_id)
    except ValueError:
        return None, NO_STOP_TOKEN, f"the previous completion ends with id {stop_id}, which the template never puts after an assistant turn"
    gap = len(b) - 1 - stop_at
    bridge = a[len(b) - gap:]
    if bridge and bridge[0] == stop_id:
        bridge = bridge[1:]
    return bridge, None, None


async def plan_turn(history: list[TurnRecord], messages: list[dict], tools: list[dict] | None,
                    render: Render, bridge_cache: dict | None = None, blocked: str | None = None) -> StitchPlan:
    """Decide how turn N+1 is sent: TITO with a stitched prompt, or MITO with a reason."""
    if not history:
        return StitchPlan("mito", NO_PRIOR_TURN)
    if any(_is_multimodal(m) for m in messages):
        return StitchPlan("mito", MULTIMODAL, "a message carries non-text content parts")
    match = find_match(history, messages)
    if match is None:
        return StitchPlan("mito", NO_PREFIX_MATCH, "no earlier turn's messages + answer start these messages")
    index, turn = match
    if blocked:
        return StitchPlan("mito", TOKENIZER_MISMATCH, blocked, matched_turn=index)
    if turn.finish_reason == "length":
        return StitchPlan("mito", TRUNCATED, f"turn {index + 1} was cut by max_tokens (no stop token)", matched_turn=index)
    if turn.tokens_dropped or not turn.prompt_ids or not turn.completion_ids:
        why = turn.tokens_dropped or "the server returned no prompt/completion ids"
        return StitchPlan("mito", NO_ENGINE_TOKENS, f"turn {index + 1}: {why}", matched_turn=index)
    env = messages[len(turn.prefix):]
    bad = check_env_tail(env)
    if bad:
        return StitchPlan("mito", INVALID_ENV_TAIL, bad, matched_turn=index)
    bridge, reason, detail = await bridge_tokens(render, env, tools, turn.completion_ids[-1], bridge_cache)
    if reason:
        return StitchPlan("mito", reason, detail, matched_turn=index)
    prompt = [*turn.prompt_ids, *turn.completion_ids, *bridge]
    return StitchPlan("tito", None, None, prompt, bridge, index)
