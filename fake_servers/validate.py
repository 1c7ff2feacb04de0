"""The limits that size work, checked before any (vLLM's counts: n, sample and prompt logprobs), and
serde_json's nesting limit. Request types are the wire layer's (harness.wire)."""

from __future__ import annotations

def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def json_depth(value, limit: int) -> bool:
    """Is `value` nested deeper than `limit` arrays/objects (serde_json stops at 128)?"""
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (list, dict)):
            if d > limit:
                return True
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return False


# vLLM's SamplingParams limits, as real vLLM 0.32 words them (recorded: bench hostile bodies, n and
# logprob counts); checked before any work is sized by them
VLLM_MAX_LOGPROBS = 20  # the engine's max_logprobs default
VLLM_MAX_N = 16384  # VLLM_MAX_N_SEQUENCES
VLLM_MODEL_VOCAB = 151936  # the model config's (padded) vocabulary: what a count of -1 asks for
# the fake's own bound (no real server has it): the completion tokens one request may make it generate, n choices
# together; past it the fake answers 400 and says why, where a real server would take minutes
FAKE_WORK_TOKENS = 4096


def _count(v):
    """An integer count as given (bools are not counts), or None: anything else is type validation's."""
    return v if _is_int(v) else None


def vllm_sampling_limits(n, sample_logprobs, prompt_logprobs) -> tuple[str, str | None] | None:
    """(message, param) for the first count vLLM's SamplingParams refuses, or None. Non-integers
    are left to type validation."""
    n = _count(n)
    if n is not None and n < 1:
        return f"n must be at least 1, got {n}.", None
    if n is not None and n > VLLM_MAX_N:
        return (f"n must be at most {VLLM_MAX_N}, got {n}. To increase this limit, set the VLLM_MAX_N_SEQUENCES "
                f"environment variable."), None
    for what, name, value in (("sample", "logprobs", _count(sample_logprobs)),
                              ("prompt", "prompt_logprobs", _count(prompt_logprobs))):
        if value is None:
            continue
        if value < -1:
            return f"{name} must be non-negative or -1, got {value}. (parameter={name}, value={value})", name
        asked = VLLM_MODEL_VOCAB if value == -1 else value
        if asked > VLLM_MAX_LOGPROBS:
            return (f"Requested {what} logprobs of {asked}, which is greater than max allowed: {VLLM_MAX_LOGPROBS} "
                    f"(parameter={name}, value={asked})"), name
    return None


def sample_logprobs(route: str, body: dict):
    """The sample-logprobs count SamplingParams checks (chat: `top_logprobs` when logprobs are asked for;
    completions and generate: `logprobs`); the request models' own rules on it are the wire layer's."""
    if route == "chat":
        top = _count(body.get("top_logprobs"))
        return top if body.get("logprobs") else None
    return _count(body.get("logprobs"))
