"""The auxiliary exchanges of a rollout, linked to its conversation by content: what a client needs besides its
generation turns to replay the conversation (`extract` keeps them).

- `/tokenize` (a vLLM client computes its bridge with the server's own template): its answer's ids, up to the
  generation header they end with, are found in a later prompt of the conversation; a render without the new
  messages (the client's base for the difference) goes with the render that extends its messages;
- `/detokenize`: its ids are a conversation's last completion, with or without its stop id;
- a request without content (`GET /v1/models`, a route check): the next turn of a conversation that has none of
  it yet takes it (alike requests answer alike, so each conversation needs one).
"""

from __future__ import annotations

import hashlib

import numpy as np
import orjson

from ..recording.format import Interaction

PENDING = 512  # /tokenize calls waiting for the turn that uses them (older ones are let go)
WINDOW = 8  # ids of a /tokenize answer looked for in a prompt
HEADER = 5  # ids a bridge render ends with (end of turn, newline, assistant header) that every render shares


def _ids(value) -> np.ndarray | None:
    try:
        return np.asarray(value, dtype=np.int64) if isinstance(value, list) else None
    except (ValueError, TypeError, OverflowError):
        return None


def _digest(messages) -> bytes:
    return hashlib.blake2b(orjson.dumps(messages, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()


class AuxLinker:
    """Files /tokenize and /detokenize exchanges into conversations; `assigned`: exchange -> conversation."""

    def __init__(self):
        self.assigned: dict[int, int] = {}
        self.pending: list[tuple[int, bytes | None, bytes, list]] = []  # (exchange, window, messages digest, msgs)
        self.bare: list[tuple[int, str]] = []  # requests without content, waiting for a turn: (exchange, uri)
        self.has: dict[int, set] = {}  # conversation -> the requests without content it took
        self.took: dict[int, set] = {}  # conversation -> the renders (window, messages) it took
        self.read_back: dict[int, int] = {}  # conversation -> the turn whose completion a /detokenize read back

    def see(self, n: int, i: Interaction, linker) -> None:
        if i.method.upper() == "GET" and not i.request_body:
            self.bare.append((n, i.path))
            del self.bare[:-PENDING]
            return
        if i.method.upper() != "POST" or i.status >= 400:
            return
        if i.path == "/tokenize":
            req, ans = i.request_json(), i.response_json()
            tokens = _ids(ans.get("tokens")) if isinstance(ans, dict) else None
            messages = req.get("messages") if isinstance(req, dict) and isinstance(req.get("messages"), list) else []
            if tokens is None:
                return
            body = tokens[:-HEADER] if len(tokens) > HEADER + WINDOW else tokens
            window = body[-WINDOW:].tobytes() if len(body) >= WINDOW else None
            self.pending.append((n, window, _digest(messages), messages))
            del self.pending[:-PENDING]
        elif i.path == "/detokenize":
            req = i.request_json()
            tokens = _ids(req.get("tokens")) if isinstance(req, dict) else None
            if tokens is not None:
                cid = self._answered(tokens, linker)
                if cid is not None:
                    self.assigned[n] = cid

    def _answered(self, tokens: np.ndarray, linker) -> int | None:
        for conv in reversed(list(linker.conversations.values())[-64:]):
            last = conv.turns[-1] if conv.turns else None
            head = linker.head_of(conv.id) if last is not None else None
            if last is None or last.completion_len is None or head is None or self.read_back.get(conv.id) == last.exchange:
                continue
            done = head[len(head) - last.completion_len:]
            if np.array_equal(done, tokens) or np.array_equal(done[:-1], tokens) \
                    or (len(tokens) and np.array_equal(done[:len(tokens)], tokens)):
                self.read_back[conv.id] = last.exchange  # alike answers (a stop id alone) each read back once
                return conv.id
        return None

    def place(self, prompt: np.ndarray | None, cid: int, since: int = -1) -> None:
        """A tokens-in turn of conversation `cid` arrived: the /tokenize calls whose ids it holds are its own, and
        so are the renders their messages extend, sent since its turn before (exchange `since`)."""
        has = self.has.setdefault(cid, set())
        for k, (n, uri) in enumerate(self.bare):
            if uri not in has:
                has.add(uri)
                self.assigned[n] = cid
                del self.bare[k]
                break
        if prompt is None or not self.pending:
            return
        raw = prompt.tobytes()
        took = self.took.setdefault(cid, set())  # a turn sent again (a route probe's) takes no second alike call
        mine, alike = [], set(took)
        for p in self.pending:  # of calls alike (the same render, sent by each rollout of a group) the earliest
            if p[1] is not None and (p[1], p[2]) not in alike and _holds(raw, p[1]):
                alike.add((p[1], p[2]))
                took.add((p[1], p[2]))
                mine.append(p)
        for p in mine:
            self.assigned[p[0]] = cid
            base = next((q for q in self.pending if since < q[0] < p[0] and q not in mine and q[3]  # earliest
                         and q[3] == p[3][:len(q[3])] and q[0] not in self.assigned), None)
            if base is not None and (base[1], base[2]) not in took:  # one base serves the turn's renders
                took.add((base[1], base[2]))
                self.assigned[base[0]] = cid
        self.pending = [p for p in self.pending if p[0] not in self.assigned]


def _holds(raw: bytes, window: bytes) -> bool:
    at = raw.find(window)
    while at != -1 and at % 8:
        at = raw.find(window, at + 1)
    return at != -1
