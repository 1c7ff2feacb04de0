"""The audit: a capture's TITO health, conversation by conversation.

`audit` reads the capture once, exchange by exchange, files each turn into its conversation (linking) and
names what went wrong turn by turn (the kinds of `kinds.KINDS`): `silent_mito` (a messages-in turn after a
turn that could have been stitched: it asked for the engine's ids and ended with the stop token),
`continuity_break` (a tokens-in prompt that shares a long prefix with an earlier turn of the conversation but
does not start with its prompt + completion: retokenization drift), `logprob_mismatch`, `missing_ids`,
`routed_experts_undecodable`, `error`, `retried`. On the way it writes the capture's index.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..recording.format import Cassette
from .index import CaptureIndex, capture_meta, exchanges, stat
from .linking import WINDOW, Anomaly, Conversation, Linker
from .policy import PolicyTimeline


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
    steps: list = field(default_factory=list)  # RL steps (pause to resume): policy.PolicyTimeline.steps
    index: "CaptureIndex | None" = None
    where: list[int] = field(default_factory=list)  # each exchange's conversation (-1: not a turn)
    by_kind: dict[str, list[int]] = field(default_factory=dict)  # anomaly kind -> conversations showing it

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
                "anomalies": [a.to_dict() for a in self.anomalies], "bug": self.meta.get("bug"),
                **({"steps": self.steps} if self.steps else {})}



def audit(source, decode=None, keep: bool = True, on_conversation=None, window: int = WINDOW) -> Audit:
    """Audit a capture: a Cassette, or a path read one exchange at a time (flat memory; the index for
    `extract` is written beside it on the way). `keep` keeps the conversations in `Audit.conversations`
    (by id); `on_conversation` is called with each one as it closes."""
    meta = capture_meta(source)
    report = Audit(meta, conversations=[] if keep else None)

    def closed(conv: Conversation) -> None:
        report.take(conv)
        if on_conversation is not None:
            on_conversation(conv)

    linker = Linker(decode, window=window, on_close=closed)
    spans, where = [], []
    policy = PolicyTimeline()
    for n, span, inter in exchanges(source):
        placed = linker.add(n, inter)
        where.append(placed[0].id if placed else -1)
        policy.add(n, inter, where[-1])
        if span is not None:
            spans.append(span)
        report.exchanges = n + 1
    linker.finish()
    for n, cid in linker.aux.assigned.items():  # /tokenize, /detokenize: filed once their turn came
        where[n] = cid
    report._anomalies.extend(Anomaly(*row) for row in policy.anomalies({}))
    report.steps = policy.steps()
    report.prompt_tokens, report.cached_tokens = linker.prompt_tokens, linker.cached_tokens
    if report.conversations is not None:
        report.conversations.sort(key=lambda c: c.id)
    kinds: dict[str, set] = {}
    for a in report._anomalies:
        kinds.setdefault(a.kind, set()).add(a.conversation)
    report.where, report.by_kind = where, {k: sorted(v) for k, v in kinds.items()}
    if not isinstance(source, Cassette) and len(spans) == report.exchanges:
        report.index = CaptureIndex(*stat(source), [s.start for s in spans], [s.end for s in spans], where,
                                    report.by_kind)
        report.index.save(source)
    return report


def capture_index(path) -> CaptureIndex | None:
    """The capture's index: the one beside it while it is current, else built by one audit pass (None
    for a file whose layout needs a whole load)."""
    return CaptureIndex.load(path) or audit(path, keep=False).index

def detail_decoder():
    """ids -> text for anomaly details, through the built-in tokenizer's cached token table, read the first time a
    detail needs it (no tokenizer is loaded; ids only when the table cannot be had)."""
    tok: list = []

    def decode(ids):
        if not tok:
            try:
                from ..tokenizer import token_table

                tok.append(token_table())
            except Exception:  # no tokenizer: ids only
                tok.append(None)
        return tok[0].decode(ids) if tok[0] is not None else None

    return decode
