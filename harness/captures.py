"""Captures: production traffic of any client, turned into conversations and audited for TITO health.

A capture is a cassette of many interleaved multi-turn rollouts, sent by whatever client the team
runs. `conversations` links each generation turn to the rollout it continues:

- by tokens: a tokens-in prompt (`token_ids`, `tokens`, `nvext.token_data`), or the engine prompt ids a
  messages-in answer reports, that starts with an earlier turn's prompt + completion ids continues
  that turn's conversation (the longest such head wins);
- by messages: a messages-in request whose messages extend an earlier request's messages continues
  that conversation (the most recent one);
- by session header where the client sends one and it survived scrubbing;
- a request identical to an earlier one that failed (an error status, a cut stream) is its retry.

A conversation's id is the index of its first exchange. `audit` then names what went wrong, turn by
turn: `silent_mito` (a messages-in turn after a turn that could have been stitched: it asked for the
engine's ids and ended with the stop token), `continuity_break` (a tokens-in prompt that shares a
long prefix with an earlier turn of the conversation but does not start with its prompt + completion:
retokenization drift), `logprob_mismatch`, `missing_ids`, `routed_experts_undecodable`, `error`,
`retried`. It reads the capture once, exchange by exchange.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .recording.format import Cassette, Interaction
from .recording.inspect import _anomalies, turn_kind, turn_tokens
from .recording.scrub import SESSION_ID_HEADERS

BREAK_MIN_PREFIX = 16  # tokens a prompt must share with a conversation's head to be a drifted continuation


@dataclass
class Turn:
    exchange: int
    mode: str  # "tito" | "mito"
    path: str
    status: int
    prompt_ids: list[int] | None = None
    completion_ids: list[int] | None = None
    completion_logprobs: list[float] | None = None
    finish_reason: str | None = None
    asked_ids: bool = False
    messages: list | None = None
    link: str = "new"  # how it joined its conversation: new | tokens | messages | session | retry

    @property
    def head(self) -> list[int] | None:
        if self.prompt_ids is None or self.completion_ids is None:
            return None
        return list(self.prompt_ids) + list(self.completion_ids)

    def to_dict(self) -> dict:
        return {"exchange": self.exchange, "mode": self.mode, "path": self.path, "status": self.status,
                "prompt_tokens": len(self.prompt_ids) if self.prompt_ids is not None else None,
                "completion_tokens": len(self.completion_ids) if self.completion_ids is not None else None,
                "finish_reason": self.finish_reason, "link": self.link}


@dataclass
class Anomaly:
    conversation: int
    turn: int  # 1-based within the conversation
    exchange: int
    kind: str
    detail: str

    def to_dict(self) -> dict:
        return {"conversation": self.conversation, "turn": self.turn, "exchange": self.exchange, "kind": self.kind,
                "detail": self.detail}


@dataclass
class Conversation:
    id: int
    turns: list[Turn] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)

    @property
    def exchanges(self) -> list[int]:
        return [t.exchange for t in self.turns]

    @property
    def head(self) -> list[int] | None:
        """Prompt + completion ids of the last turn that has them (a failed turn moves nothing)."""
        return next((t.head for t in reversed(self.turns) if t.head is not None), None)

    def verdict(self) -> str:
        modes = "/".join(t.mode for t in self.turns)
        if not self.anomalies:
            return f"ok ({modes})"
        kinds = sorted({a.kind for a in self.anomalies})
        return f"{', '.join(kinds)} ({modes})"

    def to_dict(self) -> dict:
        return {"id": self.id, "exchanges": self.exchanges, "turns": [t.to_dict() for t in self.turns],
                "verdict": self.verdict(), "anomalies": [a.to_dict() for a in self.anomalies]}


def _request_turn(n: int, i: Interaction, kind: str):
    """The turn as the request sent it and the answer reports it, and the parsed answer tokens
    (TurnTokens, or None for an error or an answer that cannot be parsed)."""
    req = i.request_json() or {}
    nvext = req.get("nvext") if isinstance(req.get("nvext"), dict) else {}
    sent = req.get("token_ids") if i.path == "/inference/v1/generate" else (req.get("tokens") or nvext.get("token_data"))
    asked = (bool(req.get("return_token_ids")) or i.path == "/inference/v1/generate"
             or bool(set(nvext.get("extra_fields") or []) & {"engine_data", "completion_token_ids"}))
    turn = Turn(n, kind, i.path, i.status, list(sent) if kind == "tito" and isinstance(sent, list) else None,
                asked_ids=asked, messages=req.get("messages") if kind == "mito" else None)
    t = turn_tokens(i) if i.status < 400 else None
    if t is not None:
        if turn.prompt_ids is None and t.prompt_ids is not None:
            turn.prompt_ids = list(t.prompt_ids)
        turn.completion_ids = list(t.completion_ids) if t.completion_ids is not None else None
        turn.completion_logprobs = ([float(x) for x in t.completion_logprobs]
                                    if t.completion_logprobs is not None else None)
        turn.finish_reason = t.finish_reason
    return turn, t


def _session(i: Interaction) -> str | None:
    """The rollout's session id (kept on disk as a digest by the scrubber), if the client sent one."""
    for k, v in i.request_headers.items():
        if k.lower() in SESSION_ID_HEADERS and v and v[0] and v[0] != "<SCRUBBED>":
            return v[0]
    return None


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    k = 0
    while k < n and a[k] == b[k]:
        k += 1
    return k


