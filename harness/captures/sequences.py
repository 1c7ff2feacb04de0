"""Id sequences as linking reads them: where two part, whether one holds another, message-prefix digests, and
sequences keyed so that the ones a prompt starts with are found from the prompt's own positions."""

from __future__ import annotations

import hashlib

import numpy as np
import orjson

KEY = 16  # ids at the end of a head that key it in the index (with its length)


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


class Keyed:
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
