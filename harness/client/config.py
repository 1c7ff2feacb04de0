"""ClientConfig: where to talk, how, and what to do when the engine's answer is off."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..wire.transports import TRANSPORTS  # noqa: F401  (the names, as data; importable from here as before)
from ..wire.urls import root_of

Transport = Literal["vllm_generate", "dynamo_chat", "dynamo_generate"]
TitoRoute = Literal["auto", "chat_tokens", "generate"]
MismatchPolicy = Literal["drop", "raise"]
ParityPolicy = Literal["warn", "raise", "mito", "off"]


@dataclass
class ClientConfig:
    base_url: str
    """The OpenAI base URL, usually ending in /v1 (e.g. http://127.0.0.1:8000/v1)."""
    model: str
    renderer_transport: Transport = "vllm_generate"
    tito_route: TitoRoute = "auto"
    """vllm_generate only: where stitched turns go. `chat_tokens` = /v1/chat/completions/tokens
    (prime-rl style servers), `generate` = /inference/v1/generate (upstream vLLM with
    --enable-scale-out), `auto` = chat_tokens, switching once to generate if the route is missing."""
    tokenizer: Any = None
    """Local tokenizer for bridge tokens (dynamo_chat) and parity checks: a tokenizer object,
    an HF directory or name, or None for the built-in Qwen2.5 tokenizer."""
    template: str = "chatml"
    """Template of the built-in tokenizer ('chatml' or 'thinking') when `tokenizer` is None."""
    api_key: str | None = None
    timeout: float = 120.0
    connect_timeout: float = 10.0
    max_retries: int = 3
    """Retries for 429, 5xx, connection errors and cut streams (so up to max_retries + 1 attempts)."""
    backoff: float = 0.25
    backoff_max: float = 8.0
    mismatch_policy: MismatchPolicy = "drop"
    """Logprob count != completion id count: `drop` the turn's tokens (next turn is MITO) or `raise`."""
    parity_policy: ParityPolicy = "warn"
    """Local vs engine rendering differs: `warn` (log once, mark turns), `raise`, `mito` (stop
    stitching: later turns fall back with `tokenizer_mismatch`), or `off` (never check)."""
    stream: bool = False
    check_context: bool = True
    """Read max_model_len from /v1/models once and refuse over-long stitched prompts before sending."""
    headers: dict[str, str] = field(default_factory=dict)
    extra_body: dict[str, Any] = field(default_factory=dict)
    """Merged into every request body (caller `nvext` keys are merged, never dropped)."""

    def __post_init__(self):
        if self.renderer_transport not in TRANSPORTS:
            raise ValueError(f"renderer_transport must be one of {TRANSPORTS}, got {self.renderer_transport!r}")
        if self.tito_route not in ("auto", "chat_tokens", "generate"):
            raise ValueError(f"tito_route must be auto, chat_tokens or generate, got {self.tito_route!r}")
        if self.mismatch_policy not in ("drop", "raise"):
            raise ValueError(f"mismatch_policy must be drop or raise, got {self.mismatch_policy!r}")
        if self.parity_policy not in ("warn", "raise", "mito", "off"):
            raise ValueError(f"parity_policy must be warn, raise, mito or off, got {self.parity_policy!r}")
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.base_url = self.base_url.rstrip("/")

    @property
    def root_url(self) -> str:
        """The server root: base URL without a trailing /v1 (where /tokenize lives)."""
        return root_of(self.base_url)