class Linker:
    """Reads exchanges in order and files each generation turn into a conversation."""

    def __init__(self, decode=None):
        self.conversations: dict[int, Conversation] = {}
        self._heads: dict[tuple[int, int], list[int]] = {}  # (head length, hash of its last 16 ids) -> conv ids
        self._lengths: set[int] = set()
        self._messages: list[tuple[int, list]] = []  # (conversation, last request's messages), most recent last
        self._sessions: dict[str, int] = {}
        self._failed: dict[tuple[str, bytes], int] = {}  # a failed request's (path, body) -> conversation
        self.decode = decode  # ids -> text, for break details (optional)

    @staticmethod
    def _key(ids: list[int], length: int) -> tuple[int, int]:
        return length, hash(tuple(ids[max(0, length - 16):length]))

    def _find_by_tokens(self, prompt: list[int]) -> int | None:
        for length in sorted((x for x in self._lengths if x <= len(prompt)), reverse=True):
            for cid in reversed(self._heads.get(self._key(prompt, length), [])):
                head = self.conversations[cid].head
                if head is not None and len(head) == length and prompt[:length] == head:
                    return cid
        return None

    def _find_by_messages(self, messages: list) -> int | None:
        for cid, prev in reversed(self._messages[-4096:]):
            if prev and len(messages) > len(prev) and messages[:len(prev)] == prev \
                    and self.conversations[cid].turns[-1].messages == prev:
                return cid
        return None

    def _closest(self, prompt: list[int]) -> tuple[int, int] | None:
        """The conversation whose head shares the longest prefix with `prompt` (cid, shared length)."""
        best = None
        for cid in list(self.conversations)[-512:]:
            head = self.conversations[cid].head
            if not head:
                continue
            k = _common_prefix(prompt, head)
            if k >= BREAK_MIN_PREFIX and k < len(head) and (best is None or k > best[1]):
                best = (cid, k)
        return best

    def _index(self, cid: int) -> None:
        turn = self.conversations[cid].turns[-1]
        head = turn.head
        if head:
            self._heads.setdefault(self._key(head, len(head)), []).append(cid)
            self._lengths.add(len(head))
        if turn.messages:
            self._messages.append((cid, turn.messages))

    def add(self, n: int, i: Interaction) -> None:
        kind = turn_kind(i)
        if kind is None:
            return
        turn, tokens = _request_turn(n, i, kind)
        anomalies: list[tuple[str, str]] = []
        cid = None
        retry_of = self._failed.pop((i.path, i.request_body), None)
        if retry_of is not None:
            cid, turn.link = retry_of, "retry"
            anomalies.append(("retried", "the same request as an earlier failed exchange of this conversation"))
        session = _session(i)
        if cid is None and session is not None and session in self._sessions:
            cid, turn.link = self._sessions[session], "session"
        prompt = turn.prompt_ids
        if cid is None and prompt:
            cid = self._find_by_tokens(prompt)
            if cid is not None:
                turn.link = "tokens"
        if cid is None and turn.messages:
            cid = self._find_by_messages(turn.messages)
            if cid is not None:
                turn.link = "messages"
        if cid is None and kind == "tito" and prompt:
            close = self._closest(prompt)
            if close is not None:
                cid, k = close
                turn.link = "tokens"
                head = self.conversations[cid].head
                anomalies.append(("continuity_break", self._break_detail(prompt, head, k)))
        if cid is None:
            cid = n
            self.conversations[cid] = Conversation(cid)
        conv = self.conversations[cid]
        prev = next((t for t in reversed(conv.turns) if t.status < 400), None) if turn.link != "retry" else None
        prev_invalid = prev is not None and any(a.turn == len(conv.turns) and a.kind in INVALID for a in conv.anomalies)
        if kind == "mito" and prev is not None and prev.status < 400 and prev.asked_ids and not prev_invalid \
                and prev.finish_reason == "stop" and prev.completion_ids:
            anomalies.append(("silent_mito", f"messages-in after turn {len(conv.turns)} ended with the stop token "
                                             f"and its engine ids were known: it could have been stitched"))
        for a in _anomalies(i, tokens):
            anomalies.append(_kind_of(a, i))
        layout = _experts_layout(i)
        if layout:
            anomalies.append(("routed_experts_ambiguous", layout))
        if session is not None:
            self._sessions[session] = cid
        if i.status >= 400 or (i.is_stream() and b"[DONE]" not in i.response_body):
            self._failed[(i.path, i.request_body)] = cid
        conv.turns.append(turn)
        for kind_, detail in anomalies:
            conv.anomalies.append(Anomaly(cid, len(conv.turns), n, kind_, detail))
        self._index(cid)

    def _break_detail(self, prompt: list[int], head: list[int], k: int) -> str:
        def show(ids):
            text = self.decode(ids) if self.decode else None
            return f"{ids}" + (f" {text!r}" if text is not None else "")

        return (f"the prompt shares {k} ids with the previous turn's prompt + completion ({len(head)} ids), then "
                f"differs at position {k}: previous {show(head[k:k + 4])}, now {show(prompt[k:k + 4])}")


