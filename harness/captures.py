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

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from .recording.format import Cassette, Interaction
from .recording.inspect import _anomalies, turn_kind, turn_tokens
from .recording.scrub import SESSION_ID_HEADERS

KEY = 16  # ids at the end of a head that key it in the index (with its length)
WINDOW = 200_000  # a conversation with no turn in this many exchanges is closed: its state is let go
INVALID = {"logprob_mismatch", "missing_ids", "routed_experts_undecodable", "malformed", "error"}


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
    # linking state, let go when the conversation closes (its head's ids are the Linker's `_head_ids`)
    head_key: tuple | None = field(default=None, repr=False)
    first_key: tuple | None = field(default=None, repr=False)  # its first prompt's key, once it has one
    messages: bytes | None = field(default=None, repr=False)  # digest of the last turn's messages (messages-in)
    last: int = field(default=0, repr=False)  # the exchange of its last turn
    probe: tuple | None = field(default=None, repr=False)  # its last turn: a 404 on a tokens-in route (path, ids)
    route_probes: int = 0  # tokens-in routes the client found missing (404) and sent the turn elsewhere

    @property
    def exchanges(self) -> list[int]:
        return [t.exchange for t in self.turns]

    def verdict(self) -> str:
        modes = "/".join(t.mode for t in self.turns)
        if not self.anomalies:
            return f"ok ({modes})"
        kinds = sorted({a.kind for a in self.anomalies})
        return f"{', '.join(kinds)} ({modes})"

    def fallbacks(self) -> dict[str, int]:
        """Messages-in turns after the first, by why."""
        out: dict[str, int] = {}
        for k, t in enumerate(self.turns[1:], 2):
            if t.mode == "mito":
                before = [a.kind for a in self.anomalies if a.turn == k - 1 and a.kind in INVALID]
                why = next((a.kind for a in self.anomalies if a.turn == k and a.kind == "silent_mito"),
                           f"after {before[0]}" if before else
                           "after a turn cut by max_tokens" if self.turns[k - 2].finish_reason == "length" else
                           "the client did not ask for engine ids")
                out[why] = out.get(why, 0) + 1
        return out

    def to_dict(self) -> dict:
        return {"id": self.id, "exchanges": self.exchanges, "turns": [t.to_dict() for t in self.turns],
                "verdict": self.verdict(), "anomalies": [a.to_dict() for a in self.anomalies]}


def _ids(values) -> np.ndarray | None:
    try:
        return np.asarray(values, dtype=np.int64) if isinstance(values, list) else None
    except (ValueError, TypeError, OverflowError):
        return None


def _request_turn(n: int, i: Interaction, kind: str, keep: bool):
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
    prompt = _ids(sent) if kind == "tito" else None
    turn = Turn(n, kind, i.path, i.status, asked_ids=asked)
    messages = req.get("messages") if kind == "mito" and isinstance(req.get("messages"), list) else None
    completion = None
    t = turn_tokens(i) if i.status < 400 else None
    if t is not None:
        if prompt is None and t.prompt_ids is not None:
            prompt = _ids(list(t.prompt_ids))
        completion = _ids(list(t.completion_ids)) if t.completion_ids is not None else None
        turn.finish_reason = t.finish_reason
        if keep and t.completion_logprobs is not None:
            turn.completion_logprobs = [float(x) for x in t.completion_logprobs]
    turn.prompt_len = len(prompt) if prompt is not None else None
    turn.completion_len = len(completion) if completion is not None else None
    if keep:
        turn.prompt_ids = prompt.tolist() if prompt is not None else None
        turn.completion_ids = completion.tolist() if completion is not None else None
    return turn, prompt, completion, messages, t


def _session(i: Interaction) -> str | None:
    """The rollout's session id (kept on disk as a digest by the scrubber), if the client sent one."""
    for k, v in i.request_headers.items():
        if k.lower() in SESSION_ID_HEADERS and v and v[0] and v[0] != "<SCRUBBED>":
            return v[0]
    return None


def _common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n


def _contains(hay: np.ndarray, needle: np.ndarray) -> bool:
    """Whether `needle` occurs in `hay` as a run of whole ids."""
    raw, want, size = hay.tobytes(), needle.tobytes(), hay.itemsize
    at = raw.find(want)
    while at != -1 and at % size:
        at = raw.find(want, at + 1)
    return at != -1


