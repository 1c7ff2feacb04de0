"""Routed experts of an engine answer, encoded once per answer, format and start (the wire layer encodes)."""

from __future__ import annotations

from harness.wire.routed_experts import encode


def cached(gen, fmt: str, prompt_start: int = 0):
    """`encode` once per answer, format and start (answers are cached by the engine)."""
    if gen.routed_experts is None:
        return None
    key = ("experts", fmt, prompt_start)
    value = gen.derived.get(key)
    if value is None:
        value = gen.derived[key] = encode(fmt, gen.routed_experts, prompt_start)
    return dict(value) if isinstance(value, dict) else value