INVALID = {"logprob_mismatch", "missing_ids", "routed_experts_undecodable", "malformed", "error"}


def _experts_layout(i: Interaction) -> str | None:
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


def _kind_of(text: str, i: Interaction) -> tuple[str, str]:
    if text.startswith("error"):
        return "error", text
    if "mismatch" in text:
        return "logprob_mismatch", text
    if text.startswith("missing"):
        return "missing_ids", text
    if "routed experts" in text:
        return "routed_experts_undecodable", text
    return "malformed", text


@dataclass
class Audit:
    conversations: list[Conversation]
    meta: dict
    exchanges: int

    @property
    def turns(self) -> int:
        return sum(len(c.turns) for c in self.conversations)

    @property
    def stitched(self) -> int:
        return sum(t.mode == "tito" for c in self.conversations for t in c.turns)

    @property
    def anomalies(self) -> list[Anomaly]:
        return sorted((a for c in self.conversations for a in c.anomalies), key=lambda a: a.exchange)

    def fallbacks(self) -> dict[str, int]:
        """Messages-in turns after the first of a conversation, by why."""
        out: dict[str, int] = {}
        for c in self.conversations:
            for k, t in enumerate(c.turns[1:], 2):
                if t.mode == "mito":
                    before = [a.kind for a in c.anomalies if a.turn == k - 1 and a.kind in INVALID]
                    why = next((a.kind for a in c.anomalies if a.turn == k and a.kind == "silent_mito"),
                               f"after {before[0]}" if before else
                               "after a turn cut by max_tokens" if c.turns[k - 2].finish_reason == "length" else
                               "the client did not ask for engine ids")
                    out[why] = out.get(why, 0) + 1
        return out

    def to_dict(self) -> dict:
        return {"conversations": len(self.conversations), "turns": self.turns, "stitched": self.stitched,
                "exchanges": self.exchanges, "fallbacks": self.fallbacks(),
                "anomalies": [a.to_dict() for a in self.anomalies], "bug": self.meta.get("bug")}


def audit(cassette: Cassette, decode=None) -> Audit:
    linker = Linker(decode)
    for n, i in enumerate(cassette.interactions):
        linker.add(n, i)
    return Audit(sorted(linker.conversations.values(), key=lambda c: c.id), cassette.meta, len(cassette.interactions))


def parse_exchanges(spec: str) -> list[int]:
    """'3,7-9' -> [3, 7, 8, 9]; ValueError with what is wrong."""
    out: list[int] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"--exchanges {spec!r}: write indices and ranges, e.g. 3,7-9")
        a, b = int(lo), int(hi) if sep else int(lo)
        if b < a:
            raise ValueError(f"--exchanges {spec!r}: {part} runs backwards")
        out.extend(range(a, b + 1))
    return sorted(set(out))


