"""The deterministic fake engine: prompt ids + sampling params -> completion ids and logprobs.

Same request (prompt ids, sampling args, seed) -> same answer; another seed -> another answer.
Completions are seeded faker prose tokenized with the real tokenizer and end with the stop
token unless `max_tokens` (or a `stop` string) cuts them first.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import math
import random
from collections import OrderedDict
from dataclasses import dataclass, field

import jinja2
import jinja2.meta
import numpy as np
import orjson
from faker import Faker


MAX_ALTERNATIVES = 64  # top logprobs per position, whatever a caller asks
RANK_RATE = 0.2  # at temperature 1, the share of positions whose sampled token is not the likeliest
# at temperature > 0, the share of answers that are only the stop token, as the real servers here answer: vLLM 0.32
# (tiny-qwen, 80 chat requests at temperature 1.0, max_tokens 8, seeds 0..79): 37 of 80
NATURAL_EMPTY_RATE = 37 / 80


@dataclass(frozen=True)
class MoEShape:
    """Mixture-of-experts routing shape: layers, experts chosen per token, experts in all."""

    layers: int
    top_k: int
    experts: int

    @classmethod
    def parse(cls, text: str) -> "MoEShape":
        try:
            layers, top_k, experts = (int(x) for x in text.split(","))
        except ValueError:
            raise ValueError(f"--moe wants LAYERS,TOP_K,EXPERTS (e.g. 48,8,128), got {text!r}") from None
        if min(layers, top_k, experts) < 1 or top_k > experts:
            raise ValueError(f"bad MoE shape {text!r}: all positive and top_k <= experts")
        return cls(layers, top_k, experts)

    @property
    def dtype(self) -> str:
        if self.experts <= 256:
            return "uint8"
        if self.experts <= 65536:
            return "uint16"
        return "int32"


@dataclass
class EngineConfig:
    model: str = "tiny-qwen"
    max_model_len: int = 4096
    moe: MoEShape | None = None
    ttft: float = 0.0  # seconds before the first token
    per_token: float = 0.0  # seconds per generated token
    seed: int = 0  # engine-wide salt; a request's own seed is mixed in
    think: bool = False  # open each completion with a <think> block (a Qwen3-style thinking model)
    empty_rate: float | None = None
    """Share of answers that are just the stop token; None: the real servers' rate (NATURAL_EMPTY_RATE) for a
    seeded request at temperature > 0, none when greedy or when the engine never samples the stop token
    (ignore_eos). An unseeded request is answered with the one sample the fake keeps for its prompt, never empty
    unasked, so a replayed recording (whose real answer had words) is answered alike."""


@dataclass
class SamplingParams:
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    logprobs: bool = False
    top_logprobs: int = 0
    ignore_eos: bool = False
    empty: bool = False  # answer only the stop token (the `empty_completion` fault)

    def key(self) -> bytes:
        return orjson.dumps(
            [self.max_tokens, self.temperature, self.top_p, self.seed, self.stop,
             self.stop_token_ids, self.top_logprobs, self.ignore_eos, self.empty]
        )


@dataclass
class Generation:
    token_ids: list[int]
    text: str
    finish_reason: str  # "stop" | "length"
    stop_reason: str | int | None
    logprobs: list[float]
    top_logprobs: list[list[tuple[int, float]]]
    """Per position, the engine's logprobs dict as vLLM builds it: the sampled (id, logprob) first, then the k
    likeliest others (k + 1 entries when the sampled token is not among the k likeliest); `top_k` is k."""
    routed_experts: np.ndarray | None = None  # (prompt + completion tokens, layers, top_k)
    derived: dict = field(default_factory=dict)  # per-answer pieces built once (logprob entries, text deltas)
    ranks: list[int] = field(default_factory=list)  # per position: the sampled token's rank (1: the likeliest)
    versions: tuple = ()  # (weight version, start, end) spans when a pause and new weights split the answer
    top_k: int = 0  # the top logprobs asked for (a route cuts `top_logprobs` at it, or lists the dict whole)


def safe_apply_chat_template(tokenizer, conversation, **kwargs):
    """The template applied as vLLM's own wrapper of that name applies it (a clashing `conversation` in the
    request's kwargs fails here, in its words)."""
    return tokenizer.apply_chat_template(conversation, tokenize=True, **kwargs)


# what a vLLM request's chat_template_kwargs never override (recorded: add_generation_prompt there changes nothing)
VLLM_KWARGS_KEPT = ("chat_template", "tokenize", "add_generation_prompt", "continue_final_message")


