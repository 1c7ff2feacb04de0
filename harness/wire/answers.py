"""Where a turn's tokens sit in an answer: parsed answer -> TurnTokens, the engine tokens of one turn,
whichever shape carried them.

Three shapes coexist (WIRE.md): `nvext.engine_data` (richest; wins), `nvext.completion_token_ids`,
and vLLM-native `choices[0].token_ids` + top-level `prompt_token_ids`. Upstream vLLM's
/inference/v1/generate answers a fourth, token-only shape. Logprobs come from the choice, or are
synthesized from `engine_data.completion_logprobs` when the choice has none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class AnswerError(ValueError):
    """A 2xx answer whose shape cannot carry a turn: no choices, wrong types (the message says which)."""


class StreamEndError(AnswerError):
    """Streamed chunks that end before the finish chunk."""


@dataclass
class TurnTokens:
    prompt_ids: list[int] | None
    completion_ids: list[int] | None
    completion_logprobs: list[float] | None
    finish_reason: str | None
    message: dict
    token_source: str | None  # engine_data | nvext | choices | generate | None
    prompt_source: str | None  # engine_data | nvext | response | sent | None
    logprobs_source: str | None  # choices | engine_data | None
    routed_experts: dict | None = None
    usage: dict = field(default_factory=dict)
    echo_ids_differ: bool = False
    notes: list[str] = field(default_factory=list)


def _ints(value) -> list[int] | None:
    if isinstance(value, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in value):
        return list(value)
    return None


def _choice_logprobs(choice: dict) -> list[float] | None:
    lp = choice.get("logprobs")
    if not isinstance(lp, dict):
        return None
    content = lp.get("content")
    if not isinstance(content, list):
        return None
    out = []
    for entry in content:
        value = entry.get("logprob") if isinstance(entry, dict) else entry
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise AnswerError(f"logprob entry without a numeric logprob: {entry!r:.200}")
        out.append(float(value))
    return out


def _float_list(value) -> list[float] | None:
    if not isinstance(value, list):
        return None
    out = []
    for v in value:
        if isinstance(v, dict):
            v = v.get("logprob")
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            return None
        out.append(float(v))
    return out


def _first_choice(body: dict) -> dict:
    choices = body.get("choices")
    if not isinstance(choices, list):
        raise AnswerError("answer has no 'choices' list")
    if not choices:
        raise AnswerError("answer has an empty 'choices' list")
    if not isinstance(choices[0], dict):
        raise AnswerError("choices[0] is not an object")
    return choices[0]


def _message(choice: dict) -> dict:
    msg = choice.get("message")
    if not isinstance(msg, dict):
        return {"role": "assistant", "content": choice.get("text")}
    out = {"role": msg.get("role") or "assistant", "content": msg.get("content")}
    if msg.get("tool_calls"):
        out["tool_calls"] = msg["tool_calls"]
    reasoning = msg.get("reasoning_content") or msg.get("reasoning")
    if reasoning:
        out["reasoning_content"] = reasoning
    return out


def from_chat(body: dict, sent_prompt_ids: list[int] | None = None) -> TurnTokens:
    """Tokens of a chat-completions answer (vLLM or Dynamo; any of the three shapes)."""
    choice = _first_choice(body)
    nvext = body.get("nvext") if isinstance(body.get("nvext"), dict) else {}
    ed = nvext.get("engine_data") if isinstance(nvext.get("engine_data"), dict) else None
    notes: list[str] = []

    candidates = [("engine_data", _ints(ed.get("completion_token_ids")) if ed else None),
                  ("nvext", _ints(nvext.get("completion_token_ids"))),
                  ("choices", _ints(choice.get("token_ids")))]
    token_source, completion_ids = next(((s, ids) for s, ids in candidates if ids is not None), (None, None))
    echo = candidates[2][1]
    echo_differs = bool(token_source == "engine_data" and echo is not None and echo != completion_ids)
    if echo_differs:
        notes.append("choices[0].token_ids differ from engine_data (detokenize/re-tokenize echo); engine_data used")

    prompts = [("engine_data", _ints(ed.get("prompt_token_ids")) if ed else None),
               ("nvext", _ints(nvext.get("prompt_token_ids"))),
               ("response", _ints(body.get("prompt_token_ids"))),
               ("sent", list(sent_prompt_ids) if sent_prompt_ids is not None else None)]
    prompt_source, prompt_ids = next(((s, ids) for s, ids in prompts if ids is not None), (None, None))

    logprobs = _choice_logprobs(choice)
    logprobs_source = "choices" if logprobs is not None else None
    ed_logprobs = _float_list(ed.get("completion_logprobs")) if ed else None
    if token_source == "engine_data" and ed_logprobs is not None:
        # engine_data wins; with no choice logprobs this synthesizes them
        if logprobs is None:
            notes.append("logprobs synthesized from engine_data.completion_logprobs")
        logprobs, logprobs_source = ed_logprobs, "engine_data"
    return TurnTokens(prompt_ids, completion_ids, logprobs, choice.get("finish_reason"), _message(choice),
                      token_source, prompt_source, logprobs_source,
                      (ed or {}).get("routed_experts") or nvext.get("routed_experts") or choice.get("routed_experts"),
                      body.get("usage") if isinstance(body.get("usage"), dict) else {}, echo_differs, notes)


def from_generate(body: dict, sent_prompt_ids: list[int], text: str | None = None) -> TurnTokens:
    """Tokens of an upstream-vLLM /inference/v1/generate answer (no text, no prompt ids)."""
    choice = _first_choice(body)
    ids = _ints(choice.get("token_ids"))
    logprobs = _choice_logprobs(choice)
    prompt_ids = _ints(body.get("prompt_token_ids"))
    return TurnTokens(prompt_ids if prompt_ids is not None else list(sent_prompt_ids), ids, logprobs,
                      choice.get("finish_reason"), {"role": "assistant", "content": text},
                      "generate" if ids is not None else None, "response" if prompt_ids is not None else "sent",
                      "choices" if logprobs is not None else None, choice.get("routed_experts"),
                      body.get("usage") if isinstance(body.get("usage"), dict) else {})


def assemble_stream(chunks: list[dict]) -> dict[str, Any]:
    """Fold SSE chunks into the body a non-streamed answer would have had."""
    content: list[str] = []
    token_ids: list[int] = []
    nv_ids: list[int] = []
    lp_content: list[dict] = []
    out: dict[str, Any] = {}
    finish = None
    saw_ids = saw_nv = saw_lp = False
    role = "assistant"
    for ch in chunks:
        for key in ("id", "model", "created", "prompt_token_ids", "usage"):
            if ch.get(key) is not None:
                out[key] = ch[key]
        nvext = ch.get("nvext") if isinstance(ch.get("nvext"), dict) else {}
        if isinstance(nvext.get("completion_token_ids"), list):
            saw_nv = True
            nv_ids.extend(nvext["completion_token_ids"])
        for key in ("engine_data", "routed_experts", "prompt_token_ids", "worker_id", "timing"):
            if nvext.get(key) is not None:
                out.setdefault("nvext", {})[key] = nvext[key]
        for c in ch.get("choices") or []:
            delta = c.get("delta") or {}
            role = delta.get("role") or role
            if delta.get("content"):
                content.append(delta["content"])
            if isinstance(c.get("token_ids"), list):
                saw_ids = True
                token_ids.extend(c["token_ids"])
            lp = c.get("logprobs")
            if isinstance(lp, dict) and isinstance(lp.get("content"), list):
                saw_lp = True
                lp_content.extend(lp["content"])
            if c.get("finish_reason"):
                finish = c["finish_reason"]
            if c.get("routed_experts") is not None:
                out["_choice_routed_experts"] = c["routed_experts"]
    if finish is None:
        raise StreamEndError("stream ended without a finish_reason")
    choice: dict[str, Any] = {"index": 0, "message": {"role": role, "content": "".join(content)},
                              "finish_reason": finish, "logprobs": {"content": lp_content} if saw_lp else None}
    if saw_ids:
        choice["token_ids"] = token_ids
    if "_choice_routed_experts" in out:
        choice["routed_experts"] = out.pop("_choice_routed_experts")
    if saw_nv:
        out.setdefault("nvext", {})["completion_token_ids"] = nv_ids
    out["choices"] = [choice]
    return out
