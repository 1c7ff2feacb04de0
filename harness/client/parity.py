"""Tokenizer parity: does the local tokenizer + template render exactly what the engine renders?

A single differing token makes every stitched prompt off-distribution without any error, so the
client compares both renderings of the same messages once and reports the first difference.
"""

from __future__ import annotations

from dataclasses import dataclass, field

WINDOW = 6


@dataclass
class ParityReport:
    ok: bool
    engine_len: int
    local_len: int
    first_diff: int | None = None
    engine_window: list[int] = field(default_factory=list)
    local_window: list[int] = field(default_factory=list)
    engine_text: str = ""
    local_text: str = ""
    cause: str | None = None
    engine_token: int | None = None  # the ids at first_diff (None past the end of that side)
    local_token: int | None = None

    def summary(self) -> str:
        if self.ok:
            return f"local rendering equals the engine's ({self.engine_len} tokens)"
        return (f"first difference at token {self.first_diff}: engine id {self.engine_token} vs local id "
                f"{self.local_token} (engine {self.engine_len} tokens, local {self.local_len}); engine "
                f"{self.engine_window} {self.engine_text!r} vs local {self.local_window} {self.local_text!r}; "
                f"likely cause: {self.cause}")

    def to_dict(self) -> dict:
        return {"ok": self.ok, "engine_len": self.engine_len, "local_len": self.local_len,
                "first_diff": self.first_diff, "engine_window": self.engine_window,
                "local_window": self.local_window, "engine_text": self.engine_text,
                "local_text": self.local_text, "cause": self.cause, "engine_token": self.engine_token,
                "local_token": self.local_token}


def _decode(tokenizer, ids: list[int]) -> str:
    try:
        return tokenizer.decode(ids)
    except Exception:
        return "<undecodable>"


def compare(engine: list[int], local: list[int], tokenizer=None) -> ParityReport:
    """Compare two renderings; `tokenizer` (the local one) decodes the windows and names causes."""
    if engine == local:
        return ParityReport(True, len(engine), len(local))
    i = next((k for k, (a, b) in enumerate(zip(engine, local)) if a != b), min(len(engine), len(local)))
    lo = max(0, i - 2)
    ew, lw = engine[lo:i + WINDOW], local[lo:i + WINDOW]
    report = ParityReport(False, len(engine), len(local), i, ew, lw,
                          engine_token=engine[i] if i < len(engine) else None,
                          local_token=local[i] if i < len(local) else None)
    if tokenizer is not None:
        report.engine_text, report.local_text = _decode(tokenizer, ew), _decode(tokenizer, lw)
    report.cause = _cause(engine, local, i, tokenizer)
    return report


def _cause(engine: list[int], local: list[int], i: int, tokenizer) -> str:
    vocab = len(tokenizer) if tokenizer is not None else None
    if vocab is not None and engine and max(engine) >= vocab:
        return f"different vocabulary: the engine uses id {max(engine)}, the local tokenizer has {vocab} ids"
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    e, l_ = engine[i] if i < len(engine) else None, local[i] if i < len(local) else None
    if special and ((e in special) != (l_ in special)):
        side = "local" if e in special else "engine"
        tok = e if e in special else l_
        name = tokenizer.convert_ids_to_tokens(tok) if tokenizer is not None else tok
        return f"special token {name} present on one side only (missing in the {side} rendering)"
    if e is None or l_ is None:
        longer = "engine" if l_ is None else "local"
        return f"the {longer} rendering continues past the other's end (extra tail: generation prompt or thinking block?)"
    return f"chat template differs from token {i} on (another template revision, system default, or tool format)"
