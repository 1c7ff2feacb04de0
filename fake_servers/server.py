"""Build a fake server app, or run one in a background thread (`RunningServer`)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from aiohttp import web

from harness.wire.control_plane import CONTROL_PLANES
from harness.wire.faults import TEMPLATE_FAULTS, FaultPlan, parse_specs
from harness.wire.profiles import Profile, get_profile

from . import dynamo, vllm
from .base import STATE, ServerState
from .capacity import Capacity
from .control import Control
from .engine import EngineConfig, FakeEngine, MoEShape
from .templates import variants

KINDS = ("vllm", "dynamo")


@dataclass
class FakeConfig:
    kind: str = "vllm"
    model: str = "tiny-qwen"
    max_model_len: int = 4096
    moe: MoEShape | str | None = None
    faults: list[str] | str | None = None
    fault_seed: int = 0
    ttft: float = 0.0
    per_token: float = 0.0
    seed: int = 0
    tokenizer: object = None  # a tokenizer object, a path/name, or None for the default Qwen2.5
    template: str = "chatml"
    think: bool | None = None  # completions open with <think> blocks; default: template == "thinking"
    empty_rate: float | None = None  # share of answers that are only the stop token (None: the real servers' rate)
    profile: str | None = None  # a name from harness.wire.profiles (default: the kind's default)
    dynamo_backend: str | None = None  # Dynamo: "vllm" (engine_data, logprobs), "mocker" or "sglang"
    native_generate: bool = False  # Dynamo: serve /inference/v1/generate (vLLM backend)
    chat_tokens_route: bool | None = None  # vLLM: force /v1/chat/completions/tokens on or off (None: profile)
    generate_route: bool | None = None  # vLLM: force /inference/v1/generate on or off (None: profile)
    tool_parser: str | None = "hermes"  # vLLM: None = started without --enable-auto-tool-choice
    worker_down_seconds: float | None = None  # Dynamo `down` worker failures: how long (None: the profile's)
    dev_mode: bool | None = None  # vLLM: VLLM_SERVER_DEV_MODE=1 (None: read the environment)
    enable_rl: bool | None = None  # Dynamo: --enable-rl / DYN_ENABLE_RL (None: read the environment)
    system_port: int | None = None  # Dynamo: the worker's system server (DYN_SYSTEM_PORT; None: env, else 0 = free)
    rl_port: int | None = None  # Dynamo: the frontend's RL discovery listener (DYN_RL_PORT; None: env, else 0)
    max_num_seqs: int = 256  # requests running at once; the excess waits (/metrics num_requests_waiting)
    runtime_lora: bool | None = None  # vLLM: --enable-lora with VLLM_ALLOW_RUNTIME_LORA_UPDATING (None: read env)
    weight_transfer: bool = False  # vLLM: a weight_transfer_config, so its streamed-update routes work (the
    # recorded CPU servers had none: every weight-transfer call failed in the worker)
    kv_blocks: int = 8192  # KV-cache blocks of 128 tokens, as vLLM 0.32 CPU has them (/metrics kv_cache_usage_perc)

    @classmethod
    def for_profile(cls, prof: Profile, **overrides) -> "FakeConfig":
        """A fake answering as `prof` (a profile as `parse_label` gives it: its Dynamo worker and native
        generate route included)."""
        return cls(kind=prof.kind, profile=prof.name, dynamo_backend=prof.backend,
                   native_generate=prof.kind == "dynamo" and prof.serves("generate"), **overrides)

    def resolve_profile(self) -> Profile:
        """The profile this configuration serves, with any route overrides applied."""
        prof = get_profile(self.profile, self.kind, self.dynamo_backend if self.kind == "dynamo" else None,
                           self.native_generate)
        routes = set(prof.routes)
        for name, on in (("chat_tokens", self.chat_tokens_route), ("generate", self.generate_route)):
            if on is not None and self.kind == "vllm":
                (routes.add if on else routes.discard)(name)
        return dataclasses.replace(prof, routes=frozenset(routes))


def control_plane_of(cfg: FakeConfig, profile: Profile):
    """The profile's RL control plane when its switch is on, as the real server takes it (None: off)."""
    plane = CONTROL_PLANES.get(profile.control_plane) if profile.control_plane else None
    if plane is None:
        return None
    on = {"always": True, "dev_mode": cfg.dev_mode if cfg.dev_mode is not None else env_on("VLLM_SERVER_DEV_MODE"),
          "enable_rl": cfg.enable_rl if cfg.enable_rl is not None else env_on("DYN_ENABLE_RL")}[plane.switch]
    return plane if on else None


def runtime_lora_of(cfg: FakeConfig, profile: Profile, plane):
    """vLLM's runtime LoRA routes, when the server was started for them and its control plane has none."""
    on = cfg.runtime_lora if cfg.runtime_lora is not None else env_on("VLLM_ALLOW_RUNTIME_LORA_UPDATING")
    if not on or profile.kind != "vllm" or (plane is not None and plane.route("load_lora") is not None):
        return None
    return CONTROL_PLANES["vllm-runtime-lora"]


