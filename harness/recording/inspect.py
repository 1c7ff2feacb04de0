"""`harness inspect`: what a cassette holds, turn by turn, and what looks wrong in it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ..wire.answers import AnswerError, TurnTokens, assemble_stream, from_chat, from_generate
from ..wire.routed_experts import RoutedExpertsError, decode_payload, find_payload, split_body
from .format import Cassette, Interaction

TURN_ROUTES = ("/v1/chat/completions", "/v1/chat/completions/tokens", "/inference/v1/generate")


def turn_kind(i: Interaction) -> str | None:
    """'mito' | 'tito' for a generation request, None for anything else."""
    if i.method.upper() != "POST" or i.path not in TURN_ROUTES:
        return None
    if i.path != "/v1/chat/completions":
        return "tito"
    body = i.request_json() or {}
    nvext = body.get("nvext") if isinstance(body.get("nvext"), dict) else {}
    return "tito" if nvext.get("token_data") is not None else "mito"


def parsed_answer(i: Interaction) -> tuple[dict | None, list]:
    """The answer as one JSON object (streams assembled), with routed-experts blobs cut out."""
    if i.is_stream():
        chunks = i.sse_chunks()
        try:
            return (assemble_stream(chunks) if chunks else None), []
        except AnswerError:  # cut before its finish chunk
            return None, []
    try:
        return split_body(i.response_body)
    except (ValueError, RoutedExpertsError):
        return None, []


def turn_tokens(i: Interaction) -> TurnTokens | None:
    body, _ = parsed_answer(i)
    if not isinstance(body, dict):
        return None
    req = i.request_json() or {}
    try:
        if i.path == "/inference/v1/generate":
            return from_generate(body, req.get("token_ids") or [])
        nvext = req.get("nvext") if isinstance(req.get("nvext"), dict) else {}
        return from_chat(body, req.get("tokens") or nvext.get("token_data"))
    except AnswerError:
        return None


@dataclass
class Row:
    index: int
    method: str
    path: str
    status: int
    kind: str | None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    logprobs: int | None = None
    finish_reason: str | None = None
    anomalies: list[str] = field(default_factory=list)


@dataclass
class Report:
    rows: list[Row]
    meta: dict
    routes: Counter
    statuses: Counter

    @property
    def anomalies(self) -> list[tuple[int, str]]:
        return [(r.index, a) for r in self.rows for a in r.anomalies]


def _anomalies(i: Interaction, t: TurnTokens | None) -> list[str]:
    out = []
    if i.status >= 400:
        body = i.response_json() or {}
        err = body.get("error") if isinstance(body.get("error"), dict) else body
        out.append(f"error {i.status}: {str((err or {}).get('message') or (err or {}).get('detail') or '')[:120]}")
        return out
    req = i.request_json() or {}
    nvext = req.get("nvext") if isinstance(req.get("nvext"), dict) else {}
    asked_ids = bool(req.get("return_token_ids")) or bool(set(nvext.get("extra_fields") or [])
                                                           & {"engine_data", "completion_token_ids"}) \
        or i.path == "/inference/v1/generate"
    if t is None:
        out.append("answer cannot be parsed (invalid JSON or no choices)")
        return out
    if asked_ids and t.completion_ids is None:
        out.append("missing completion token ids")
    if asked_ids and t.prompt_ids is None:
        out.append("missing prompt token ids")
    if t.completion_ids is not None and t.completion_logprobs is not None and len(t.completion_ids) != len(t.completion_logprobs):
        out.append(f"logprob/id length mismatch: {len(t.completion_logprobs)} logprobs for {len(t.completion_ids)} ids")
    if t.echo_ids_differ:
        out.append("choices[0].token_ids echo differs from engine_data ids")
    body, blobs = parsed_answer(i)
    payload = find_payload(body) if isinstance(body, dict) else None
    if payload is not None:
        try:
            decode_payload(payload, blobs)
        except RoutedExpertsError as exc:
            out.append(f"routed experts do not decode: {exc}")
    return out


def analyze(cassette: Cassette) -> Report:
    rows = []
    for n, i in enumerate(cassette.interactions):
        kind = turn_kind(i)
        row = Row(n, i.method, i.path, i.status, kind)
        if kind is not None:
            t = turn_tokens(i) if i.status < 400 else None
            if t is not None:
                row.prompt_tokens = len(t.prompt_ids) if t.prompt_ids is not None else None
                row.completion_tokens = len(t.completion_ids) if t.completion_ids is not None else None
                row.logprobs = len(t.completion_logprobs) if t.completion_logprobs is not None else None
                row.finish_reason = t.finish_reason
            row.anomalies = _anomalies(i, t)
        elif i.status >= 400:
            row.anomalies = _anomalies(i, None)
        rows.append(row)
    return Report(rows, cassette.meta, Counter(f"{r.method} {r.path}" for r in rows), Counter(r.status for r in rows))
