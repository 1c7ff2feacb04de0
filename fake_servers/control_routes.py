"""The control plane's routes, one handler per `Route.action` of `harness.wire.control_plane`: vLLM's (HTTP
statuses, its error shapes), prime-rl's, and Dynamo's worker engine routes (HTTP 200, `{"status": ...}`).
Which routes a fake serves, and the bodies they answer, are the profile's control-plane row."""

from __future__ import annotations

import asyncio
import hashlib
import os

import orjson
from aiohttp import web

from harness.wire.control_plane import (CHECKSUM_PARAMS, CHECKSUM_PREFIX, PAUSE_MODES, RPC_METHODS,
                                        VLLM_WORDS, ControlPlane, Route, fill)

from . import errors
from harness.wire.server_info_rows import SERVER_INFO

from .base import STATE, faults_of, json_ok
from .control import Control, policy_after, policy_of_dir

SLOW_UPDATE = 5.0  # seconds the slow_update fault adds by default


def answer(route: Route, values: dict | None = None) -> web.Response:
    body = fill(route.answer, values or {})
    if isinstance(body, str):  # vLLM's plain-text answers (LoRA) and empty 200s
        return web.Response(status=200, text=body) if body else web.Response(status=200)
    return json_ok(body)


async def _body(request: web.Request):
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return ValueError("Invalid JSON format")


def _query_bool(request, name: str, default: bool):
    v = request.query.get(name)
    if v is None:
        return default
    low = v.lower()
    if low in ("true", "1", "yes", "on", "t", "y"):
        return True
    if low in ("false", "0", "no", "off", "f", "n"):
        return False
    return _invalid(f"query.{name}", "bool_parsing", "Input should be a valid boolean, unable to interpret input", v)


def _invalid(loc: str, kind: str, msg: str, value, ctx: dict | None = None) -> web.Response:
    """One pydantic error, as vLLM's validation handler writes it: the error dict's str(), its input as str()."""
    err = {"type": kind, "loc": loc, "msg": msg, "input": str(value)}
    if ctx:
        err["ctx"] = ctx
    return errors.vllm_error(400, f"1 validation error:\n  {err}", "Bad Request", loc)


def _missing_fields(body: dict, names: tuple[str, ...]) -> web.Response | None:
    """A request model's required fields absent from the body, as pydantic lists them (vLLM's words)."""
    gone = [n for n in names if n not in body]
    if not gone:
        return None
    errs = [{"type": "missing", "loc": f"body.{n}", "msg": "Field required", "input": f"<dict of {len(body)} items>"}
            for n in gone]
    head = "1 validation error" if len(errs) == 1 else f"{len(errs)} validation errors"
    return errors.vllm_error(400, f"{head}:\n  " + "\n  ".join(str(e) for e in errs), "Bad Request",
                             f"body.{gone[0]}")


def _missing(loc: str) -> web.Response:
    return _invalid(loc, "missing", "Field required", None)


def _detail(status: int, message: str) -> web.Response:
    """An HTTPException, as vLLM's handler answers it."""
    return errors.vllm_error(status, message, {400: "Bad Request", 404: "Not Found", 500: "Internal Server Error"}
                             .get(status, "Bad Request"))


async def update_delay(request) -> None:
    active = faults_of(request)
    if "slow_update" in active:
        await asyncio.sleep(active.value("slow_update", SLOW_UPDATE))