def env_on(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def env_port(value: int | None, name: str) -> int:
    if value is not None:
        return value
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw.isdigit() else 0


def _tokenizer(cfg: FakeConfig):
    if cfg.tokenizer is not None and not isinstance(cfg.tokenizer, (str, bytes)) and hasattr(cfg.tokenizer, "encode"):
        return cfg.tokenizer
    from harness.tokenizer import load_tokenizer  # the tokenizer builder, not the client

    return load_tokenizer(cfg.tokenizer, cfg.template)


def build_app(cfg: FakeConfig | None = None, **overrides) -> web.Application:
    """An aiohttp application for `cfg.kind`, ready for a runner or aiohttp's TestServer."""
    cfg = cfg or FakeConfig()
    for k, v in overrides.items():
        setattr(cfg, k, v)
    if cfg.kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {cfg.kind!r}")
    profile = cfg.resolve_profile()  # ProfileError (a ValueError) names what is wrong
    moe = MoEShape.parse(cfg.moe) if isinstance(cfg.moe, str) else cfg.moe
    tok = _tokenizer(cfg)
    engine = FakeEngine(tok, EngineConfig(model=cfg.model, max_model_len=cfg.max_model_len, moe=moe,
                                          ttft=cfg.ttft, per_token=cfg.per_token, seed=cfg.seed,
                                          think=cfg.template == "thinking" if cfg.think is None else cfg.think,
                                          empty_rate=cfg.empty_rate))
    rules = parse_specs(cfg.faults)
    templates = variants(getattr(tok, "chat_template", None))
    for r in rules:
        if r.name in TEMPLATE_FAULTS and r.name not in templates:
            raise ValueError(f"fault {r.name} needs the project's ChatML template; this tokenizer's differs")
    if cfg.worker_down_seconds is not None:
        profile = dataclasses.replace(profile, worker_down_seconds=cfg.worker_down_seconds)
    state = ServerState(kind=cfg.kind, engine=engine, plan=FaultPlan(cfg.faults, cfg.fault_seed),
                        template_faults=templates, profile=profile)
    plane = control_plane_of(cfg, profile)
    state.control = Control(engine, plane, Capacity(cfg.max_num_seqs, 128, cfg.kv_blocks))
    state.control.weight_transfer = cfg.weight_transfer
    state.control.lora_plane = runtime_lora_of(cfg, profile, plane)
    state.control.ports = (env_port(cfg.system_port, "DYN_SYSTEM_PORT"), env_port(cfg.rl_port, "DYN_RL_PORT"))
    if cfg.kind == "vllm":
        return vllm.create_app(state, profile, cfg.tool_parser)
    return dynamo.create_app(state, profile)


class RunningServer:
    """A fake server on its own thread and loop: usable from sync and async code alike.

    >>> with RunningServer(FakeConfig(kind="dynamo")) as srv:
    ...     srv.base_url  # 'http://127.0.0.1:PORT/v1'
    """

    def __init__(self, cfg: FakeConfig | None = None, host: str = "127.0.0.1", port: int = 0, **overrides):
        self.cfg = cfg or FakeConfig()
        for k, v in overrides.items():
            setattr(self.cfg, k, v)
        self.host, self.port = host, port
        self.app: web.Application | None = None
        self._thread = None

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.root_url + "/v1"

    @property
    def state(self) -> ServerState:
        assert self.app is not None
        return self.app[STATE]

    @property
    def control(self):
        """The engine's RL state (fake_servers.control.Control): policy, version, pause, flights."""
        return self.state.control

    @property
    def system_url(self) -> str | None:
        """Dynamo with --enable-rl: the worker's system server (POST /engine/<route>)."""
        port = self.state.control.system_port
        return None if port is None else f"http://127.0.0.1:{port}"

    @property
    def rl_url(self) -> str | None:
        """Dynamo with --enable-rl: the frontend's RL discovery listener (GET /v1/rl/workers)."""
        port = self.state.control.rl_port
        return None if port is None else f"http://127.0.0.1:{port}"

    def set_faults(self, specs, seed: int | None = None) -> None:
        """Catalogue faults for the requests to come (`harness faults` lists them), e.g. ["reset@0.5"]."""
        self.state.plan.set(specs, seed)

    @property
    def received(self) -> list:
        """The requests received (the last 1000), oldest first: `Received(method, path, headers, body,
        status, faults)`, with `.json()`."""
        return list(self.state.received)

    def clear_received(self) -> None:
        self.state.received.clear()

    def start(self) -> "RunningServer":
        from harness.serve import AppThread

        self.app = build_app(self.cfg)
        self._thread = AppThread(self.app, self.host, self.port).__enter__()
        self.port = self._thread.port
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.__exit__(None, None, None)
            self._thread = None

    def __enter__(self) -> "RunningServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
