"""What each kind of deployment serves on its RL control plane, and what it promises: rows of data.

A row says how to pause (and in which modes), resume, load weights from a directory, tag a version
and read it back, where a paused engine's in-flight requests are counted, and how an answer cut by
an abort pause ends. `harness rl-step` drives a deployment from its row and holds it to the row's
promises; nothing branches on a kind's name.

The routes and bodies are the servers' own:
- vLLM 0.31/0.32 with VLLM_SERVER_DEV_MODE=1: `vllm/entrypoints/rl/online/api_router.py` (0.32),
  `vllm/entrypoints/serve/dev/rlhf/api_router.py` (0.31), `/collective_rpc` from
  `vllm/entrypoints/serve/dev/rpc/api_router.py` (reload_weights takes `weights_path`);
  recorded on vLLM 0.32 (abort ends in-flight answers 200 with finish_reason "abort").
- prime-rl's server: `src/prime_rl/inference/vllm/server.py` (PrimeIntellect-ai/prime-rl at
  559b44772e471d1538537b8805cc77f3824a5e64): `/pause` is always keep without a cache reset,
  `/update_weights` takes `weight_dir`.
- Dynamo 1.6.1 + vLLM worker with --enable-rl: `dynamo/vllm/handlers.py`: `/engine/<route>` on the
  worker's system port, found through `GET /v1/rl/workers` on the frontend's RL port; each answers
  200 `{"status": "ok"|"error", ...}`; an abort pause ends in-flight answers with "stop" (recorded).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Call:
    """One admin call: method, path, and the body (or query) it is sent with; `{mode}`, `{clear_cache}`,
    `{dir}` and `{version}` in a template are filled in."""

    method: str
    path: str
    body: dict | None = None
    query: dict | None = None


@dataclass(frozen=True)
class Kind:
    name: str
    describe: str
    pause: Call
    resume: Call
    modes: tuple[str, ...]  # pause modes it takes
    update_from_dir: tuple[Call, ...] = ()  # load weights from a directory (in this order)
    set_version: Call | None = None  # tag the weights with a version label
    get_version: Call | None = None  # read the label back
    version_field: str | None = None  # where get_version's answer names it
    is_paused: Call | None = None
    status_field: str | None = None  # the answer says ok/error in this field (else: the HTTP status says)
    discovery: str | None = None  # workers are listed here (on the RL discovery port); calls go to each
    abort_finish: str | None = None  # finish_reason of an answer cut by an abort pause
    paused_requests: dict = field(default_factory=lambda: {"abort": "held", "wait": "held", "keep": "held"})
    # what a request sent while paused gets, per mode: "held" (answered after resume) or "refused"
    running_metric: str | None = None  # /metrics gauge of requests in flight
    tags: dict = field(default_factory=dict)  # sent on every request: the client's own version tag
    asks_versions: dict = field(default_factory=dict)  # asks the answer to name the versions that sampled it
    transport: str = "vllm_generate"

    def fill(self, call: Call, **values) -> Call:
        return Call(call.method, call.path, _fill(call.body, values), _fill(call.query, values))


def _fill(template, values):
    if template is None:
        return None
    if isinstance(template, dict):
        return {k: _fill(v, values) for k, v in template.items()}
    if isinstance(template, str) and template.startswith("{") and template.endswith("}"):
        return values.get(template[1:-1])
    return template


VLLM = Kind(
    name="vllm", describe="vLLM 0.31 and 0.32 with VLLM_SERVER_DEV_MODE=1",
    pause=Call("POST", "/pause", query={"mode": "{mode}", "clear_cache": "{clear_cache}"}),
    resume=Call("POST", "/resume"), modes=("abort", "wait", "keep"),
    update_from_dir=(Call("POST", "/collective_rpc", {"method": "reload_weights", "kwargs": {"weights_path": "{dir}"}}),),
    set_version=Call("POST", "/update_weight_version", {"new_version": "{version}"}),
    get_version=Call("GET", "/weight_info"), version_field="weight_version",
    is_paused=Call("GET", "/is_paused"), abort_finish="abort", running_metric="vllm:num_requests_running",
    tags={"cache_salt": "{version}"}, asks_versions={"return_weight_versions": True})

PRIME_RL = Kind(
    name="prime-rl", describe="prime-rl's inference server (pause is always keep)",
    pause=Call("POST", "/pause", query={"mode": "keep", "clear_cache": "false"}),
    resume=Call("POST", "/resume"), modes=("keep",),
    update_from_dir=(Call("POST", "/update_weights", {"weight_dir": "{dir}"}),),
    running_metric="vllm:num_requests_running", tags={"cache_salt": "{version}"})

DYNAMO = Kind(
    name="dynamo", describe="Dynamo with a vLLM worker started with --enable-rl",
    pause=Call("POST", "/engine/pause_generation", {"mode": "{mode}", "clear_cache": "{clear_cache}"}),
    resume=Call("POST", "/engine/resume_generation", {}), modes=("abort", "wait", "keep"),
    update_from_dir=(Call("POST", "/engine/update_weights_from_disk", {"model_path": "{dir}", "weight_version": "{version}"}),),
    set_version=Call("POST", "/engine/set_weight_version", {"weight_version": "{version}"}),
    get_version=Call("POST", "/engine/get_weight_version", {}), version_field="version",
    status_field="status", discovery="/v1/rl/workers", abort_finish="stop",
    running_metric="dynamo_frontend_inflight_requests", transport="dynamo_chat")

# vLLM 0.33 and 0.34 (read from their wheels): an abort or wait pause refuses new requests with 503 until
# resume, keep still holds them; chat choices name the versions that sampled them
VLLM_033 = dataclasses.replace(VLLM, name="vllm-0.33", describe="vLLM 0.33+ with VLLM_SERVER_DEV_MODE=1",
                               paused_requests={"abort": "refused", "wait": "refused", "keep": "held"})

KINDS = {k.name: k for k in (VLLM, VLLM_033, PRIME_RL, DYNAMO)}


def kind(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown deployment kind {name!r}; known: {', '.join(KINDS)}") from None