def _message_digests(messages: list) -> list[bytes]:
    """Digest of each prefix of a message list (k messages -> digests[k - 1]), computed in one pass."""
    h = hashlib.blake2b(digest_size=16)
    out = []
    for m in messages:
        try:
            raw = orjson.dumps(m, option=orjson.OPT_SORT_KEYS)
        except TypeError:
            raw = repr(m).encode()
        h.update(len(raw).to_bytes(8, "little"))
        h.update(raw)
        out.append(h.digest())
    return out


class _Keyed:
    """Sequences (a conversation's head, or its first prompt) keyed by their length and last KEY ids, so
    that the ones a prompt starts with are found by looking at the prompt's own positions: the cost of a
    lookup grows with the prompt, never with the capture."""

    def __init__(self):
        self.slots: dict[tuple, list[int]] = {}
        self.lengths: dict[int, int] = {}  # length -> how many keys have it
        self.ends: dict[int, int] = {}  # last id -> how many keys end with it

    @staticmethod
    def key(ids: np.ndarray, length: int) -> tuple:
        return length, ids[max(0, length - KEY):length].tobytes()

    def add(self, ids: np.ndarray, cid: int) -> tuple:
        k = self.key(ids, len(ids))
        self.slots.setdefault(k, []).append(cid)
        self.lengths[len(ids)] = self.lengths.get(len(ids), 0) + 1
        last = int(ids[-1])
        self.ends[last] = self.ends.get(last, 0) + 1
        return k + (last,)

    def remove(self, key: tuple, cid: int) -> None:
        length, tail, last = key
        cids = self.slots.get((length, tail))
        if cids and cid in cids:
            cids.remove(cid)
            if not cids:
                del self.slots[(length, tail)]
        for table, k in ((self.lengths, length), (self.ends, last)):
            table[k] -= 1
            if not table[k]:
                del table[k]

    def candidates(self, prompt: np.ndarray):
        """(length, conversation ids) of keys the prompt may start with, longest first."""
        if not self.ends or len(prompt) == 0:
            return
        ends = np.fromiter(self.ends, dtype=np.int64, count=len(self.ends))
        for j in np.flatnonzero(np.isin(prompt, ends))[::-1]:
            length = int(j) + 1
            if length in self.lengths:
                cids = self.slots.get(self.key(prompt, length))
                if cids:
                    yield length, cids


