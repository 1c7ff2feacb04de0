"""A recorded exchange read as a turn: is it a generation request (`turn_kind`), which tokens went in and came
out (`turn_tokens`, `request_turn`), and what looks wrong in the exchange itself (`exchange_anomalies`).
`analyze` is `harness inspect`: what a cassette holds, exchange by exchange."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..recording.format import Cassette, Interaction
from ..recording.scrub import SESSION_ID_HEADERS
from ..wire.answers import AnswerError, TurnTokens, assemble_stream, from_chat, from_generate
from ..wire.routed_experts import RoutedExpertsError, decode_payload, find_payload, split_body
from .kinds import kind_of

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


@dataclass(slots=True)
class Turn:
    exchange: int
    mode: str  # "tito" | "mito"
    path: str
    status: int
    prompt_len: int | None = None
    completion_len: int | None = None
    finish_reason: str | None = None
    asked_ids: bool = False
    link: str = "new"  # how it joined its conversation: new | tokens | messages | session | retry | route
    # (route: the same prompt, after the route the client tried first answered 404)
    prompt_ids: list[int] | None = None  # kept with keep_tokens (view, repro); otherwise let go
    completion_ids: list[int] | None = None
    completion_logprobs: list[float] | None = None

    def to_dict(self) -> dict:
        return {"exchange": self.exchange, "mode": self.mode, "path": self.path, "status": self.status,
                "prompt_tokens": self.prompt_len, "completion_tokens": self.completion_len,
                "finish_reason": self.finish_reason, "link": self.link}




def ids_of(values) -> np.ndarray | None:
    try:
        return np.asarray(values, dtype=np.int64) if isinstance(values, list) else None
    except (ValueError, TypeError, OverflowError):
        return None


def request_turn(n: int, i: Interaction, kind: str, keep: bool):
    """The turn as the request sent it and the answer reports it; its prompt and completion ids (numpy,
    or None); the request's messages (messages-in); the parsed answer tokens (None for an error or an
    answer that cannot be parsed)."""
    req = i.request_json()
    req = req if isinstance(req, dict) else {}
    nvext = req.get("nvext") if isinstance(req.get("nvext"), dict) else {}
    sent = req.get("token_ids") if i.path == "/inference/v1/generate" else (req.get("tokens") or nvext.get("token_data"))
    extra = nvext.get("extra_fields") if isinstance(nvext.get("extra_fields"), list) else []
    asked = (bool(req.get("return_token_ids")) or i.path == "/inference/v1/generate"
             or bool({x for x in extra if isinstance(x, str)} & {"engine_data", "completion_token_ids"}))
    prompt = ids_of(sent) if kind == "tito" else None
    turn = Turn(n, kind, i.path, i.status, asked_ids=asked)
    messages = req.get("messages") if kind == "mito" and isinstance(req.get("messages"), list) else None
    completion = None
    t = turn_tokens(i) if i.status < 400 else None
    if t is not None:
        if prompt is None and t.prompt_ids is not None:
            prompt = ids_of(list(t.prompt_ids))
        completion = ids_of(list(t.completion_ids)) if t.completion_ids is not None else None
        turn.finish_reason = t.finish_reason
        if keep and t.completion_logprobs is not None:
            turn.completion_logprobs = [float(x) for x in t.completion_logprobs]
    turn.prompt_len = len(prompt) if prompt is not None else None
    turn.completion_len = len(completion) if completion is not None else None
    if keep:
        turn.prompt_ids = prompt.tolist() if prompt is not None else None
        turn.completion_ids = completion.tolist() if completion is not None else None
    return turn, prompt, completion, messages, t


def session_of(i: Interaction) -> str | None:
    """The rollout's session id (kept on disk as a digest by the scrubber), if the client sent one."""
    for k, v in i.request_headers.items():
        if k.lower() in SESSION_ID_HEADERS and v and v[0] and v[0] != "<SCRUBBED>":
            return v[0]
    return None



def experts_layout(i: Interaction) -> str | None:
    """A routed-experts object whose own `data` is not the first `data` key after `"routed_experts"`: a
    client that cuts the blob out by taking the first one decodes the wrong bytes."""
    raw = i.response_body
    at = raw.find(b'"routed_experts":{')
    if at == -1 or i.status >= 400:
        return None
    body = i.response_json()
    try:
        own = body["choices"][0]["routed_experts"]["data"]
    except (KeyError, IndexError, TypeError):
        return None
    first = raw.find(b'"data"', at)
    start = raw.find(b'"', raw.find(b":", first) + 1) + 1 if first != -1 else -1
    if not isinstance(own, str) or start <= 0 or raw[start:start + 32] == own[:32].encode():
        return None
    keys = list(body["choices"][0]["routed_experts"])
    return (f"routed_experts object ({', '.join(keys)}) holds another \"data\" key before its own: a client that "
            f"takes the first \"data\" after the key decodes the wrong bytes")



def cached_tokens(tokens) -> tuple[int, int] | None:
    """(prompt tokens, of them served from the prefix cache) where the server reports it."""
    usage = getattr(tokens, "usage", None) or {}
    details = usage.get("prompt_tokens_details") if isinstance(usage, dict) else None
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    prompt = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    if isinstance(cached, int) and isinstance(prompt, int) and prompt > 0:
        return prompt, cached
    return None



@dataclass(slots=True)
class TurnRead:
    """Everything linking needs from one generation exchange, read in one pass."""
    turn: Turn
    prompt: np.ndarray | None
    completion: np.ndarray | None
    messages: list | None
    session: str | None
    body_key: tuple
    findings: list[tuple[str, str]]  # (kind, detail) the exchange shows by itself
    cache: tuple[int, int] | None  # (prompt tokens, cached) where the server reports prefix-cache use
    failed: bool  # an error status or a cut stream: a later identical request is its retry


def read_turn(n: int, i: Interaction, keep: bool = False) -> TurnRead | None:
    """Exchange n as a turn (None for anything but a generation request)."""
    kind = turn_kind(i)
    if kind is None:
        return None
    turn, prompt, completion, messages, tokens = request_turn(n, i, kind, keep)
    findings = [kind_of(a) for a in exchange_anomalies(i, tokens)]
    layout = experts_layout(i)
    if layout:
        findings.append(("routed_experts_ambiguous", layout))
    return TurnRead(turn, prompt, completion, messages, session_of(i),
                    (i.path, hashlib.blake2b(i.request_body, digest_size=16).digest()), findings,
                    cached_tokens(tokens), i.status >= 400 or (i.is_stream() and b"[DONE]" not in i.response_body))


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


def exchange_anomalies(i: Interaction, t: TurnTokens | None) -> list[str]:
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
            row.anomalies = exchange_anomalies(i, t)
        elif i.status >= 400:
            row.anomalies = exchange_anomalies(i, None)
        rows.append(row)
    return Report(rows, cassette.meta, Counter(f"{r.method} {r.path}" for r in rows), Counter(r.status for r in rows))


def inspect_cassette(path) -> Report:
    """`harness inspect`: the cassette at `path`, exchange by exchange."""
    return analyze(Cassette.load(path))
