"""prime-rl's orchestrator driving a server's admin calls between training steps, as it sends them.

Written from PrimeIntellect-ai/prime-rl's own code, pinned:
- `src/prime_rl/utils/client.py` at 559b44772e471d1538537b8805cc77f3824a5e64 (main): one admin client
  per server on the base URL without `/v1` (`timeout=None`, at most 4 connections); `GET /health` (404:
  skipped) and `GET /v1/models` naming the model; a weight update is `POST /pause` with query
  `mode=keep&clear_cache=false` (read timeout 300 s), `POST /update_weights` `{"weight_dir": ...}`
  (read timeout 720 s), then `POST /resume`, each `raise_for_status()`, retried on 5xx and transport
  errors only; the rollouts tag each request with `cache_salt` = the policy version.
- `src/prime_rl/utils/dynamo.py` at 73164c32295c49eafc7d7668b3613064a92ef630 (pull request 3296, not in
  main): Dynamo workers are found with `GET <discovery>/v1/rl/workers` (`protocol_version` 1, each worker
  with `system_url`, `instance_id`, `world_size` and `routes` that must include
  control/pause_generation, control/resume_generation, control/is_paused, control/get_weight_version
  and update/update_weight_version); calls then go to `<system_url>/engine/<route>`, each answer an
  object whose `status` is not "error".

The scenario: a turn as a rollout sends it, the weight update (with a directory standing for the
trainer's checkpoint), then a turn on the new policy.
"""

from __future__ import annotations

import tempfile

import httpx

from .base import Adapter, ScenarioFailed, Target

PRIME_RL_MAIN = "559b44772e471d1538537b8805cc77f3824a5e64"
PRIME_RL_DYNAMO = "73164c32295c49eafc7d7668b3613064a92ef630"
ADMIN_TIMEOUT_S = 300.0
UPDATE_WEIGHTS_TIMEOUT_S = 720.0
DYNAMO_PROTOCOL = 1
DYNAMO_REQUIRED_ROUTES = frozenset({"control/pause_generation", "control/resume_generation", "control/is_paused",
                                    "control/get_weight_version", "update/update_weight_version"})


def _timeout(read: float) -> httpx.Timeout:
    return httpx.Timeout(connect=10.0, read=read, write=60.0, pool=10.0)


def dynamo_workers(payload, model: str) -> list[dict]:
    """The workers prime-rl's Dynamo pool would drive, or its own refusal (ScenarioFailed)."""
    if not isinstance(payload, dict) or payload.get("protocol_version") != DYNAMO_PROTOCOL \
            or not isinstance(payload.get("workers"), list):
        raise ScenarioFailed(f"Dynamo discovery answered no protocol_version {DYNAMO_PROTOCOL} snapshot")
    workers = []
    for w in payload["workers"]:
        if not isinstance(w, dict) or w.get("model") != model:
            continue
        if w.get("error"):
            raise ScenarioFailed(f"Dynamo worker is not ready: {w['error']}")
        missing = DYNAMO_REQUIRED_ROUTES.difference(w.get("routes") or ())
        if missing:
            raise ScenarioFailed(f"Dynamo worker is missing native routes: {sorted(missing)}")
        workers.append(w)
    if not workers:
        raise ScenarioFailed(f"Dynamo returned no bound workers for model {model!r}")
    return workers