class Linker:
    """Reads exchanges in order and files each generation turn into a conversation.

    Memory stays flat however long the capture: a conversation keeps only what linking needs (its
    head, the digest of its messages), and one with no turn in `window` exchanges is closed and handed
    to `on_close` (without `on_close` closed conversations stay in `self.closed`)."""

    def __init__(self, decode=None, window: int = WINDOW, on_close=None, keep_tokens: bool = False):
        self.conversations: dict[int, Conversation] = OrderedDict()  # open ones, least recently used first
        self.closed: list[Conversation] = []
        self.on_close = on_close
        self.window = window
        self.keep_tokens = keep_tokens
        self.decode = decode  # ids -> text, for break details (optional)
        self._heads, self._firsts = _Keyed(), _Keyed()
        self._by_messages: dict[bytes, list[int]] = {}  # digest of a last turn's messages -> conversations
        self._sessions: dict[str, int] = {}
        self._failed: dict[tuple[str, bytes], int] = {}  # a failed request's (path, body digest) -> conversation
        self._head_ids: dict[int, np.ndarray] = {}
        self.prompt_tokens = self.cached_tokens = 0  # prefix-cache use, where answers report it

    def _find_by_tokens(self, prompt: np.ndarray) -> int | None:
        for length, cids in self._heads.candidates(prompt):
            for cid in reversed(cids):
                head = self._head_ids.get(cid)
                if head is not None and len(head) == length and np.array_equal(prompt[:length], head):
                    return cid
        return None

    def _closest(self, prompt: np.ndarray) -> tuple[int, int] | None:
        """The rollout this prompt continues with its earlier turns re-tokenized (cid, shared length): a
        conversation whose whole first prompt this longer prompt starts with, whose head it leaves
        somewhere after that, and which it shares ids with past its first prompt: the head's last ids
        still in the prompt (the turns after the drifted one), or at least the first completion id. A
        new rollout of the same prompt (a GRPO group) is that prompt alone: not a break. The best
        evidence wins: the head's last ids found, then the longest shared prefix."""
        best = None
        if len(prompt) == 0:
            return None
        for length, cids in self._firsts.candidates(prompt):
            if len(prompt) <= length:
                continue
            for cid in cids[-64:]:
                head = self._head_ids.get(cid)
                if head is None:
                    continue
                k = _common_prefix(prompt, head)
                if not length <= k < len(head):
                    continue
                tail = head[max(k + 1, len(head) - KEY):]  # the head's last ids, past where they part
                score = (len(tail) >= 4 and _contains(prompt[k:], tail), k)
                if (score[0] or k > length) and (best is None or score > best[0]):
                    best = (score, cid, k)
        return (best[1], best[2]) if best else None

    def _close(self, conv: Conversation) -> None:
        self._forget(conv)
        del self.conversations[conv.id]
        if self.on_close is not None:
            self.on_close(conv)
        else:
            self.closed.append(conv)

    def _forget(self, conv: Conversation) -> None:
        if conv.head_key is not None:
            self._heads.remove(conv.head_key, conv.id)
        if conv.first_key is not None:
            self._firsts.remove(conv.first_key, conv.id)
        self._unmessage(conv)
        self._head_ids.pop(conv.id, None)
        conv.head_key = conv.first_key = conv.messages = None

    def finish(self) -> list[Conversation]:
        """Close every open conversation; returns the closed ones kept (without `on_close`), by id."""
        for cid in sorted(self.conversations):
            self._close(self.conversations[cid])
        self._sessions.clear()
        self._failed.clear()
        return sorted(self.closed, key=lambda c: c.id)

    def add(self, n: int, i: Interaction):
        """File exchange n; returns (conversation, turn number, Turn, anomaly kinds) for a generation
        turn, None for anything else."""
        kind = turn_kind(i)
        if kind is None:
            return None
        turn, prompt, completion, messages, tokens = _request_turn(n, i, kind, self.keep_tokens)
        anomalies: list[tuple[str, str]] = []
        cid = None
        body_key = (i.path, hashlib.blake2b(i.request_body, digest_size=16).digest())
        retry_of = self._failed.pop(body_key, None)
        if retry_of is not None and retry_of in self.conversations:
            cid, turn.link = retry_of, "retry"
            anomalies.append(("retried", "the same request as an earlier failed exchange of this conversation"))
        session = _session(i)
        if cid is None and session is not None and self._sessions.get(session) in self.conversations:
            cid, turn.link = self._sessions[session], "session"
        if cid is None and prompt is not None and len(prompt):
            cid = self._find_by_tokens(prompt)
            if cid is not None:
                turn.link = "tokens"
        digests = _message_digests(messages) if messages else []
        if cid is None and len(digests) > 1:
            for d in reversed(digests[:-1]):
                found = self._by_messages.get(d)
                if found:  # conversations with these messages so far: the most recent (identical rollouts are alike)
                    cid, turn.link = found[-1], "messages"
                    break
        if cid is None and kind == "tito" and prompt is not None and len(prompt):
            close = self._closest(prompt)
            if close is not None:
                cid, k = close
                turn.link = "tokens"
                anomalies.append(("continuity_break", self._break_detail(prompt, self._head_ids[cid], k)))
        if cid is None:
            cid = n
            self.conversations[cid] = Conversation(cid)
        conv = self.conversations[cid]
        self.conversations.move_to_end(cid)
        prev = next((t for t in reversed(conv.turns) if t.status < 400), None) if turn.link != "retry" else None
        prev_invalid = prev is not None and any(a.turn == len(conv.turns) and a.kind in INVALID for a in conv.anomalies)
        if kind == "mito" and prev is not None and prev.asked_ids and not prev_invalid \
                and prev.finish_reason == "stop" and prev.completion_len:
            anomalies.append(("silent_mito", f"messages-in after turn {len(conv.turns)} ended with the stop token "
                                             f"and its engine ids were known: it could have been stitched"))
        cache = _cached_tokens(tokens)
        if cache is not None:
            self.prompt_tokens += cache[0]
            self.cached_tokens += cache[1]
        for a in _anomalies(i, tokens):
            anomalies.append(_kind_of(a))
        layout = _experts_layout(i)
        if layout:
            anomalies.append(("routed_experts_ambiguous", layout))
        if session is not None:
            self._sessions[session] = cid
        if i.status >= 400 or (i.is_stream() and b"[DONE]" not in i.response_body):
            self._failed[body_key] = cid
        ids = prompt.tobytes() if prompt is not None else None
        if conv.probe is not None and kind == "tito" and conv.probe[1] == ids and conv.probe[0] != i.path \
                and turn.link != "retry":
            # the client asked a tokens-in route the server lacks (404) and sent the same turn to another
            # route: a probe, not a failed turn
            conv.turns.pop()
            conv.anomalies = [a for a in conv.anomalies if a.turn <= len(conv.turns)]
            conv.route_probes += 1
            turn.link = "route"
        conv.probe = (i.path, ids) if i.status == 404 and kind == "tito" and ids is not None else None
        conv.turns.append(turn)
        conv.last = n
        for kind_, detail in anomalies:
            conv.anomalies.append(Anomaly(cid, len(conv.turns), n, kind_, detail))
        self._remember(conv, prompt, completion, digests[-1] if digests else None)
        self._expire(n)
        return conv, len(conv.turns), turn, [k for k, _ in anomalies]

    def _remember(self, conv: Conversation, prompt, completion, digest: bytes | None) -> None:
        self._unmessage(conv)
        conv.messages = digest
        if digest is not None:
            self._by_messages.setdefault(digest, []).append(conv.id)
        if prompt is not None and len(prompt) and conv.first_key is None:
            conv.first_key = self._firsts.add(prompt, conv.id)
        if prompt is not None and completion is not None:
            head = np.concatenate([prompt, completion])
            if len(head):
                if conv.head_key is not None:
                    self._heads.remove(conv.head_key, conv.id)
                conv.head_key = self._heads.add(head, conv.id)
                self._head_ids[conv.id] = head

    def _unmessage(self, conv: Conversation) -> None:
        cids = self._by_messages.get(conv.messages) if conv.messages is not None else None
        if cids and conv.id in cids:
            cids.remove(conv.id)
            if not cids:
                del self._by_messages[conv.messages]

    def _expire(self, n: int) -> None:
        while self.conversations:
            oldest = next(iter(self.conversations.values()))
            if n - oldest.last < self.window:
                break
            self._close(oldest)
        if len(self._failed) > 4 * self.window:
            self._failed.clear()
        if len(self._sessions) > 4 * self.window:
            self._sessions = {k: v for k, v in self._sessions.items() if v in self.conversations}

    def _break_detail(self, prompt: np.ndarray, head: np.ndarray, k: int) -> str:
        def show(ids):
            ids = [int(x) for x in ids]
            text = self.decode(ids) if self.decode else None
            return f"{ids}" + (f" {text!r}" if text is not None else "")

        return (f"the prompt shares {k} ids with the previous turn's prompt + completion ({len(head)} ids), then "
                f"differs at position {k}: previous {show(head[k:k + 4])}, now {show(prompt[k:k + 4])}")


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


