"""The fault catalogue: one table of production faults, and the plan that decides which fire.

A fault is named in a spec `NAME[=VALUE][@PROBABILITY][*TIMES]`, for example `http_503*2` (the
first two requests answer 503), `slow=0.5@0.1` (one request in ten waits 0.5 s more),
`logprobs_one_less`. Specs come from start-up flags, from the `x-fake-fault` request header
(comma-separated), or from the admin route `POST /_fake/faults`.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Fault:
    name: str
    does: str
    exercises: str
    servers: tuple[str, ...] = ("vllm", "dynamo")
    scope: str = "data"  # "data": fires on answers; "control": on the RL control plane's routes only


_F = Fault
CATALOGUE: dict[str, Fault] = {f.name: f for f in [
    _F("missing_token_ids", "drops the completion ids (`choices[].token_ids`; on Dynamo also `nvext.completion_token_ids` and engine_data's)",
       "turn has no engine tokens; the next turn falls back to MITO (`no_engine_tokens`)"),
    _F("missing_prompt_token_ids", "drops the prompt ids (top-level `prompt_token_ids`, engine_data's, nvext's)",
       "client keeps the ids it sent as the prompt; a messages-in turn without them has no engine tokens"),
    _F("missing_engine_data", "drops `nvext.engine_data`",
       "client falls back to `nvext.completion_token_ids` / vLLM-native ids", ("dynamo",)),
    _F("engine_data_no_logprobs", "drops `engine_data.completion_logprobs` and the choice's logprobs",
       "turn keeps its ids for stitching and says its logprobs are missing", ("dynamo",)),
    _F("logprobs_one_more", "adds one logprob entry more than there are completion ids",
       "mismatch policy: drop the turn's tokens (default) or raise"),
    _F("logprobs_one_less", "removes the last logprob entry",
       "mismatch policy: drop the turn's tokens (default) or raise"),
    _F("logprobs_no_content", "answers `logprobs: {\"content\": null}`",
       "client synthesizes logprobs from `engine_data.completion_logprobs`, or reports them missing"),
    _F("echo_ids", "`choices[0].token_ids` becomes a detokenize/re-tokenize echo that differs from engine_data",
       "engine_data wins over the echo", ("dynamo",)),
    _F("experts_key_order", "object forms: routed_experts keys in another order (`shape`, `start`, `dtype`, then "
       "`data`); string forms: `routed_experts` moves to the front of its object",
       "body splitter finds the blob whatever the key order"),
    _F("experts_sibling_data", "a sibling object with its own `data` key beside routed_experts (and inside the "
       "object forms)", "body splitter takes only routed_experts' own blob"),
    _F("experts_string_mention", "the completion text contains `\"routed_experts\": {\"data\": ...}`",
       "body splitter ignores JSON strings that mention routed_experts"),
    _F("experts_wrong_dtype", "routed_experts names a wider type than the data holds (`dtype`, or the `.npy` "
       "header's `descr`); SGLang's raw int32 string loses two bytes",
       "decoder's size check raises a clear error"),
    _F("experts_missing_dtype", "drops routed_experts `dtype` (or the `.npy` header's `descr`; the data stays "
       "uint8); SGLang's string has no dtype to drop", "decoder defaults to uint8"),
    _F("truncated_stream", "an SSE answer stops after a few chunks, with no finish chunk and no `[DONE]`",
       "client treats the stream as failed (retried, then a typed error)"),
    _F("http_429", "answers 429 with `Retry-After` in the server's error shape", "bounded retries honouring Retry-After"),
    _F("http_500", "answers 500 in the server's error shape", "bounded retries with backoff, then ServerError"),
    _F("http_503", "answers 503 with `Retry-After`", "bounded retries, then ServerError"),
    _F("slow", "adds latency before answering (VALUE seconds, default 1.0)", "client timeouts"),
    _F("reset", "sends the headers and half the body, then resets the connection",
       "connection errors are retried, then a typed error"),
    _F("invalid_json", "answers 200 with a body that is not valid JSON", "MalformedResponseError, never a crash"),
    _F("empty_choices", "answers `choices: []`", "MalformedResponseError naming the empty choices"),
    _F("empty_completion", "the model answers only the stop token (`content` empty or null, one completion id), "
       "as real models often do", "the client keeps the turn (its one id) and stitches the next; clients that "
       "refuse it (verifiers' EmptyModelResponseError) show it"),
    _F("template_system_default", "the server's chat template adds a default system prompt when none is given",
       "tokenizer parity guard: local rendering differs from the engine's"),
    _F("template_no_newline", "the server's chat template drops the newline after the role name",
       "tokenizer parity guard"),
    _F("template_tools_format", "the server's chat template renders tool definitions in another format",
       "tokenizer parity guard"),
    _F("pause_never_drains", "a pause that waits for in-flight requests (vLLM `mode=wait`, Dynamo `wait`) never "
       "answers: the requests it waits for never finish until `resume`",
       "the orchestrator's pause timeout; a step that cannot start", scope="control"),
    _F("update_fails", "a weight update fails as the real server fails (vLLM: 500 from the engine's RPC; Dynamo: "
       "`status: error`, `Call to collective_rpc method failed`); the policy stays",
       "the orchestrator notices a failed update instead of training on stale rollouts", scope="control"),
    _F("slow_update", "a weight update takes VALUE seconds more (default 5.0), generation staying paused",
       "update timeouts, pause durations in the step summary", scope="control"),
    _F("worker_gone", "Dynamo's `/v1/rl/workers` lists no worker (as when a worker's lease expired)",
       "discovery retries; a step that finds no worker to pause", ("dynamo",), scope="control"),
    _F("version_not_applied", "a version tag answers success but the reported version stays the old one",
       "the `stale_version` audit: answers after new weights under an old tag", scope="control"),
]}

HTTP_FAULTS = ("http_429", "http_500", "http_503")
CONTROL_FAULTS = tuple(f.name for f in CATALOGUE.values() if f.scope == "control")
TEMPLATE_FAULTS = ("template_system_default", "template_no_newline", "template_tools_format")


class FaultSpecError(ValueError):
    pass


@dataclass
class FaultRule:
    name: str
    value: float | None = None
    probability: float = 1.0
    times: int | None = None  # fire on the first N matching requests only
    fired: int = 0

    @classmethod
    def parse(cls, spec: str) -> "FaultRule":
        text = spec.strip()
        times = None
        if "*" in text:
            text, _, n = text.rpartition("*")
            times = _number(int, n, spec)
        probability = 1.0
        if "@" in text:
            text, _, p = text.rpartition("@")
            probability = _number(float, p, spec)
            if not 0.0 <= probability <= 1.0:
                raise FaultSpecError(f"fault {spec!r}: probability must be within [0, 1]")
        value = None
        if "=" in text:
            text, _, v = text.partition("=")
            value = _number(float, v, spec)
        if text not in CATALOGUE:
            raise FaultSpecError(f"unknown fault {text!r}; known: {', '.join(sorted(CATALOGUE))}")
        return cls(text, value, probability, times)

    def to_dict(self) -> dict:
        return {"name": self.name, "value": self.value, "probability": self.probability,
                "times": self.times, "fired": self.fired}


def _number(kind, text: str, spec: str):
    try:
        return kind(text)
    except ValueError:
        raise FaultSpecError(f"fault {spec!r}: {text!r} is not a number") from None


def parse_specs(specs) -> list[FaultRule]:
    """Rules from a comma-separated string or an iterable of specs."""
    if specs is None:
        return []
    if isinstance(specs, str):
        specs = specs.split(",")
    return [FaultRule.parse(s) for s in specs if s and s.strip()]


@dataclass
class Active:
    """The faults that fire for one request, with their values."""

    values: dict[str, float | None] = field(default_factory=dict)

    def __contains__(self, name: str) -> bool:
        return name in self.values

    def value(self, name: str, default: float) -> float:
        v = self.values.get(name)
        return default if v is None else v

    def __bool__(self) -> bool:
        return bool(self.values)


class FaultPlan:
    """Standing rules (start-up flags, admin route) plus per-request header rules, seeded."""

    def __init__(self, specs=None, seed: int = 0):
        self._lock = threading.Lock()
        self.rules = parse_specs(specs)
        self.seed = seed
        self._rng = random.Random(seed)

    def set(self, specs, seed: int | None = None) -> None:
        rules = parse_specs(specs)
        with self._lock:
            self.rules = rules
            if seed is not None:
                self.seed = seed
            self._rng = random.Random(self.seed)

    def describe(self) -> dict:
        return {"seed": self.seed, "faults": [r.to_dict() for r in self.rules]}

    def draw(self, header: str | None, scope: str = "data") -> Active:
        """Decide which faults fire for a request carrying `header` (may be None); `scope`: the route's kind
        ("control" for the RL control plane's routes), so a control fault's count is not spent on answers."""
        extra = parse_specs(header) if header else []
        active = Active()
        with self._lock:
            for rule in [*self.rules, *extra]:
                if CATALOGUE[rule.name].scope != scope:
                    continue
                if rule.times is not None and rule.fired >= rule.times:
                    continue
                if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                    continue
                rule.fired += 1
                active.values[rule.name] = rule.value
        return active


def invalid_json(data: bytes) -> bytes:
    """The `invalid_json` fault's body: cut in half and ended with bytes no JSON parser takes."""
    return data[: max(1, len(data) // 2)] + b"\x00<<not json"


def reset_part(data: bytes) -> bytes:
    """What the `reset` fault sends of a body before it drops the connection: the first half."""
    return data[: len(data) // 2]


def injected_response(active: Active, style) -> object | None:
    """The answer an HTTP fault gives in a server's `ErrorStyle` (None when no HTTP fault fires)."""
    for name in HTTP_FAULTS:
        if name in active:
            status = int(name.split("_")[1])
            headers = {"Retry-After": str(int(active.value(name, 1)))} if status != 500 else {}
            return style.http_fault(status, f"injected fault {name}", headers)
    return None


def catalogue_markdown() -> str:
    """The catalogue as one Markdown table (the README carries it)."""
    rows = ["| fault | what the server does | client behaviour it exercises | servers |",
            "|---|---|---|---|"]
    for f in CATALOGUE.values():
        rows.append(f"| `{f.name}` | {f.does} | {f.exercises} | {', '.join(f.servers)} |")
    return "\n".join(rows)