class WorkLimitExceeded(Exception):
    """More completion tokens asked for, over all choices, than the fake generates for one request."""

    def __init__(self, n: int, limit: int):
        super().__init__(f"n={n} asks for more than {limit} completion tokens, the fake engine's work limit per "
                         f"request (a real server generates them all); ask for fewer choices or fewer tokens")
        self.n, self.limit = n, limit


class ContextLengthExceeded(Exception):
    def __init__(self, prompt_len: int, max_tokens: int | None, max_model_len: int):
        self.prompt_len, self.max_tokens, self.max_model_len = prompt_len, max_tokens, max_model_len
        super().__init__(f"{prompt_len} prompt tokens, max_model_len {max_model_len}")


class FakeEngine:
    """Deterministic text generator over a real tokenizer, with an LRU of recent answers."""

    def __init__(self, tokenizer, config: EngineConfig | None = None, cache_size: int = 4096):
        self.tokenizer = tokenizer
        self.config = config or EngineConfig()
        self.vocab_size = len(tokenizer)
        self.eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self._faker = Faker("en_US")
        self._cache: OrderedDict[bytes, Generation] = OrderedDict()
        self._render_cache: OrderedDict[bytes, list[int]] = OrderedDict()
        self._names_cache: dict[str | None, frozenset[str]] = {}
        self._cache_size = cache_size
        self._token_text: dict[int, str] = {}

    # -- prompts -----------------------------------------------------------------------------
    def render(self, messages: list[dict], tools: list[dict] | None = None,
               add_generation_prompt: bool = True, template_kwargs: dict | None = None,
               chat_template: str | None = None, kwargs_override: bool = True,
               continue_final_message: bool = False, bound: int | None = None) -> list[int]:
        """Prompt ids for chat messages, as the engine's chat template renders them. `template_kwargs` (a request's
        chat_template_kwargs) as vLLM reads them (`kwargs_override`): the names apply_chat_template or the template
        take override the request's own (never VLLM_KWARGS_KEPT; others are dropped), so a clash fails as it fails
        in vLLM (recorded); as Dynamo reads them: they only add names to the template's context (recorded).
        `bound`: a caller that only needs to know the prompt is longer than `bound` tokens gets, for a prompt far
        past it, the ids of a prefix already longer (never the whole prompt's: tokenizing megabytes takes seconds)."""
        key = orjson.dumps([messages, tools, add_generation_prompt, template_kwargs, chat_template, kwargs_override,
                            continue_final_message], option=orjson.OPT_SORT_KEYS)
        hit = self._render_cache.get(key)
        if hit is not None:
            return hit
        context = self._template_context(tools, add_generation_prompt, template_kwargs, chat_template,
                                         kwargs_override, continue_final_message)
        if bound is not None and len(key) > 16 * bound:
            prefix = self._longer_prefix(messages, chat_template, context, bound)
            if prefix is not None:
                return prefix
        out = safe_apply_chat_template(self.tokenizer, messages, chat_template=chat_template, **context)
        if hasattr(out, "keys"):
            out = out["input_ids"]
        ids = list(out)
        self._remember(self._render_cache, key, ids)
        return ids

    def _longer_prefix(self, messages, chat_template, context: dict, bound: int) -> list[int] | None:
        """The ids of a prefix of the rendered prompt already past `bound` tokens, or None when the whole prompt
        is not. Pre-tokenization splits text into words tokenized alone, so only a prefix's last word can
        tokenize otherwise than in the whole; the margin covers it."""
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, chat_template=chat_template, **context)
        size = 8 * bound
        while size < len(text):
            ids = self.encode(text[:size])
            if len(ids) > bound + 64:
                return ids
            size *= 4
        return None

    def _template_context(self, tools, add_generation_prompt: bool, template_kwargs: dict | None,
                          chat_template: str | None, kwargs_override: bool, continue_final_message: bool) -> dict:
        context: dict = {"tools": tools or None, "add_generation_prompt": add_generation_prompt, "return_dict": False}
        if continue_final_message:
            context["continue_final_message"] = True
        names = self._template_names(chat_template)
        for k, v in (template_kwargs or {}).items():
            if kwargs_override and k in names and k not in VLLM_KWARGS_KEPT:
                context[k] = v
            elif not kwargs_override and k not in names:
                context[k] = v
        return context

    def _template_names(self, chat_template: str | None) -> frozenset[str]:
        """apply_chat_template's parameters and the variables the template reads (what vLLM lets through)."""
        hit = self._names_cache.get(chat_template)
        if hit is None:
            params = {p.name for p in inspect.signature(self.tokenizer.apply_chat_template).parameters.values()
                      if p.kind is not inspect.Parameter.VAR_KEYWORD}
            source = chat_template or self.tokenizer.chat_template or ""
            variables = jinja2.meta.find_undeclared_variables(jinja2.Environment().parse(source))
            hit = self._names_cache[chat_template] = frozenset(params | variables)
        return hit

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def token_text(self, token_id: int) -> str:
        """A token's text as vLLM reports it in logprobs (special tokens spelled out)."""
        text = self._token_text.get(token_id)
        if text is None:
            text = self.tokenizer.decode([token_id])
            self._token_text[token_id] = text
        return text

    # -- generation --------------------------------------------------------------------------
    def check_length(self, prompt_len: int, max_tokens: int | None) -> None:
        """A prompt that leaves no room for one token is refused; max_tokens is clamped (vLLM 0.32)."""
        limit = self.config.max_model_len
        if prompt_len >= limit:
            raise ContextLengthExceeded(prompt_len, max_tokens, limit)

    def generate(self, prompt_ids: list[int], params: SamplingParams, check_context: bool = True,
                 policy: str = "") -> Generation:
        """`policy`: the weights answering (a control plane's update or a LoRA adapter; "" the base weights)."""
        if check_context:
            self.check_length(len(prompt_ids), params.max_tokens)
        digest = hashlib.blake2b(digest_size=16)
        digest.update(np.asarray(prompt_ids, dtype=np.int64).tobytes())
        digest.update(orjson.dumps([params.temperature, params.top_p, params.seed, self.config.seed]))
        if policy:
            digest.update(policy.encode())
        sampling_seed = int.from_bytes(digest.digest()[:8], "little")  # what sampling depends on
        digest.update(params.key())  # ... and what only cuts or annotates the answer
        key = digest.digest()
        hit = self._cache.get(key)
        if hit is None:
            hit = self._generate(prompt_ids, params, sampling_seed)
            self._remember(self._cache, key, hit)
        return hit

    def samples(self, prompt_ids: list[int], params: SamplingParams, n: int, work_limit: int,
                check_context: bool = True, policy: str = "") -> list[Generation]:
        """`n` answers, each its own sample (seed + i), until their completion tokens pass `work_limit`: then
        WorkLimitExceeded (a real server would generate them all; a fake must stay bounded)."""
        gens, work = [], 0
        base = params.seed or 0
        for i in range(n):
            gen = self.generate(prompt_ids, dataclasses.replace(params, seed=base + i) if n > 1 else params,
                                check_context, policy)
            work += len(gen.token_ids)
            if work > work_limit:
                raise WorkLimitExceeded(n, work_limit)
            gens.append(gen)
        return gens

    def _generate(self, prompt_ids: list[int], params: SamplingParams, seed: int) -> Generation:
        rng = random.Random(seed)
        self._faker.seed_instance(seed)
        text = self._faker.paragraph(nb_sentences=rng.randint(1, 4))
        # (its own draw, so answers that are not empty stay what they were)
        rate = self.config.empty_rate
        if rate is None:
            natural = params.seed is not None and params.temperature > 0 and not params.ignore_eos
            rate = NATURAL_EMPTY_RATE if natural else 0.0
        empty = params.empty or (rate > 0 and random.Random(seed ^ 0xE3F7).random() < rate)
        if empty:
            text = ""
        elif self.config.think:
            text = f"<think>\n{self._faker.sentence()}\n</think>\n\n{text}"
        finish, stop_reason = "stop", None
        hits = [(text.find(s), s) for s in params.stop if s and s in text]
        if hits:
            at, stop_reason = min(hits)
            text = text[:at]
        ids = self.encode(text)
        budget = max(1, self.config.max_model_len - len(prompt_ids))
        if params.max_tokens is not None:
            budget = min(budget, params.max_tokens)
        if params.ignore_eos and stop_reason is None and not empty:
            # keep talking until the budget runs out, as an engine that never samples EOS does
            while len(ids) < budget:
                ids.extend(self.encode(" " + self._faker.paragraph(nb_sentences=4)))
        elif stop_reason is None:
            ids.append(self.eos_id)
        for i, t in enumerate(ids):
            if t in params.stop_token_ids:
                ids, stop_reason = ids[: i + 1], t
                break
        if len(ids) > budget or (params.ignore_eos and stop_reason is None and not empty):
            ids, finish, stop_reason = ids[:budget], "length", None
        body_ids = ids[:-1] if ids and ids[-1] == self.eos_id else ids
        text = self.decode(body_ids, skip_special_tokens=True)

        logprobs = [-round(abs(rng.gauss(0.0, 0.8)) + 1e-4, 6) for _ in ids]
        if ids and ids[-1] == self.eos_id:
            logprobs[-1] = -round(rng.uniform(0.0001, 0.05), 6)
        ranks = self._ranks(ids, logprobs, params.temperature, seed)
        top: list[list[tuple[int, float]]] = []
        if params.top_logprobs:
            # (the servers refuse more than 20 before asking; never let any caller size this past that)
            k = min(params.top_logprobs, MAX_ALTERNATIVES)
            alt_rng = random.Random(seed ^ 0xA17)
            for t, lp, r in zip(ids, logprobs, ranks):
                alts = [(t, lp)]
                for j in range(k - 1):
                    alts.append((rng.randrange(self.vocab_size - 3), round(lp - 0.5 - j - rng.random(), 4)))
                if r > 1:  # the tokens the engine found likelier come first, as vLLM lists them; past the k
                    # likeliest, the sampled one is listed beside all k of them
                    alts = [(t, lp)] + (self._likelier(t, lp, r, alt_rng) + alts[1:])[:k - 1 if r <= k else k]
                top.append(alts)
        routed = self._routed_experts(len(prompt_ids) + len(ids), seed) if self.config.moe else None
        return Generation(ids, text, finish, stop_reason, logprobs, top, routed, ranks=ranks,
                          top_k=params.top_logprobs)

    def _ranks(self, ids: list[int], logprobs: list[float], temperature: float, seed: int) -> list[int]:
        """With temperature > 0 a real engine often samples a token that is not the likeliest (rank 2 to 5
        here); its logprob is then below the top token's. Deterministic per seed; its own draws, so the
        rest of an answer does not move. Rewrites `logprobs` where the rank is above 1."""
        ranks = [1] * len(ids)
        if not temperature or temperature <= 0:
            return ranks
        rr = random.Random(seed ^ 0x5EED)
        rate = RANK_RATE * min(float(temperature), 2.0)
        for k, t in enumerate(ids):
            if t != self.eos_id and rr.random() < rate:
                r = 2 + min(int(rr.expovariate(1.0)), 3)
                ranks[k] = r
                logprobs[k] = round(math.log(rr.uniform(0.2, 0.8) / (r + 1)), 6)
        return ranks

    def _likelier(self, t: int, lp: float, rank: int, rng: random.Random) -> list[tuple[int, float]]:
        """The rank - 1 tokens above a sampled one, likeliest first, their probabilities summing below 1."""
        p = math.exp(lp)
        spare = 1.0 - rank * p
        weights = [rank - j for j in range(1, rank)]
        out = []
        for w in weights:
            q = p + 0.9 * spare * w / sum(weights)
            alt = rng.randrange(self.vocab_size - 3)
            out.append((alt if alt != t else alt + 1, round(math.log(q), 4)))
        return out

    def prompt_logprobs(self, prompt_ids: list[int], k: int) -> list:
        """A vLLM worker's `prompt_logprobs`: null for the first position, then per position the prompt's
        own id and the k likeliest, each `{"logprob", "rank"}` keyed by the id as a string."""
        k = max(0, min(int(k), MAX_ALTERNATIVES))
        digest = hashlib.blake2b(np.asarray(prompt_ids, dtype=np.int64).tobytes(), digest_size=8).digest()
        rng = random.Random(int.from_bytes(digest, "little") ^ k)
        out: list = [None]
        for t in prompt_ids[1:]:
            rank = 1 if rng.random() < 0.3 else rng.randrange(2, self.vocab_size)
            entry = {str(t): {"logprob": -round(rng.uniform(0.01, 3.0) if rank == 1 else rng.uniform(3, 15), 6),
                              "rank": rank}}
            for r in range(1, k + 1):
                alt = str(self.eos_id if r == 1 else rng.randrange(self.vocab_size - 3))
                entry.setdefault(alt, {"logprob": -round(rng.uniform(0.5, 12) * r / k, 6), "rank": r})
            out.append(entry)
        return out

    def _routed_experts(self, seq_len: int, seed: int) -> np.ndarray:
        moe = self.config.moe
        assert moe is not None
        rng = np.random.default_rng(seed)
        return rng.integers(0, moe.experts, size=(seq_len, moe.layers, moe.top_k), dtype=np.dtype(moe.dtype))

    def _remember(self, cache: OrderedDict, key: bytes, value) -> None:
        cache[key] = value
        if len(cache) > self._cache_size:
            cache.popitem(last=False)