def _kind_of(text: str) -> tuple[str, str]:
    if text.startswith("error"):
        return "error", text
    if "mismatch" in text:
        return "logprob_mismatch", text
    if text.startswith("missing"):
        return "missing_ids", text
    if "routed experts" in text:
        return "routed_experts_undecodable", text
    return "malformed", text


def _cached_tokens(tokens) -> tuple[int, int] | None:
    """(prompt tokens, of them served from the prefix cache) where the server reports it."""
    usage = getattr(tokens, "usage", None) or {}
    details = usage.get("prompt_tokens_details") if isinstance(usage, dict) else None
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    prompt = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    if isinstance(cached, int) and isinstance(prompt, int) and prompt > 0:
        return prompt, cached
    return None


@dataclass
class Audit:
    """The TITO health of a capture. Built conversation by conversation as they close, so it holds
    counts and anomalies, not the capture; `conversations` is filled only when asked to keep them."""
    meta: dict
    exchanges: int = 0
    conversation_count: int = 0
    turns: int = 0
    stitched: int = 0
    route_probes: int = 0  # 404s of a missing tokens-in route, the turn then sent to another route
    prompt_tokens: int = 0  # over turns whose answer reports prefix-cache use
    cached_tokens: int = 0
    _fallbacks: dict = field(default_factory=dict)
    _anomalies: list = field(default_factory=list)
    conversations: list[Conversation] | None = None
    index: "CaptureIndex | None" = None

    def take(self, conv: Conversation) -> None:
        self.conversation_count += 1
        self.turns += len(conv.turns)
        self.stitched += sum(t.mode == "tito" for t in conv.turns)
        self.route_probes += conv.route_probes
        for why, k in conv.fallbacks().items():
            self._fallbacks[why] = self._fallbacks.get(why, 0) + k
        self._anomalies.extend(conv.anomalies)
        if self.conversations is not None:
            self.conversations.append(conv)

    @property
    def anomalies(self) -> list[Anomaly]:
        return sorted(self._anomalies, key=lambda a: a.exchange)

    def fallbacks(self) -> dict[str, int]:
        """Messages-in turns after the first of a conversation, by why."""
        return dict(self._fallbacks)

    def cache_reuse(self) -> float | None:
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else None

    def to_dict(self) -> dict:
        return {"conversations": self.conversation_count, "turns": self.turns, "stitched": self.stitched,
                "exchanges": self.exchanges, "fallbacks": self.fallbacks(), "route_probes": self.route_probes,
                "prefix_cache_reuse": self.cache_reuse(),
                "anomalies": [a.to_dict() for a in self.anomalies], "bug": self.meta.get("bug")}


