"""`POST /inference/v1/generate` answers, shaped by the profile (vLLM's own, or Dynamo's native route)."""

from __future__ import annotations

import time

from harness.wire.profiles import Profile

from . import experts
from .base import new_id
from .engine import FakeEngine, Generation
from .openai import usage

def _entry(shape: str, t: int, lp: float, rank: int | None):
    if shape == "token_id":
        return {"token_id": t, "logprob": lp, "rank": rank}
    name = f"token_id:{t}"
    return {"token": name, "logprob": lp, "bytes": list(name.encode()) if shape == "openai_bytes" else None}


def logprobs(engine: FakeEngine, gen: Generation, shape: str, text: bool = False, past_k: bool = False) -> dict:
    """`choices[0].logprobs` in the profile's entry shape (`text`: decoded token strings, vLLM 0.33); `past_k`: the
    engine's dict whole (Dynamo), else cut at k, at least one (vLLM: `i < max(k, 1)`)."""
    tops = gen.top_logprobs or [[(t, lp)] for t, lp in zip(gen.token_ids, gen.logprobs)]
    if not past_k:
        tops = [alts[:max(gen.top_k, 1)] for alts in tops]
    ranks = gen.ranks or [1] * len(gen.token_ids)
    content = []
    for t, lp, alts, rank in zip(gen.token_ids, gen.logprobs, tops, ranks):
        e = _entry(shape, t, lp, rank)
        # the sampled token, then the others by rank (its own rank skipped)
        e["top_logprobs"] = [_entry(shape, t, lp, rank)] + [
            _entry(shape, a, v, j if j < rank else j + 1) for j, (a, v) in enumerate(alts[1:], 1)]
        if text:
            e["token"] = engine.token_text(t)
            for (a, _), alt in zip(alts, e["top_logprobs"]):
                alt["token"] = engine.token_text(a)
        content.append(e)
    return {"content": content}


def _choice(engine: FakeEngine, profile: Profile, index: int, gen: Generation, want_logprobs: bool,
            output_mode: str, prompt_start: int, version: str = "default") -> dict:
    lps = logprobs(engine, gen, profile.generate_logprobs, output_mode == "text",
                   "generate" in profile.top_logprobs_past_k) if want_logprobs else None
    experts_ = (experts.cached(gen, "npy" if profile.kind == "dynamo" else profile.routed_experts, prompt_start)
                if "generate" in profile.experts_routes else None)
    if profile.kind == "dynamo":  # Dynamo's native route (recorded)
        return {"index": index, "token_ids": list(gen.token_ids), "logprobs": lps, "finish_reason": gen.finish_reason,
                "routed_experts": experts_, "sampling_mask": None}
    keys = profile.generate_keys
    choice: dict = {"index": index, "finish_reason": gen.finish_reason}
    if "stop_reason" in keys:
        choice["stop_reason"] = gen.stop_reason
    choice["token_ids"] = list(gen.token_ids)
    if output_mode == "text":
        choice["text"] = gen.text
    choice["routed_experts"] = experts_
    if "sampling_mask" in keys:
        choice["sampling_mask"] = None
    if "weight_versions" in keys:
        choice["weight_versions"] = [{"version": v, "start": a, "end": b} for v, a, b in gen.versions] or [
            {"version": version, "start": 0, "end": len(gen.token_ids)}]
    choice["logprobs"] = lps
    return choice


def answer(engine: FakeEngine, profile: Profile, model: str, prompt_ids: list[int], gens: list[Generation],
           want_logprobs: bool, output_mode: str = "tokens", prompt_start: int = 0, version: str = "default") -> dict:
    """The answer of `n` samples (a choice each); `version`: the engine's weight version (`weight_versions`)."""
    choices = [_choice(engine, profile, i, gen, want_logprobs, output_mode, prompt_start, version)
               for i, gen in enumerate(gens)]
    if profile.kind == "dynamo":  # Dynamo's native route (recorded): no usage, no model, no prompt ids
        return {"request_id": new_id("", dashed=True), "choices": choices, "prompt_logprobs": None,
                "kv_transfer_params": None}
    keys = profile.generate_keys
    out = {"request_id": new_id("generate-tokens-"), "model": model, "created": int(time.time()),
           "choices": choices, "usage": usage(len(prompt_ids), sum(len(g.token_ids) for g in gens), profile.omitted_when_null),
           "prompt_logprobs": None}
    if "prompt_token_id_logprobs" in keys:
        out["prompt_token_id_logprobs"] = None
    out["prompt_token_ids"] = None
    out["mm_placeholders"] = None
    if "metrics" in keys:
        out["metrics"] = None
    out["kv_transfer_params"] = None
    out["ec_transfer_params"] = None
    if "output_mode" in keys:
        out["output_mode"] = output_mode
    return out


def stream_chunks(engine: FakeEngine, profile: Profile, gen: Generation, want_logprobs: bool) -> list[dict]:
    """A streamed vLLM generate answer (recorded from vLLM 0.31): a chunk per token, the last one with its
    finish_reason; no usage."""
    rid = new_id("generate-tokens-")
    lps = logprobs(engine, gen, profile.generate_logprobs,
                   past_k="generate" in profile.top_logprobs_past_k)["content"] if want_logprobs else None
    out = []
    for k, t in enumerate(gen.token_ids):
        choice: dict = {"index": 0, "logprobs": {"content": [lps[k]]} if lps else None,
                        "finish_reason": gen.finish_reason if k == len(gen.token_ids) - 1 else None,
                        "token_ids": [t], "routed_experts": None}
        if "sampling_mask" in profile.generate_keys:
            choice["sampling_mask"] = None
        out.append({"request_id": rid, "choices": [choice], "usage": None})
    return out