class PrimeRLAdmin(Adapter):
    name = "prime-rl-orchestrator"
    package = "httpx"

    def applies(self, target: Target) -> str | None:
        return None  # it drives vLLM-style servers and, through discovery, Dynamo

    async def run(self, target: Target) -> None:
        if target.server == "dynamo":
            await self._dynamo(target)
        else:
            await self._vllm(target)

    async def _turn(self, http: httpx.AsyncClient, target: Target, salt: str) -> None:
        r = await http.post(target.base_url + "/chat/completions", timeout=60, json={
            "model": target.model, "messages": [{"role": "user", "content": "Name a prime number."}],
            "max_tokens": 8, "cache_salt": salt, "logprobs": True})
        r.raise_for_status()

    async def _vllm(self, target: Target) -> None:
        root = target.root_url
        limits = httpx.Limits(max_connections=4, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=root, limits=limits, timeout=httpx.Timeout(None)) as admin, \
                httpx.AsyncClient() as data:
            health = await admin.get("/health", timeout=30)
            if health.status_code != 404:
                health.raise_for_status()
            models = (await admin.get("/v1/models", timeout=30)).json()["data"]
            if not any(m["id"] == target.model for m in models):
                raise ValueError(f"Model {target.model} was not found in the inference pool on {root}")
            await self._turn(data, target, "0")
            with tempfile.TemporaryDirectory(prefix="prime-rl-step-") as weight_dir:
                (await admin.post("/pause", params={"mode": "keep", "clear_cache": "false"},
                                  timeout=_timeout(ADMIN_TIMEOUT_S))).raise_for_status()
                try:
                    (await admin.post("/update_weights", json={"weight_dir": weight_dir},
                                      timeout=_timeout(UPDATE_WEIGHTS_TIMEOUT_S))).raise_for_status()
                finally:
                    (await admin.post("/resume", timeout=_timeout(ADMIN_TIMEOUT_S))).raise_for_status()
            await self._turn(data, target, "1")

    async def _dynamo(self, target: Target) -> None:
        discovery = getattr(target, "rl_url", None)
        if not discovery:
            raise ScenarioFailed("no Dynamo RL discovery listener (the frontend's DYN_RL_PORT) to find workers on")
        async with httpx.AsyncClient(timeout=30) as http:
            try:
                r = await http.get(discovery.rstrip("/").removesuffix("/v1") + "/v1/rl/workers")
            except httpx.TransportError as exc:
                raise ScenarioFailed(f"Dynamo RL discovery unreachable: {exc or type(exc).__name__}") from None
            r.raise_for_status()
            workers = dynamo_workers(r.json(), target.model)
            if not all(w.get("admin_base_url") for w in workers):  # a filesystem update reloads through vLLM's own
                raise ValueError("Dynamo filesystem and NIXL updates require vLLM HTTP admin endpoints for "
                                 "/collective_rpc")
            await self._turn(http, target, "0")

            async def fanout(path: str, body: dict, base: str = "system_url") -> list[dict]:
                out = []
                for w in workers:
                    answer = await http.post(str(w[base]).rstrip("/") + path, json=body)
                    answer.raise_for_status()
                    payload = answer.json()
                    if not isinstance(payload, dict):
                        raise RuntimeError(f"Dynamo route {path} returned a non-object response")
                    if payload.get("status") == "error":
                        raise RuntimeError(payload.get("message", f"Dynamo route {path} failed"))
                    out.append(payload)
                return out

            await fanout("/engine/control/pause_generation", {"mode": "keep", "clear_cache": False})
            if not all(p.get("is_paused") is True for p in await fanout("/engine/control/is_paused", {})):
                raise RuntimeError("Dynamo did not confirm every pinned worker was paused")
            with tempfile.TemporaryDirectory(prefix="prime-rl-step-") as weight_dir:
                await fanout("/collective_rpc", {"method": "reload_weights", "timeout": ADMIN_TIMEOUT_S, "args": [],
                                                 "kwargs": {"weights_path": weight_dir}}, "admin_base_url")
            await fanout("/engine/update/update_weight_version", {"new_version": "1"})
            versions = await fanout("/engine/control/get_weight_version", {})
            if not all(v.get("weight_version") == "1" for v in versions):
                raise TimeoutError("Dynamo workers did not commit weight version 1; engines remain paused")
            await fanout("/engine/control/resume_generation", {})
            await self._turn(http, target, "1")


ADAPTERS = [PrimeRLAdmin()]