# -- reading a capture once ---------------------------------------------------------------------------------

INDEX_VERSION = 1


def index_path(path) -> Path:
    return Path(str(path) + ".idx")


@dataclass
class CaptureIndex:
    """Where each exchange sits in a capture file and which conversation it belongs to (-1: not a turn),
    with the conversations that show each anomaly kind: `extract` reads only what it needs. Written
    beside the capture (`<file>.idx`) the first time a capture is audited, listed or extracted from, and
    trusted while the file keeps its size and modification time."""
    size: int
    mtime_ns: int
    starts: list[int]
    ends: list[int]
    conversation: list[int]
    anomalies: dict[str, list[int]]

    @classmethod
    def load(cls, path) -> "CaptureIndex | None":
        p, idx = _stat(path), index_path(path)
        try:
            data = orjson.loads(idx.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        if not isinstance(data, dict) or data.get("version") != INDEX_VERSION \
                or (data.get("size"), data.get("mtime_ns")) != p:
            return None
        try:
            return cls(data["size"], data["mtime_ns"], data["starts"], data["ends"], data["conversation"],
                       data["anomalies"])
        except KeyError:
            return None

    def save(self, path) -> bool:
        from .recording.format import atomic_write

        try:
            atomic_write(index_path(path), orjson.dumps({"version": INDEX_VERSION, **self.__dict__}))
            return True
        except OSError:  # a read-only place: the index lives in memory for this run
            return False

    def spans(self, exchanges) -> list:
        from .recording.format import Span

        return [Span(self.starts[n], self.ends[n]) for n in exchanges]


def _stat(path) -> tuple[int, int]:
    import os

    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def audit(source, decode=None, keep: bool = True, on_conversation=None, window: int = WINDOW) -> Audit:
    """Audit a capture: a Cassette, or a path read one exchange at a time (flat memory; the index for
    `extract` is written beside it on the way). `keep` keeps the conversations in `Audit.conversations`
    (by id); `on_conversation` is called with each one as it closes."""
    meta = source.meta if isinstance(source, Cassette) else _read_meta(source)
    report = Audit(meta, conversations=[] if keep else None)

    def closed(conv: Conversation) -> None:
        report.take(conv)
        if on_conversation is not None:
            on_conversation(conv)

    linker = Linker(decode, window=window, on_close=closed)
    spans, where = [], []
    for n, span, inter in _exchanges(source):
        placed = linker.add(n, inter)
        where.append(placed[0].id if placed else -1)
        if span is not None:
            spans.append(span)
        report.exchanges = n + 1
    linker.finish()
    report.prompt_tokens, report.cached_tokens = linker.prompt_tokens, linker.cached_tokens
    if report.conversations is not None:
        report.conversations.sort(key=lambda c: c.id)
    if not isinstance(source, Cassette) and len(spans) == report.exchanges:
        kinds: dict[str, set] = {}
        for a in report._anomalies:
            kinds.setdefault(a.kind, set()).add(a.conversation)
        report.index = CaptureIndex(*_stat(source), [s.start for s in spans], [s.end for s in spans], where,
                                    {k: sorted(v) for k, v in kinds.items()})
        report.index.save(source)
    return report


def _read_meta(path) -> dict:
    from .recording.format import read_meta

    return read_meta(path)


def _exchanges(source):
    if isinstance(source, Cassette):
        return ((n, None, i) for n, i in enumerate(source.interactions))
    from .recording.format import iter_interactions

    return iter_interactions(source)


def capture_index(path) -> CaptureIndex | None:
    """The capture's index: the one beside it while it is current, else built by one audit pass (None
    for a file whose layout needs a whole load)."""
    return CaptureIndex.load(path) or audit(path, keep=False).index


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


def select(where: list[int], by_kind: dict[str, list[int]], conversations=(), exchanges=(),
           anomaly: str | None = None) -> tuple[list[int], dict]:
    """The exchange indices a selection names (whole conversations for --conversation and --anomaly),
    given each exchange's conversation (-1 for none) and the conversations showing each anomaly kind;
    and a note of what was selected for the extract's meta."""
    chosen: set[int] = set(exchanges)
    wanted = set(conversations)
    known = set(where)
    unknown = [c for c in conversations if c < 0 or c not in known]
    if unknown:
        raise ValueError(f"no conversation {unknown[0]} in this capture (ids: harness cassette conversations)")
    if anomaly:
        hit = by_kind.get(anomaly) or []
        if not hit:
            raise ValueError(f"no conversation with a {anomaly} anomaly in this capture")
        wanted.update(hit)
    if wanted:
        chosen.update(n for n, c in enumerate(where) if c in wanted)
    past = [n for n in chosen if n >= len(where)]
    if past:
        raise ValueError(f"exchange {past[0]} is past the end ({len(where)} exchanges)")
    return sorted(chosen), {"conversations": list(conversations) or None, "exchanges": sorted(exchanges) or None,
                            "anomaly": anomaly}


def _whole_index(cassette: Cassette) -> tuple[list[int], dict[str, list[int]]]:
    report = audit(cassette)
    where = [-1] * len(cassette.interactions)
    kinds: dict[str, set] = {}
    for c in report.conversations:
        for n in c.exchanges:
            where[n] = c.id
        for a in c.anomalies:
            kinds.setdefault(a.kind, set()).add(c.id)
    return where, {k: sorted(v) for k, v in kinds.items()}


def exchange_map(path) -> tuple[CaptureIndex | None, list[int], dict[str, list[int]]]:
    """The capture's index (None for a file whose layout needs a whole load), each exchange's conversation
    (-1: not a turn) and the conversations showing each anomaly kind."""
    idx = capture_index(path)
    if idx is not None:
        return idx, idx.conversation, idx.anomalies
    return None, *_whole_index(Cassette.load(path, resolve_blobs=False))


def read_exchanges(source, indices: list[int], idx: CaptureIndex | None = None,
                   resolve_blobs: bool = False) -> tuple[list[Interaction], dict]:
    """Chosen exchanges of a capture and its meta, read through its index (`idx`, the one `exchange_map`
    gave; None: a whole load): a conversation comes out of a capture of any size without parsing the rest.
    Blob markers are kept unless `resolve_blobs`."""
    from .recording.format import iter_interactions

    if idx is None:
        src = Cassette.load(source, resolve_blobs=resolve_blobs)
        return [src.interactions[n] for n in indices], src.meta
    return ([i for _, _, i in iter_interactions(source, resolve_blobs=resolve_blobs, spans=idx.spans(indices))],
            _read_meta(source))


def conversation_exchanges(path, conversations) -> tuple[list[int], list[Interaction], dict]:
    """The exchanges of whole conversations (indices, interactions with their blobs put back, the capture's
    meta); ValueError naming an id the capture does not have."""
    idx, where, by_kind = exchange_map(path)
    indices, _ = select(where, by_kind, conversations)
    interactions, meta = read_exchanges(path, indices, idx, resolve_blobs=True)
    return indices, interactions, meta


def extract(source, out, conversations=(), exchanges=(), anomaly: str | None = None) -> Cassette:
    """A small cassette cut out of a capture: the selected exchanges in their order, the capture's
    provenance plus where they came from, blobs copied beside it. The capture's index finds them."""
    from .recording.format import atomic_write

    idx, where, by_kind = exchange_map(source)
    indices, what = select(where, by_kind, conversations, exchanges, anomaly)
    if not indices:
        raise ValueError("nothing selected: pass --conversation ID, --exchanges 3,7-9 or --anomaly KIND")
    interactions, meta = read_exchanges(source, indices, idx)
    meta = {**meta, "extracted_from": {"cassette": str(Path(source).name), "exchanges": indices,
                                       **{k: v for k, v in what.items() if v}}}
    cut = Cassette(interactions, meta)
    _copy_blobs(Path(source), Path(out), cut)
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


COLUMNS = ("exchange", "conversation", "turn", "mode", "method", "path", "status", "prompt_ids", "completion_ids",
           "completion_logprobs", "finish_reason", "duration_ms", "recorded_at", "faults", "anomalies")


def export_rows(source):
    """One row per exchange, in order, read once: where it sits (conversation, turn), what it was (mode,
    route, status, latency) and its tokens (ids and logprobs as lists), with the audit's anomaly kinds."""
    linker = Linker(keep_tokens=True, on_close=lambda conv: None)
    for n, _, i in _exchanges(source):
        placed = linker.add(n, i)
        conv, k, t, kinds = placed if placed else (None, None, None, [])
        yield {"exchange": n, "conversation": conv.id if conv else None, "turn": k, "mode": t.mode if t else None,
               "method": i.method, "path": i.path, "status": i.status, "prompt_ids": t.prompt_ids if t else None,
               "completion_ids": t.completion_ids if t else None,
               "completion_logprobs": t.completion_logprobs if t else None,
               "finish_reason": t.finish_reason if t else None, "duration_ms": i.duration_ms,
               "recorded_at": i.recorded_at, "faults": list(i.faults or []), "anomalies": kinds}
        if t is not None:  # the row has them; the conversation need not keep them
            t.prompt_ids = t.completion_ids = t.completion_logprobs = None


def export_columns(source) -> dict[str, list]:
    cols: dict[str, list] = {name: [] for name in COLUMNS}
    for row in export_rows(source):
        for key, v in row.items():
            cols[key].append(v)
    return cols


def export_parquet(source, out, batch: int = 4096) -> int:
    """Write `export_rows` as a Parquet file (pyarrow), a batch at a time; returns the rows written."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError("Parquet export needs pyarrow: pip install 'tito-harness[analytics]'") from None
    ids, lps, strs = pa.list_(pa.int32()), pa.list_(pa.float32()), pa.list_(pa.string())
    schema = pa.schema([("exchange", pa.int64()), ("conversation", pa.int64()), ("turn", pa.int32()),
                        ("mode", pa.string()), ("method", pa.string()), ("path", pa.string()), ("status", pa.int32()),
                        ("prompt_ids", ids), ("completion_ids", ids), ("completion_logprobs", lps),
                        ("finish_reason", pa.string()), ("duration_ms", pa.float64()), ("recorded_at", pa.float64()),
                        ("faults", strs), ("anomalies", strs)])
    rows = 0
    with pq.ParquetWriter(out, schema, compression="zstd") as writer:
        pending: list[dict] = []
        for row in export_rows(source):
            pending.append(row)
            if len(pending) >= batch:
                writer.write_batch(pa.RecordBatch.from_pylist(pending, schema=schema))
                rows, pending = rows + len(pending), []
        if pending or not rows:
            writer.write_batch(pa.RecordBatch.from_pylist(pending, schema=schema))
            rows += len(pending)
    return rows