class VLLMControl:
    """vLLM's dev-mode routes and prime-rl's (the `vllm` style)."""

    def __init__(self, control: Control, plane: ControlPlane, model: str):
        self.c, self.plane, self.model = control, plane, model

    async def pause(self, request, route):
        if self.plane.mode_in.startswith("fixed:"):
            mode, clear = self.plane.mode_in[6:], self.plane.default_clear_cache
        else:
            mode = request.query.get("mode", self.plane.default_mode)
            if mode not in PAUSE_MODES:
                expected = "'abort', 'wait' or 'keep'"
                return _invalid("query.mode", "literal_error", f"Input should be {expected}", mode,
                                {"expected": expected})
            clear = _query_bool(request, "clear_cache", self.plane.default_clear_cache)
            if isinstance(clear, web.Response):
                return clear
            legacy = _query_bool(request, "wait_for_inflight_requests", False)
            if isinstance(legacy, web.Response):
                return legacy
            if legacy and mode == "abort" and self.plane.route("shutdown_weight_transfer") is None:
                mode = "wait"  # 0.31's deprecated switch
        await self.c.pause(mode, clear, "pause_never_drains" in faults_of(request) and mode == "wait")
        return answer(route)

    async def resume(self, request, route):
        self.c.resume()
        return answer(route)

    async def is_paused(self, request, route):
        return answer(route, {"paused": self.c.paused})

    async def abort_requests(self, request, route):
        body = await _body(request)
        if isinstance(body, ValueError) or body is None:
            return _detail(400, VLLM_WORDS["invalid_json"])
        if not isinstance(body, dict):
            return self._not_object()
        ids = body.get("request_ids") or None
        return answer(route, {"aborted": self.c.abort(list(ids) if ids else None)})

    async def _embedded(self, request, field: str, required: bool, kinds=None):
        """A `Body(embed=True)` field as FastAPI reads it."""
        body = await _body(request)
        if isinstance(body, ValueError):
            return errors.vllm_validation("body", "json_invalid", "JSON decode error", "'<dict of 0 items>'",
                                          {"error": "Expecting value"})
        if not isinstance(body, dict) or field not in body:
            return _missing(f"body.{field}") if required else None
        value = body[field]
        if kinds and not isinstance(value, kinds) and not (value is None and not required):
            name = {str: "string", dict: "dictionary"}.get(kinds if isinstance(kinds, type) else kinds[0], "value")
            kind = {str: "string_type", dict: "dict_type"}.get(kinds if isinstance(kinds, type) else kinds[0], "type")
            return _invalid(f"body.{field}", kind, f"Input should be a valid {name}", value)
        return value

    def _not_object(self) -> web.Response:
        """A body that is not an object: 0.32 says so, 0.31 calls .get on it (recorded)."""
        if self.plane.route("shutdown_weight_transfer") is None:
            return errors.vllm_error(500, VLLM_WORDS["no_get"], "InternalServerError")
        return _detail(400, VLLM_WORDS["not_object"])

    def _op(self, name: str) -> None:
        """Count a weight-transfer operation for /metrics (counted whether it succeeds, as vLLM's timer does)."""
        ops = self.c.capacity.weight_ops
        ops[name] = ops.get(name, 0) + 1

    def _transfer(self, route: Route, op: str) -> web.Response:
        """A weight-transfer call: refused by the worker as on the recorded CPU servers (started without
        weight_transfer_config), unless the fake is started with one."""
        self._op(op)
        if not self.c.weight_transfer:
            return self._rpc_failed(VLLM_WORDS["transfer_not_configured"])
        return answer(route)

    async def init_weight_transfer(self, request, route):
        if self.plane.route("shutdown_weight_transfer") is None:  # 0.31 reads the body itself
            body = await _body(request)
            if isinstance(body, ValueError) or body is None:
                return _detail(400, VLLM_WORDS["invalid_json"])
            if not isinstance(body, dict):
                return self._not_object()
            if body.get("init_info") is None:
                return _detail(400, VLLM_WORDS["missing_init_info_031"])
        else:
            value = await self._embedded(request, "init_info", True, dict)
            if isinstance(value, web.Response):
                return value
        return self._transfer(route, "init")

    async def start_weight_update(self, request, route):
        return self._transfer(route, "start")

    async def start_draft_weight_update(self, request, route):
        return self._transfer(route, "start_draft")

    async def shutdown_weight_transfer(self, request, route):
        self._op("shutdown")
        return answer(route)

    async def update_weights(self, request, route):
        if self.plane.route("shutdown_weight_transfer") is None:
            body = await _body(request)
            if isinstance(body, ValueError) or body is None:
                return _detail(400, VLLM_WORDS["invalid_json"])
            if not isinstance(body, dict):
                return self._not_object()
            if body.get("update_info") is None:
                return _detail(400, VLLM_WORDS["missing_update_info_031"])
            info = body["update_info"]
        else:
            info = await self._embedded(request, "update_info", True, (dict, list))
            if isinstance(info, web.Response):
                return info
        self._op("update")
        if not self.c.weight_transfer:
            return self._rpc_failed(VLLM_WORDS["transfer_not_configured"])
        await update_delay(request)
        if "update_fails" in faults_of(request):
            return self._rpc_failed("injected fault update_fails: the weight transfer failed")
        self.c.set_policy(policy_after(self.c.policy, info))
        return answer(route)

    async def finish_weight_update(self, request, route):
        version = await self._embedded(request, "weight_version", False, str)
        if isinstance(version, web.Response):
            return version
        self._op("finish")
        if not self.c.weight_transfer:
            return self._rpc_failed(VLLM_WORDS["transfer_not_configured"])
        if version is not None and "version_not_applied" not in faults_of(request):
            self.c.set_version(version)
        return answer(route)

    async def update_weight_version(self, request, route):
        version = await self._embedded(request, "new_version", True, str)
        if isinstance(version, web.Response):
            return version
        if "version_not_applied" not in faults_of(request):
            self.c.set_version(version)
        return answer(route, {"version": version})

    async def weight_info(self, request, route):
        return answer(route, {"version": self.c.version})

    async def weight_checker(self, request, route):
        body = await _body(request)
        action = body.get("action") if isinstance(body, dict) else None
        if action not in ("checksum", "reset", "compare"):
            if not isinstance(body, dict) or "action" not in body:
                return _missing("body.action")
            expected = "'checksum', 'reset' or 'compare'"
            return _invalid("body.action", "literal_error", f"Input should be {expected}", action,
                            {"expected": expected})
        if action == "reset":
            return json_ok({"status": "reset"})
        checksums = {CHECKSUM_PREFIX + name: hashlib.sha256(f"{self.c.policy}:{name}".encode()).hexdigest()
                     for name in CHECKSUM_PARAMS}
        if action == "checksum":
            return json_ok({"checksums": checksums})
        baseline = body.get("baseline")
        if baseline is None:
            return _detail(400, VLLM_WORDS["compare_needs_baseline"])
        mismatches = sorted(k for k in checksums.keys() | baseline.keys() if checksums.get(k) != baseline.get(k))
        return json_ok({"match": not mismatches, "mismatches": mismatches})

    async def reset_prefix_cache(self, request, route):
        self.c.clear_caches()
        return answer(route)

    async def collective_rpc(self, request, route):
        body = await _body(request)
        if isinstance(body, ValueError) or body is None:
            return _detail(400, "JSON decode error: Expecting value: line 1 column 1 (char 0)")
        if not isinstance(body, dict):
            return _detail(400, VLLM_WORDS["not_object"])
        method = body.get("method")
        if method is None:
            return _detail(400, VLLM_WORDS["missing_method"])
        if method not in RPC_METHODS:
            return self._rpc_failed(VLLM_WORDS["no_attribute"].format(method=method))
        kwargs = body.get("kwargs") or {}
        args = body.get("args") or []
        path = (kwargs.get("weights_path") or kwargs.get("weight_path")) if isinstance(kwargs, dict) else None
        path = path or (args[0] if isinstance(args, list) and args and isinstance(args[0], str) else None)
        if path:
            await update_delay(request)
            if "update_fails" in faults_of(request):
                return self._rpc_failed("injected fault update_fails: the reload failed")
            if not os.path.isdir(path):  # the worker's reload fails, and leaves the engine dead (recorded)
                self.c.dead = True
                return self._rpc_failed(VLLM_WORDS["weights_dir_missing"].format(path=path))
            self.c.set_policy(policy_of_dir(path))
        return json_ok({"results": [None]})

    @staticmethod
    def _rpc_failed(why: str) -> web.Response:
        return errors.vllm_error(500, VLLM_WORDS["rpc_failed"].format(why=why), "InternalServerError")

    async def server_info(self, request, route):
        env = SERVER_INFO.get(self.plane.name, {"vllm_env": {}, "system_env": {}})
        return json_ok({"vllm_config": f"model='{self.model}', served_model_name='{self.model}'", **env})

    async def sleep(self, request, route):
        level = request.query.get("level", "1")
        self.c.capacity.sleep_level = self.c.sleeping = int(level) if level.isdigit() else 1
        return answer(route, {"level": self.c.sleeping})

    async def wake_up(self, request, route):
        self.c.capacity.sleep_level = self.c.sleeping = 0
        tags = request.query.getall("tags", []) or None
        return answer(route, {"tags": tags})

    async def is_sleeping(self, request, route):
        return answer(route, {"sleeping": self.c.sleeping > 0})

    async def fixed(self, request, route):  # routes whose answer does not depend on the request
        return answer(route)

    # prime-rl
    async def update_weights_dir(self, request, route):
        body = await _body(request)
        path = body.get("weight_dir") if isinstance(body, dict) else None
        await update_delay(request)
        if not isinstance(path, str) or not os.path.isdir(path) or "update_fails" in faults_of(request):
            return self._rpc_failed(VLLM_WORDS["weights_dir_missing"].format(path=path))
        self.c.set_policy(policy_of_dir(path))
        return answer(route)

    async def load_lora(self, request, route, inplace: bool = False):
        body = await _body(request)
        body = body if isinstance(body, dict) else {}
        bad = _missing_fields(body, ("lora_name", "lora_path"))
        if bad:
            return bad
        name, path = body.get("lora_name"), body.get("lora_path")
        if not name or not path:
            return errors.vllm_error(400, VLLM_WORDS["lora_both"], "InvalidUserInput")
        if name == self.model:
            return errors.vllm_error(400, VLLM_WORDS["lora_conflict"].format(name=name), "InvalidUserInput")
        if name in self.c.loras and not (inplace or body.get("load_inplace")):
            return errors.vllm_error(400, VLLM_WORDS["lora_loaded"].format(name=name), "InvalidUserInput")
        if not os.path.isdir(path):
            return errors.vllm_error(404, VLLM_WORDS["lora_path_not_found"].format(name=name, path=path), "NotFoundError")
        lid = self.c.loras[name][2] if name in self.c.loras else next(self.c.lora_ids)
        self.c.loras[name] = (path, policy_of_dir(path), lid)
        return answer(route, {"lora_name": name})

    async def load_lora_inplace(self, request, route):
        return await self.load_lora(request, route, inplace=True)

    async def unload_lora(self, request, route):
        body = await _body(request)
        body = body if isinstance(body, dict) else {}
        bad = _missing_fields(body, ("lora_name",))
        if bad:
            return bad
        name = body.get("lora_name")
        if not name:
            return errors.vllm_error(400, VLLM_WORDS["lora_unload_name"], "InvalidUserInput")
        if name not in self.c.loras:
            return errors.vllm_error(404, VLLM_WORDS["lora_not_found"].format(name=name), "NotFoundError")
        del self.c.loras[name]
        return answer(route, {"lora_name": name})

    def handler(self, route: Route):
        fn = getattr(self, route.action, None) or self.fixed

        async def handle(request):
            return await fn(request, route)

        return handle


def attach(app: web.Application, plane: ControlPlane, handlers) -> None:
    """The plane's routes on `app`, each marked a control path (its faults are drawn apart)."""
    paths = state_of_app(app).control_paths
    for route in plane.routes:
        app.router.add_route(route.method, route.path, handlers.handler(route))
        if plane.body_routes and route.method == "POST":  # (Dynamo's system server takes any method)
            app.router.add_route("GET", route.path, handlers.handler(route))
        paths.add(route.path)


def state_of_app(app: web.Application):
    return app[STATE]
