"""Linking: each generation turn of a capture filed into the rollout it continues.

- by tokens: a tokens-in prompt (`token_ids`, `tokens`, `nvext.token_data`), or the engine prompt ids a
  messages-in answer reports, that starts with an earlier turn's prompt + completion ids continues
  that turn's conversation (the longest such head wins);
- by messages: a messages-in request whose messages extend an earlier request's messages continues
  that conversation (the most recent one);
- by session header where the client sends one and it survived scrubbing;
- a request identical to an earlier one that failed (an error status, a cut stream) is its retry.

A conversation's id is the index of its first exchange.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import orjson

from ..recording.format import Interaction
from .kinds import invalid_kinds
from .turns import Turn, read_turn

KEY = 16  # ids at the end of a head that key it in the index (with its length)
WINDOW = 200_000  # a conversation with no turn in this many exchanges is closed: its state is let go
INVALID = invalid_kinds()


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


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n


def contains(hay: np.ndarray, needle: np.ndarray) -> bool:
    """Whether `needle` occurs in `hay` as a run of whole ids."""
    raw, want, size = hay.tobytes(), needle.tobytes(), hay.itemsize
    at = raw.find(want)
    while at != -1 and at % size:
        at = raw.find(want, at + 1)
    return at != -1


def message_digests(messages: list) -> list[bytes]:
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
                k = common_prefix(prompt, head)
                if not length <= k < len(head):
                    continue
                tail = head[max(k + 1, len(head) - KEY):]  # the head's last ids, past where they part
                score = (len(tail) >= 4 and contains(prompt[k:], tail), k)
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
        read = read_turn(n, i, self.keep_tokens)
        if read is None:
            return None
        turn, prompt, completion, kind = read.turn, read.prompt, read.completion, read.turn.mode
        anomalies: list[tuple[str, str]] = []
        cid = None
        retry_of = self._failed.pop(read.body_key, None)
        if retry_of is not None and retry_of in self.conversations:
            cid, turn.link = retry_of, "retry"
            anomalies.append(("retried", "the same request as an earlier failed exchange of this conversation"))
        session = read.session
        if cid is None and session is not None and self._sessions.get(session) in self.conversations:
            cid, turn.link = self._sessions[session], "session"
        if cid is None and prompt is not None and len(prompt):
            cid = self._find_by_tokens(prompt)
            if cid is not None:
                turn.link = "tokens"
        digests = message_digests(read.messages) if read.messages else []
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
        if read.cache is not None:
            self.prompt_tokens += read.cache[0]
            self.cached_tokens += read.cache[1]
        anomalies.extend(read.findings)
        if session is not None:
            self._sessions[session] = cid
        if read.failed:
            self._failed[read.body_key] = cid
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


