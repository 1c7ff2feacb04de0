"""The fake engine's capacity model, for `/metrics`: `max_num_seqs` running at once (excess requests wait),
KV blocks from each running request's context in a cache of fixed size, and a prefix cache whose hits count.

Bookkeeping is O(1) per request (counters, a deque of prompts); what costs more (the prefix cache's block
hashes, the KV blocks in use) is computed when `/metrics` is scraped, never on the data plane.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict, deque

PENDING_PROMPTS = 4096  # prompts kept for the prefix cache's count at the next scrape


class PrefixBlocks:
    """Which whole blocks of a prompt were seen before (hits and queries in tokens, as vLLM counts them)."""

    def __init__(self, block: int, capacity_blocks: int):
        self.block = block
        self.capacity = max(1, capacity_blocks)
        self._blocks: OrderedDict[bytes, None] = OrderedDict()
        self.pending: deque = deque(maxlen=PENDING_PROMPTS)
        self.queries = 0
        self.hits = 0

    def note(self, prompt_ids: list[int]) -> None:
        self.pending.append(prompt_ids)

    def settle(self) -> None:
        """Count the prompts noted since the last scrape, in arrival order."""
        while self.pending:
            ids = self.pending.popleft()
            h = hashlib.blake2b(digest_size=16)
            hit, missed = 0, False
            for end in range(self.block, len(ids) + 1, self.block):
                h.update(repr(ids[end - self.block:end]).encode())
                key = h.copy().digest()
                if not missed and key in self._blocks:
                    hit = end
                else:
                    missed = True
                self._blocks[key] = None
                self._blocks.move_to_end(key)
            while len(self._blocks) > self.capacity:
                self._blocks.popitem(last=False)
            self.queries += len(ids)
            self.hits += hit

    def clear(self) -> None:
        self.settle()
        self._blocks.clear()


class Capacity:
    def __init__(self, max_num_seqs: int = 256, block_size: int = 128, num_blocks: int = 8192):
        self.max_num_seqs = max_num_seqs
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.prefix = PrefixBlocks(block_size, num_blocks)
        self.running = 0
        self.waiting = 0
        self.admitted = 0  # seats taken by flights (Control.run), a subset of `running`
        self._free: asyncio.Condition | None = None
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.success: dict[str, int] = {}
        self.prompt_seen: dict[int, int] = {}  # prompt length -> requests (put in buckets at scrape)
        self.generation_seen: dict[int, int] = {}
        self.prompt_sum = self.generation_sum = self.finished = 0
        self.contexts: dict[int, object] = {}  # flight id -> flight (its context in KV blocks, at scrape)
        self.sleep_level = 0
        self.weight_ops: dict[str, int] = {}  # vLLM weight-transfer operations run, by operation

    async def admit(self) -> None:
        """A seat among `max_num_seqs`; waits (counted in `waiting`) while all are taken."""
        if self.admitted < self.max_num_seqs:
            self.admitted += 1
            return
        if self._free is None:
            self._free = asyncio.Condition()
        self.waiting += 1
        try:
            async with self._free:
                await self._free.wait_for(lambda: self.admitted < self.max_num_seqs)
                self.admitted += 1
        finally:
            self.waiting -= 1

    def release(self) -> None:
        self.admitted -= 1
        if self._free is not None and self.waiting:
            asyncio.ensure_future(self._notify())

    async def _notify(self) -> None:
        async with self._free:
            self._free.notify(1)

    def start(self, prompt_len: int, prompt_ids: list[int], flight=None) -> None:
        self.running += 1
        self.prefix.note(prompt_ids)
        if flight is not None:
            self.contexts[id(flight)] = flight

    def finish(self, prompt_len: int, generated: int, reason: str, flight=None) -> None:
        self.running -= 1
        if flight is not None:
            self.contexts.pop(id(flight), None)
        self.prompt_tokens += prompt_len
        self.generation_tokens += generated
        self.success[reason] = self.success.get(reason, 0) + 1
        self.finished += 1
        self.prompt_sum += prompt_len
        self.generation_sum += generated
        self.prompt_seen[prompt_len] = self.prompt_seen.get(prompt_len, 0) + 1
        self.generation_seen[generated] = self.generation_seen.get(generated, 0) + 1

    def kv_blocks_used(self) -> int:
        b = self.block_size
        return sum(-(-(f.prompt_len + f.tokens) // b) for f in list(self.contexts.values()))

    def snapshot(self) -> dict:
        """What /metrics reports now (computed at scrape)."""
        self.prefix.settle()
        reasons = dict(self.success)
        return {
            "running": self.running, "waiting": self.waiting,
            "waiting_by_reason": {"capacity": self.waiting, "deferred": 0},
            "sleep_state": {"awake": int(self.sleep_level == 0), "weights_offloaded": int(self.sleep_level == 1),
                            "discard_all": int(self.sleep_level == 2)},
            "kv_usage": min(1.0, self.kv_blocks_used() / self.num_blocks),
            "prefix_queries": self.prefix.queries, "prefix_hits": self.prefix.hits,
            "prompt_tokens": self.prompt_tokens,
            "prompt_by_source": {"local_compute": self.prompt_tokens - self.prefix.hits,
                                 "local_cache_hit": self.prefix.hits, "external_kv_transfer": 0},
            "generation_tokens": self.generation_tokens, "success": reasons,
            "prompt_len": (dict(self.prompt_seen), self.prompt_sum, self.finished),
            "generation_len": (dict(self.generation_seen), self.generation_sum, self.finished),
            "cache_info": 1,
            "frontend_requests": {("chat_completions", "unary", "success"): self.finished},
            "answered": self.finished,
            "weight_ops": {op: ({0.0: n}, 0.0, n) for op, n in self.weight_ops.items()},
            "weight_ops_in_flight": {op: 0 for op in self.weight_ops},
            "http_requests": {("/v1/chat/completions", "POST", "2xx"): self.finished},
        }
