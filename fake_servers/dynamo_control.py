"""Dynamo's worker engine routes (`POST /engine/<name>` on the system port, GET taken too): HTTP 200 with
`{"status": "ok"|"error", ...}` in the handlers' own words (dynamo/vllm/handlers.py of the 1.6.1 wheel), and
serde's words for a body that is not JSON. The routes served are the profile's control-plane row."""

from __future__ import annotations

import os

import orjson
from aiohttp import web

from harness.wire.control_plane import DYNAMO_WORDS, PAUSE_MODES, VLLM_WORDS, ControlPlane, Route

from .base import faults_of, json_ok
from .control import Control, policy_after, policy_of_dir
from .control_routes import answer, update_delay


class DynamoEngineControl:
    """Dynamo's worker engine routes (`POST /engine/<name>` on the system port): HTTP 200, status in the body."""

    def __init__(self, control: Control, plane: ControlPlane):
        self.c, self.plane = control, plane

    @staticmethod
    def _err(key: str, **values) -> web.Response:
        return json_ok({"status": "error", "message": DYNAMO_WORDS[key].format(**values)})

    async def pause_generation(self, request, body, route):
        mode = body.get("mode", self.plane.default_mode)
        clear = bool(body.get("clear_cache", self.plane.default_clear_cache))
        if mode not in PAUSE_MODES:
            return self._err("bad_mode", mode=mode)
        if mode == "keep" and self.c.lora_active:
            return self._err("keep_with_lora", names=", ".join(sorted(self.c.lora_active)))
        await self.c.pause(mode, clear, "pause_never_drains" in faults_of(request) and mode == "wait")
        return answer(route, {"mode": mode, "clear_cache": clear})

    async def resume_generation(self, request, body, route):
        self.c.resume()
        return answer(route)

    async def flush_cache(self, request, body, route):
        self.c.clear_caches()
        return answer(route)

    async def abort_request(self, request, body, route):
        rid = body.get("request_id")
        if not rid:
            return self._err("missing_request_id")
        self.c.abort([rid])
        return answer(route, {"request_id": rid})

    async def get_weight_version(self, request, body, route):
        return answer(route, {"version": self.c.version, "declared": self.c.version is not None})

    async def set_weight_version(self, request, body, route):
        if "weight_version" not in body:
            return self._err("missing_weight_version")
        if "version_not_applied" not in faults_of(request):
            self.c.set_version(body["weight_version"])
        return answer(route, {"version": body["weight_version"]})

    def _versioned(self, request, body, route):
        declared = "weight_version" in body
        version = body.get("weight_version", "unknown")
        if declared and "version_not_applied" not in faults_of(request):
            self.c.set_version(version)
        return answer(route, {"version": version, "declared": declared})

    async def update_weights_from_disk(self, request, body, route):
        if not self.c.paused:
            return self._err("not_paused")
        path = body.get("model_path")
        if not path:
            return self._err("missing_model_path")
        await update_delay(request)
        if "update_fails" in faults_of(request):
            return self._err("rpc_failed", why="injected fault update_fails")
        if not isinstance(path, str) or not os.path.isdir(path):  # the worker is broken after it (recorded)
            self.c.dead = True
            return self._err("rpc_failed", why=VLLM_WORDS["weights_dir_missing"].format(path=path))
        self.c.set_policy(policy_of_dir(path))
        self.c.clear_caches()
        return self._versioned(request, body, route)

    async def update_weights_from_distributed(self, request, body, route):
        unpaused, reset = body.get("allow_unpaused", False), body.get("reset_prefix_cache", True)
        if not isinstance(unpaused, bool):
            return self._err("allow_unpaused_bool")
        if not isinstance(reset, bool):
            return self._err("reset_prefix_cache_bool")
        if unpaused and reset:
            return self._err("unpaused_reset")
        if not self.c.paused and not unpaused:
            return self._err("not_paused")
        await update_delay(request)
        if "update_fails" in faults_of(request):
            return self._err("rpc_failed", why="injected fault update_fails")
        self.c.set_policy(policy_after(self.c.policy, body))
        if reset:
            self.c.clear_caches()
        return self._versioned(request, body, route)

    async def load_lora(self, request, body, route):
        name, source = body.get("lora_name"), body.get("source")
        if not isinstance(name, str) or not name:
            return self._err("lora_name")
        if not source or not isinstance(source, dict):
            return self._err("lora_source")
        uri = source.get("uri")
        if not isinstance(uri, str) or not uri:
            return self._err("lora_uri")
        path = uri[7:] if uri.startswith("file://") else uri
        if name in self.c.loras:
            return json_ok({"status": "success", "message": f"LoRA adapter '{name}' already loaded",
                            "lora_name": name, "lora_id": self.c.loras[name][2]})
        if not os.path.isdir(path):
            return json_ok({"status": "error", "message": f"Failed to add LoRA '{name}': no adapter at {uri}",
                            "lora_name": name})
        lid = next(self.c.lora_ids)
        self.c.loras[name] = (path, policy_of_dir(path), lid)
        return json_ok({"status": "success", "message": f"LoRA adapter '{name}' loaded successfully",
                        "lora_name": name, "lora_id": lid, "hot_swap": False})

    async def unload_lora(self, request, body, route):
        name = body.get("lora_name")
        if not isinstance(name, str) or not name:
            return self._err("lora_name")
        if name not in self.c.loras:
            return json_ok({"status": "error", "message": f"LoRA adapter '{name}' not found. Available LoRAs: "
                                                          f"{list(self.c.loras)}"})
        lid = self.c.loras.pop(name)[2]
        return json_ok({"status": "success", "message": f"LoRA adapter '{name}' unloaded successfully",
                        "lora_name": name, "lora_id": lid})

    async def fixed(self, request, body, route):
        return answer(route)

    def handler(self, route: Route):
        fn = getattr(self, route.action, None) or self.fixed

        async def handle(request):
            raw = await request.read()
            try:
                body = orjson.loads(raw) if raw.strip() else None
            except orjson.JSONDecodeError as exc:
                return json_ok({"error": "Invalid JSON", "message": _serde_words(raw, exc)}, status=400)
            if body is None:
                body = {}
            elif not isinstance(body, dict):
                return self._err("not_object")
            return await fn(request, body, route)

        return handle


def _serde_words(raw: bytes, exc) -> str:
    """serde_json's complaint about a body that is not JSON (the system server parses with serde)."""
    text = raw.decode("utf-8", "replace").lstrip()
    pos = getattr(exc, "pos", 0)
    col = pos + 1
    if text.startswith("{") and pos >= 1 and text[1:2] not in ('"', "}", " "):
        return DYNAMO_WORDS["invalid_json"].format(why="key must be a string", col=col)
    if pos >= len(raw):
        return DYNAMO_WORDS["invalid_json"].format(why="EOF while parsing a value", col=col)
    return DYNAMO_WORDS["invalid_json"].format(why="expected value", col=col)
