"""OpenAI-shaped pieces both fakes build answers from: sampling params, logprobs, stream text."""

from __future__ import annotations

import asyncio

from harness.wire.faults import TEMPLATE_FAULTS, Active

from .base import SSE, ServerState
from .engine import FakeEngine, Generation, SamplingParams


def sampling_from(body: dict, active=()) -> SamplingParams:
    """The engine's sampling parameters for a request (and its faults: `empty_completion`)."""
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    stop_ids = list(body.get("stop_token_ids") or [])
    if stop and all(isinstance(s, int) for s in stop):  # Dynamo reads a list of ids as stop token ids
        stop, stop_ids = [], stop_ids + list(stop)
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    top = body.get("top_logprobs") if body.get("logprobs") else 0
    return SamplingParams(
        max_tokens=int(max_tokens) if max_tokens is not None else None,
        temperature=float(body.get("temperature") if body.get("temperature") is not None else 1.0),
        top_p=float(body.get("top_p") if body.get("top_p") is not None else 1.0),
        seed=body.get("seed"),
        stop=list(stop or []),
        stop_token_ids=stop_ids,
        logprobs=bool(body.get("logprobs")),
        top_logprobs=int(top or 0),
        ignore_eos=bool(body.get("ignore_eos")),
        empty="empty_completion" in active,
    )


def chat_template_for(state: ServerState, active: Active) -> str | None:
    """The template this request is rendered with: a template fault's variant, or the default."""
    for name in TEMPLATE_FAULTS:
        if name in active and name in state.template_faults:
            return state.template_faults[name]
    return state.template_faults.get("_default")


def render_messages(state: ServerState, body: dict, active: Active, add_generation_prompt: bool = True,
                    kwargs_override: bool = True, bound: int | None = None) -> list[int]:
    """The prompt ids of a messages request; `kwargs_override`: chat_template_kwargs read as vLLM reads them
    (False: as Dynamo does, where `chat_template_args` is the same field)."""
    kwargs = body.get("chat_template_kwargs") or body.get("chat_template_args") or None
    return state.engine.render(body.get("messages") or [], body.get("tools"), add_generation_prompt,
                               kwargs if isinstance(kwargs, dict) else None, chat_template_for(state, active),
                               kwargs_override, bool(body.get("continue_final_message")), bound)


def logprob_entry(engine: FakeEngine, token_id: int, lp: float, alts, dynamo: bool = False,
                  as_ids: bool = False) -> dict:
    """One `logprobs.content` entry. Dynamo's (vLLM worker) adds `token_id`, and writes the sampled
    stop token as `""` with `bytes: null`; its alternatives carry no ids. `as_ids` (a request's
    `return_tokens_as_token_ids`): tokens named `token_id:N`, their bytes those of the name, except the sampled
    token's on vLLM, which keep its text's (recorded from vLLM 0.32 and Dynamo 1.6.1 + vLLM)."""
    def one(t: int, v: float, top: bool) -> dict:
        text = engine.token_text(t)
        name = f"token_id:{t}" if as_ids else text
        if dynamo and top and t == engine.eos_id and not as_ids:
            return {"token": "", "logprob": v, "token_id": t, "bytes": None}
        d = {"token": name, "logprob": v}
        if dynamo and top:
            d["token_id"] = t
        d["bytes"] = list((text if top and not dynamo else name).encode("utf-8"))
        return d

    entry = one(token_id, lp, True)
    entry["top_logprobs"] = [one(t, v, False) for t, v in alts] if alts else []
    return entry


def logprobs_content(engine: FakeEngine, gen: Generation, params: SamplingParams, dynamo: bool = False,
                     as_ids: bool = False, past_k: bool = False) -> list[dict]:
    """The answer's `logprobs.content` (built once per generation; a fresh list each call, since
    faults may add or remove entries; entries are shared and never mutated). `past_k`: each position lists the
    engine's dict whole (the sampled token beside the k likeliest, as Dynamo does); else cut at k (vLLM's chat)."""
    key = ("logprobs", dynamo, as_ids, past_k)
    entries = gen.derived.get(key)
    if entries is None:
        tops = gen.top_logprobs or [None] * len(gen.token_ids)
        if not past_k:
            tops = [alts[:gen.top_k] if alts else alts for alts in tops]
        entries = gen.derived[key] = tuple(logprob_entry(engine, t, lp, alts, dynamo, as_ids)
                                           for t, lp, alts in zip(gen.token_ids, gen.logprobs, tops))
    return list(entries)


def text_pieces(engine: FakeEngine, gen: Generation) -> list[str]:
    """Per-token text deltas as an incremental detokenizer emits them (specials skipped)."""
    if "pieces" not in gen.derived:
        gen.derived["pieces"] = _pieces(engine, gen.token_ids)
    return gen.derived["pieces"]


def _pieces(engine: FakeEngine, ids: list[int]) -> list[str]:
    out, prev = [], ""
    for i in range(len(ids)):
        cur = engine.decode(ids[: i + 1], skip_special_tokens=True)
        if cur.endswith("\ufffd"):
            out.append("")
            continue
        out.append(cur[len(prev):])
        prev = cur
    return out


def usage(prompt_len: int, completion_len: int, omitted: frozenset = frozenset()) -> dict:
    """An answer's usage; `omitted`: a profile's keys left out when null (`usage.prompt_tokens_details`)."""
    out = {"prompt_tokens": prompt_len, "total_tokens": prompt_len + completion_len,
           "completion_tokens": completion_len, "prompt_tokens_details": None, "completion_tokens_details": None}
    if "usage.prompt_tokens_details" in omitted:
        del out["prompt_tokens_details"]
    return out


def interleaved(steps: list[tuple[int, int, dict]]) -> list[dict]:
    """The chunks of `n` choices as an engine streams them, step by step: each choice's k-th chunk, the choices
    in order (`steps`: (k, choice index, chunk))."""
    return [chunk for _, _, chunk in sorted(steps, key=lambda s: (s[0], s[1]))]


async def stream(request, engine: FakeEngine, chunks: list[dict], last: dict | None = None, paced: bool = True):
    """An SSE answer of `chunks` (then `last`, a usage chunk, when given), paced like the engine (`paced`: False
    when the request was paced token by token already, by a control plane)."""
    if paced and engine.config.ttft:
        await asyncio.sleep(engine.config.ttft)
    async with SSE(request, engine.config.per_token if paced else 0.0) as sse:
        for chunk in chunks:
            await sse.send(chunk)
        if last is not None:
            await sse.send(last)
    return sse.resp
