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

from ..recording.format import Interaction
from .aux import AuxLinker
from .sequences import KEY, Keyed, common_prefix, contains, message_digests  # noqa: F401 (view reads common_prefix here)
from .kinds import invalid_kinds
from .turns import Turn, answer_signature, read_turn

ANSWER_KEY = 4  # first ids of a completion that key it, to find it inside a prompt that continues no head
WINDOW = 200_000  # a conversation with no turn in this many exchanges is closed: its state is let go
INVALID = invalid_kinds()


@dataclass
class Anomaly:
    conversation: int
    turn: int  # 1-based within the conversation
    exchange: int
    kind: str
    detail: str
    group: int | None = None  # the conversation's group (rollouts sharing a first prompt)
    cause: str | None = None  # why, where it can be told (bridge_mismatch, continuity_break: bridge.CAUSES)

    def to_dict(self) -> dict:
        return {"conversation": self.conversation, "group": self.group, "turn": self.turn, "exchange": self.exchange,
                "kind": self.kind, "detail": self.detail, "cause": self.cause}


@dataclass
class Conversation:
    id: int
    turns: list[Turn] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    group: int | None = None  # the first conversation of those sharing its first prompt (a GRPO group)
    # linking state, let go when the conversation closes (its head's ids are the Linker's `_head_ids`)
    head_key: tuple | None = field(default=None, repr=False)
    first_key: tuple | None = field(default=None, repr=False)  # its first prompt's key, once it has one
    messages: bytes | None = field(default=None, repr=False)  # digest of the last turn's messages (messages-in)
    last: int = field(default=0, repr=False)  # the exchange of its last turn
    probe: tuple | None = field(default=None, repr=False)  # its last turn: a 404 on a tokens-in route (path, ids)
    answer: tuple | None = field(default=None, repr=False)  # its last answer's signature (turns.answer_signature)
    prefixes: list = field(default_factory=list, repr=False)  # its message prefixes that hold its own answers
    answer_key: bytes | None = field(default=None, repr=False)  # its last completion's first ids
    taken: bool = field(default=False, repr=False)  # a failed turn continued its head (others alike go first)
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
            if t.link in ("history_edited", "resent"):
                why = "history edited" if t.link == "history_edited" else "the same messages sent again"
                out[why] = out.get(why, 0) + 1
            elif t.mode == "mito":
                before = [a.kind for a in self.anomalies if a.turn == k - 1 and a.kind in INVALID]
                why = next((a.kind for a in self.anomalies if a.turn == k and a.kind == "silent_mito"),
                           f"after {before[0]}" if before else
                           "after a turn cut by max_tokens" if self.turns[k - 2].finish_reason == "length" else
                           "the client did not ask for engine ids")
                out[why] = out.get(why, 0) + 1
        return out

    def to_dict(self) -> dict:
        return {"id": self.id, "group": self.group, "exchanges": self.exchanges, "turns": [t.to_dict() for t in self.turns],
                "verdict": self.verdict(), "anomalies": [a.to_dict() for a in self.anomalies]}


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
        self.decode = decode  # ids -> text, for break details (optional); a bridge.Deployment also checks bridges
        self.deployment = decode if hasattr(decode, "check_bridge") else None
        self._heads, self._firsts = Keyed(), Keyed()
        self._by_messages: dict[bytes, list[int]] = {}  # digest of a last turn's messages -> conversations
        self._sessions: dict[str, int] = {}
        self._failed: dict[tuple[str, bytes], int] = {}  # a failed request's (path, body digest) -> conversation
        self._head_ids: dict[int, np.ndarray] = {}
        self._by_prefix: dict[bytes, list[int]] = {}  # digest of a message prefix holding own answers -> convs
        self._answers: dict[bytes, list[int]] = {}  # a last completion's first ids -> conversations
        self._groups: dict[bytes, int] = {}  # digest of a first prompt -> its group
        self.aux = AuxLinker()  # /tokenize, /detokenize: `aux.assigned` exchange -> conversation
        self.prompt_tokens = self.cached_tokens = 0  # prefix-cache use, where answers report it

    def head_of(self, cid: int) -> np.ndarray | None:
        """An open conversation's last prompt + completion ids."""
        return self._head_ids.get(cid)

    def _find_by_tokens(self, prompt: np.ndarray, path: str = "") -> int | None:
        """The conversation whose head the prompt starts with (the longest). Rollouts of one group can share a
        head (the same prompt, the same short answer): the one whose route probe this prompt repeats on another route goes first,
        then one whose head no failed turn continued yet; among those, the one answered first (a rollout
        sends its next turn once its answer is back)."""
        ids = prompt.tobytes()
        for length, cids in self._heads.candidates(prompt):
            alike = [cid for cid in reversed(cids) if (h := self._head_ids.get(cid)) is not None and len(h) == length
                     and np.array_equal(prompt[:length], h)]
            if alike:
                convs = [self.conversations[c] for c in alike if c in self.conversations]
                probed = [c for c in convs if c.probe is not None and c.probe[1] == ids and c.probe[0] != path]
                free = [c for c in convs if not c.taken]
                return min(probed or free or convs, key=lambda c: c.last).id if convs else alike[0]
        return None

    def _find_by_messages(self, messages: list, digests: list[bytes]) -> int | None:
        """The conversation a messages-in request continues through its own answers: its last request's messages
        followed by its answer, or a prefix that already holds its answers. A prompt the rollouts of a group
        share (system, user) ties a request to no one of them."""
        for k in range(len(digests) - 1, 0, -1):
            found = self._by_messages.get(digests[k - 1])
            if not found:
                continue
            if any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages[:k]):
                return found[-1]
            sent = answer_signature(messages[k]) if isinstance(messages[k], dict) else None
            own = [c for c in found if c in self.conversations and self.conversations[c].answer == sent]
            if sent is not None and own:
                return own[-1]
        return None

    def _find_edited(self, digests: list[bytes]) -> tuple[int, int] | None:
        """(conversation, messages kept) for a messages-in request that keeps a conversation's messages up to and
        past one of its own answers, then differs: its history was edited."""
        for k in range(len(digests), 0, -1):
            found = self._by_prefix.get(digests[k - 1])
            if found:
                return found[-1], k
        return None

    def _find_by_answer(self, prompt: np.ndarray) -> tuple[int, int] | None:
        """(conversation, position) of an open conversation whose last completion the prompt holds somewhere,
        although it starts with no head: a rollout re-tokenized early (a re-rendered system prompt)."""
        if not self._answers or len(prompt) < ANSWER_KEY:
            return None
        for j in range(len(prompt) - ANSWER_KEY, -1, -1):
            cids = self._answers.get(prompt[j:j + ANSWER_KEY].tobytes())
            for cid in reversed(cids or ()):
                head = self._head_ids.get(cid)
                conv = self.conversations.get(cid)
                if head is None or conv is None or conv.turns[-1].completion_len is None:
                    continue
                done = head[len(head) - conv.turns[-1].completion_len:]
                body = done[:-1] if len(done) > ANSWER_KEY else done  # the stop id may be re-rendered apart
                if np.array_equal(prompt[j:j + len(body)], body):
                    return cid, j
        return None

    def _closest(self, prompt: np.ndarray) -> tuple[int, int] | None:
        """The rollout this prompt continues with its earlier turns re-tokenized (cid, shared length): a
        conversation whose whole first prompt this longer prompt starts with, whose head it leaves
        somewhere after that, and which it shares ids with past its first prompt: the head's last ids
        still in the prompt (the turns after the drifted one), or at least the first completion id, or it is the
        only conversation that began with that prompt (its answer re-rendered from its first id on). A
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
                if (score[0] or k > length or len(cids) == 1) and (best is None or score > best[0]):
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
        self._unanswer(conv)
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
            self.aux.see(n, i, self)
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
            cid = self._find_by_tokens(prompt, i.path)
            if cid is not None:
                turn.link = "tokens"
        digests = message_digests(read.messages) if read.messages else []
        if cid is None and len(digests) > 1:
            cid = self._find_by_messages(read.messages, digests)
            if cid is not None:
                turn.link = "messages"
        if cid is None and kind == "tito" and prompt is not None and len(prompt):
            close = self._closest(prompt)
            if close is not None:
                cid, k = close
                turn.link = "tokens"
                anomalies.append(("continuity_break", self._break_detail(prompt, self._head_ids[cid], k),
                                  self._cause(prompt, self._head_ids[cid], k, cid)))
        if cid is None and kind == "tito" and prompt is not None and len(prompt):
            held = self._find_by_answer(prompt)
            if held is not None:
                cid, at = held
                turn.link = "content"
                head = self._head_ids[cid]
                k = common_prefix(prompt, head)
                anomalies.append(("orphan_tokens_in", f"the prompt continues no recorded turn; the closest head, "
                                  f"conversation {cid}'s ({len(head)} ids), holds its last completion at position "
                                  f"{at}: " + self._break_detail(prompt, head, k), self._cause(prompt, head, k, cid)))
        if cid is None and digests:
            edited = self._find_edited(digests)
            if edited is not None:  # all its messages kept: the same request sent again (after an abort, say)
                cid, turn.link = edited[0], "resent" if edited[1] == len(digests) else "history_edited"
        if cid is None:
            cid = n
            first = digests[-1] if digests else hashlib.blake2b(prompt.tobytes(), digest_size=16).digest() \
                if prompt is not None and len(prompt) else None
            self.conversations[cid] = Conversation(cid, group=self._groups.setdefault(first, cid) if first else cid)
        conv = self.conversations[cid]
        self.conversations.move_to_end(cid)
        head = self._head_ids.get(cid)
        if turn.link == "session" and kind == "tito" and head is not None and prompt is not None \
                and not np.array_equal(prompt[:len(head)], head):
            k = common_prefix(prompt, head)
            anomalies.append(("continuity_break", self._break_detail(prompt, head, k), self._cause(prompt, head, k, cid)))
        if self.deployment is not None and kind == "tito" and turn.link in ("tokens", "session", "route") \
                and head is not None and prompt is not None and len(prompt) > len(head) \
                and np.array_equal(prompt[:len(head)], head) and i.status < 400:
            last = next((t for t in reversed(conv.turns) if t.status < 400), None)
            check = self.deployment.check_bridge(head.tolist(), prompt[len(head):].tolist(),
                                                 last is not None and last.finish_reason == "length")
            if check is not None:
                anomalies.append(("bridge_mismatch", check.detail(len(head)), check.cause))
        if turn.link == "session" and kind == "mito" and conv.messages is not None and digests \
                and conv.messages not in digests:
            turn.link = "history_edited"
        prev = next((t for t in reversed(conv.turns) if t.status < 400), None) if turn.link != "retry" else None
        prev_invalid = prev is not None and any(a.turn == len(conv.turns) and a.kind in INVALID for a in conv.anomalies)
        if kind == "mito" and turn.link not in ("history_edited", "resent") and prev is not None and prev.asked_ids and not prev_invalid \
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
        for kind_, detail, *cause in anomalies:
            why = cause[0] if cause else None
            detail = f"{detail}; cause: {why}" if why and "cause:" not in detail else detail
            conv.anomalies.append(Anomaly(cid, len(conv.turns), n, kind_, detail, conv.group, why))
        if turn.link == "tokens" and completion is None:
            conv.taken = True
        if read.answer is not None:
            conv.answer = read.answer
        self._remember(conv, prompt, completion, digests, read.messages)
        self.aux.place(prompt if kind == "tito" else None, cid, conv.turns[-2].exchange if len(conv.turns) > 1 else -1)
        self._expire(n)
        return conv, len(conv.turns), turn, [k for k, *_ in anomalies]

    def _remember(self, conv: Conversation, prompt, completion, digests: list[bytes], messages) -> None:
        self._unmessage(conv)
        conv.messages = digests[-1] if digests else None
        if conv.messages is not None:
            self._by_messages.setdefault(conv.messages, []).append(conv.id)
        if digests:
            answered = next((k for k, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "assistant"),
                            None)
            conv.prefixes = digests[answered:] if answered is not None else []
            for d in conv.prefixes:
                self._by_prefix.setdefault(d, []).append(conv.id)
        if prompt is not None and len(prompt) and conv.first_key is None:
            conv.first_key = self._firsts.add(prompt, conv.id)
        if prompt is not None and completion is not None:
            head = np.concatenate([prompt, completion])
            if len(head):
                if conv.head_key is not None:
                    self._heads.remove(conv.head_key, conv.id)
                    self._unanswer(conv)
                conv.head_key = self._heads.add(head, conv.id)
                self._head_ids[conv.id] = head
                conv.taken = False
                if len(completion) >= ANSWER_KEY:
                    conv.answer_key = completion[:ANSWER_KEY].tobytes()
                    self._answers.setdefault(conv.answer_key, []).append(conv.id)

    def _unanswer(self, conv: Conversation) -> None:
        cids = self._answers.get(conv.answer_key) if conv.answer_key is not None else None
        if cids and conv.id in cids:
            cids.remove(conv.id)
            if not cids:
                del self._answers[conv.answer_key]
        conv.answer_key = None

    def _unmessage(self, conv: Conversation) -> None:
        for table, keys in ((self._by_messages, [conv.messages] if conv.messages is not None else []),
                            (self._by_prefix, conv.prefixes)):
            for key in keys:
                cids = table.get(key)
                if cids and conv.id in cids:
                    cids.remove(conv.id)
                    if not cids:
                        del table[key]
        conv.prefixes = []

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
        if len(self._groups) > 4 * self.window:
            open_groups = {c.group for c in self.conversations.values()}
            self._groups = {k: v for k, v in self._groups.items() if v in open_groups}

    def _cause(self, prompt: np.ndarray, head: np.ndarray, k: int, cid: int) -> str | None:
        """Why the prompt leaves the head at k, where the deployment is known (bridge.CAUSES)."""
        if self.deployment is None:
            return None
        conv = self.conversations.get(cid)
        last = next((t for t in reversed(conv.turns) if t.status < 400), None) if conv else None
        return self.deployment.break_cause(prompt.tolist(), head.tolist(), k,
                                           last is not None and last.finish_reason == "length")

    def _break_detail(self, prompt: np.ndarray, head: np.ndarray, k: int) -> str:
        def show(ids):
            ids = [int(x) for x in ids]
            text = self.decode(ids) if self.decode else None
            return f"{ids}" + (f" {text!r}" if text is not None else "")

        return (f"the prompt shares {k} ids with the previous turn's prompt + completion ({len(head)} ids), then "
                f"differs at position {k}: previous {show(head[k:k + 4])}, now {show(prompt[k:k + 4])}")


