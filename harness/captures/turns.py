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
    body = i.request_json()
    nvext = body.get("nvext") if isinstance(body, dict) and isinstance(body.get("nvext"), dict) else {}
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
    req = i.request_json()
    return tokens_of(i.path, req if isinstance(req, dict) else {}, body)


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
    """A flat, non-empty list of token ids as an array; anything else (a batch of prompts, nesting, an empty list,
    text) is no ids."""
    if not isinstance(values, (list, tuple)) or not values:
        return None
    try:
        ids = np.asarray(values, dtype=np.int64)
    except (ValueError, TypeError, OverflowError):
        return None
    return ids if ids.ndim == 1 else None


def session_of(headers: dict) -> str | None:
    """The rollout's session id (kept on disk as a digest by the scrubber), if the client sent one."""
    for k, v in headers.items():
        if k.lower() in SESSION_ID_HEADERS and v and v[0] and v[0] != "<SCRUBBED>":
            return v[0]
    return None


def asked_for_ids(path: str, req: dict) -> bool:
    """Whether the request asked for the engine's ids (return_token_ids, nvext extra_fields, or a route that
    always answers them)."""
    nvext = req.get("nvext") if isinstance(req.get("nvext"), dict) else {}
    extra = nvext.get("extra_fields") if isinstance(nvext.get("extra_fields"), list) else []
    return (bool(req.get("return_token_ids")) or path == "/inference/v1/generate"
            or bool({x for x in extra if isinstance(x, str)} & {"engine_data", "completion_token_ids"}))


def sent_ids(path: str, req: dict):
    """The prompt ids a tokens-in request sent (None for messages-in)."""
    nvext = req.get("nvext") if isinstance(req.get("nvext"), dict) else {}
    return req.get("token_ids") if path == "/inference/v1/generate" else (req.get("tokens") or nvext.get("token_data"))


def experts_layout(raw: bytes, body) -> str | None:
    """A routed-experts object whose own `data` is not the first `data` key after `"routed_experts"`: a
    client that cuts the blob out by taking the first one decodes the wrong bytes."""
    at = raw.find(b'"routed_experts":{')
    if at == -1:
        return None
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
    answer: tuple | None = None  # the answer's signature (answer_signature), to know it when it is sent back


def read_turn(n: int, i: Interaction, keep: bool = False) -> TurnRead | None:
    """Exchange n as a turn (None for anything but a generation request): the request read first, then the
    answer parsed once, its tokens and what is wrong in it taken from that one parse."""
    kind = turn_kind(i)
    if kind is None:
        return None
    req = i.request_json()
    req = req if isinstance(req, dict) else {}
    turn = Turn(n, kind, i.path, i.status, asked_ids=asked_for_ids(i.path, req))
    prompt = ids_of(sent_ids(i.path, req)) if kind == "tito" else None
    messages = req.get("messages") if kind == "mito" and isinstance(req.get("messages"), list) else None
    read = TurnRead(turn, prompt, None, messages, session_of(i.request_headers),
                    (i.path, hashlib.blake2b(i.request_body, digest_size=16).digest()), [], None,
                    i.status >= 400 or (i.is_stream() and b"[DONE]" not in i.response_body))
    body, blobs = parsed_answer(i) if i.status < 400 else (None, [])
    t = tokens_of(i.path, req, body) if isinstance(body, dict) else None
    read.findings = [kind_of(a) for a in findings_of(i, req, t, body, blobs)]
    turn.prompt_len = len(prompt) if prompt is not None else None
    if t is None:
        return read
    if read.prompt is None and t.prompt_ids is not None:
        read.prompt = ids_of(list(t.prompt_ids))
    if t.completion_ids is not None:
        read.completion = ids_of(list(t.completion_ids))
        if read.completion is None:  # an empty completion is still an answer of no tokens
            read.completion = np.zeros(0, dtype=np.int64) if not list(t.completion_ids) else None
    turn.finish_reason = t.finish_reason
    read.answer = answer_signature(t.message)
    turn.prompt_len = len(read.prompt) if read.prompt is not None else None
    turn.completion_len = len(read.completion) if read.completion is not None else None
    if keep:
        turn.completion_logprobs = [float(x) for x in t.completion_logprobs] if t.completion_logprobs is not None \
            else None
        turn.prompt_ids = read.prompt.tolist() if read.prompt is not None else None
        turn.completion_ids = read.completion.tolist() if read.completion is not None else None
    usage = t.usage if isinstance(t.usage, dict) else {}
    details = usage.get("prompt_tokens_details") if isinstance(usage.get("prompt_tokens_details"), dict) else {}
    cached, prompt_tokens = details.get("cached_tokens"), usage.get("prompt_tokens")
    if isinstance(cached, int) and isinstance(prompt_tokens, int) and prompt_tokens > 0:
        read.cache = prompt_tokens, cached  # prefix-cache use, where the server reports it
    return read


def answer_signature(message) -> tuple | None:
    """An assistant message as a client sends it back, reduced to what survives re-serialization: its text
    without whitespace and the names of the tools it calls (None for anything but an assistant message)."""
    if not isinstance(message, dict) or message.get("role", "assistant") != "assistant":
        return None
    content = message.get("content")
    text = "".join(content.split()) if isinstance(content, str) else ""
    calls = message.get("tool_calls") if isinstance(message.get("tool_calls"), list) else []
    names = tuple(str((c.get("function") or {}).get("name")) for c in calls if isinstance(c, dict)
                  and isinstance(c.get("function"), dict))
    return text, names


def tokens_of(path: str, req: dict, body: dict) -> TurnTokens | None:
    """The ids and logprobs of a parsed answer (None for one without choices)."""
    try:
        if path == "/inference/v1/generate":
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


def findings_of(i: Interaction, req: dict, t: TurnTokens | None, body, blobs) -> list[str]:
    """What is wrong in one exchange by itself, from its request and its answer parsed once (body, blobs)."""
    if i.status >= 400:
        err = body_of_error(i)
        return [f"error {i.status}: {str((err or {}).get('message') or (err or {}).get('detail') or '')[:120]}"]
    if t is None:
        return ["answer cannot be parsed (invalid JSON or no choices)"]
    out = []
    asked = asked_for_ids(i.path, req)
    if asked and t.completion_ids is None:
        out.append("missing completion token ids")
    if asked and t.prompt_ids is None:
        out.append("missing prompt token ids")
    if t.completion_ids is not None and t.completion_logprobs is not None and len(t.completion_ids) != len(t.completion_logprobs):
        out.append(f"logprob/id length mismatch: {len(t.completion_logprobs)} logprobs for {len(t.completion_ids)} ids")
    if t.echo_ids_differ:
        out.append("choices[0].token_ids echo differs from engine_data ids")
    layout = experts_layout(i.response_body, body)
    if layout:
        out.append(layout)
    payload = find_payload(body) if isinstance(body, dict) else None
    if payload is not None:
        try:
            decode_payload(payload, blobs)
        except RoutedExpertsError as exc:
            out.append(f"routed experts do not decode: {exc}")
    return out


def body_of_error(i: Interaction) -> dict | None:
    body = i.response_json() or {}
    return body.get("error") if isinstance(body.get("error"), dict) else body


def exchange_anomalies(i: Interaction, t: TurnTokens | None) -> list[str]:
    """What is wrong in one exchange by itself (`harness inspect`)."""
    req = i.request_json()
    body, blobs = parsed_answer(i) if i.status < 400 else (None, [])
    return findings_of(i, req if isinstance(req, dict) else {}, t, body, blobs)


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