def select(cassette: Cassette, conversations=(), exchanges=(), anomaly: str | None = None) -> tuple[list[int], dict]:
    """The exchange indices a selection names (whole conversations for --conversation and --anomaly),
    and a note of what was selected for the extract's meta."""
    chosen: set[int] = set(exchanges)
    report = audit(cassette) if conversations or anomaly else None
    if report is not None:
        by_id = {c.id: c for c in report.conversations}
        unknown = [c for c in conversations if c not in by_id]
        if unknown:
            raise ValueError(f"no conversation {unknown[0]} in this capture (ids: harness cassette conversations)")
        for cid in conversations:
            chosen.update(by_id[cid].exchanges)
        if anomaly:
            hit = [c for c in report.conversations if any(a.kind == anomaly for a in c.anomalies)]
            if not hit:
                raise ValueError(f"no conversation with a {anomaly} anomaly in this capture")
            for c in hit:
                chosen.update(c.exchanges)
    past = [n for n in chosen if n >= len(cassette.interactions)]
    if past:
        raise ValueError(f"exchange {past[0]} is past the end ({len(cassette.interactions)} exchanges)")
    return sorted(chosen), {"conversations": list(conversations) or None, "exchanges": sorted(exchanges) or None,
                            "anomaly": anomaly}


def extract(source, out, conversations=(), exchanges=(), anomaly: str | None = None) -> Cassette:
    """A small cassette cut out of a capture: the selected exchanges in their order, the capture's
    provenance plus where they came from, blobs copied beside it."""
    from pathlib import Path

    src = Cassette.load(source, resolve_blobs=False)
    indices, what = select(src, conversations, exchanges, anomaly)
    if not indices:
        raise ValueError("nothing selected: pass --conversation ID, --exchanges 3,7-9 or --anomaly KIND")
    meta = {**src.meta, "extracted_from": {"cassette": str(Path(source).name), "exchanges": indices,
                                           **{k: v for k, v in what.items() if v}}}
    cut = Cassette([src.interactions[n] for n in indices], meta)
    _copy_blobs(Path(source), Path(out), cut)
    from .recording.format import atomic_write

    atomic_write(Path(out), cut.to_yaml().encode("utf-8"))
    return cut


def _copy_blobs(source, out, cassette: Cassette) -> None:
    import shutil

    from .recording.blobs import blob_dir

    digests = {d for i in cassette.interactions for d in (i.blobs or [])}
    if not digests:
        return
    dst = blob_dir(out)
    dst.mkdir(parents=True, exist_ok=True)
    for f in blob_dir(source).iterdir():
        if f.name.split(".")[0] in digests:
            shutil.copy2(f, dst / f.name)


def export_columns(cassette: Cassette) -> dict[str, list]:
    """One row per exchange, as columns: where it sits (conversation, turn), what it was (mode, route,
    status, latency) and its tokens (ids and logprobs as lists), with the audit's anomaly kinds."""
    report = audit(cassette)
    place = {t.exchange: (c.id, k, t) for c in report.conversations for k, t in enumerate(c.turns, 1)}
    kinds: dict[int, list[str]] = {}
    for a in report.anomalies:
        kinds.setdefault(a.exchange, []).append(a.kind)
    cols: dict[str, list] = {name: [] for name in (
        "exchange", "conversation", "turn", "mode", "method", "path", "status", "prompt_ids", "completion_ids",
        "completion_logprobs", "finish_reason", "duration_ms", "recorded_at", "faults", "anomalies")}
    for n, i in enumerate(cassette.interactions):
        conv, k, t = place.get(n, (None, None, None))
        row = {"exchange": n, "conversation": conv, "turn": k, "mode": t.mode if t else None, "method": i.method,
               "path": i.path, "status": i.status, "prompt_ids": t.prompt_ids if t else None,
               "completion_ids": t.completion_ids if t else None,
               "completion_logprobs": t.completion_logprobs if t else None,
               "finish_reason": t.finish_reason if t else None, "duration_ms": i.duration_ms,
               "recorded_at": i.recorded_at, "faults": list(i.faults or []), "anomalies": kinds.get(n, [])}
        for key, v in row.items():
            cols[key].append(v)
    return cols


def export_parquet(cassette: Cassette, out) -> int:
    """Write `export_columns` as a Parquet file (pyarrow); returns the rows written."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError("Parquet export needs pyarrow: pip install 'tito-harness[analytics]'") from None
    cols = export_columns(cassette)
    ids, lps, strs = pa.list_(pa.int32()), pa.list_(pa.float32()), pa.list_(pa.string())
    schema = pa.schema([("exchange", pa.int64()), ("conversation", pa.int64()), ("turn", pa.int32()),
                        ("mode", pa.string()), ("method", pa.string()), ("path", pa.string()), ("status", pa.int32()),
                        ("prompt_ids", ids), ("completion_ids", ids), ("completion_logprobs", lps),
                        ("finish_reason", pa.string()), ("duration_ms", pa.float64()), ("recorded_at", pa.float64()),
                        ("faults", strs), ("anomalies", strs)])
    table = pa.table(cols, schema=schema)
    pq.write_table(table, out, compression="zstd")
    return table.num_rows
