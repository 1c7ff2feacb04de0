"""The scenario suite behind `harness record-suite` and the replay of real cassettes in CI.

Each scenario drives a server (through the client, or with raw HTTP where the point is the
server's own answer) and returns an *outcome*: per-turn modes and reasons, token continuity,
statuses and error types. Recording stores the outcome in the cassette's `meta`; in CI the same
scenario runs again against a replay server and must reach the same outcome.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

import httpx

from .client import ClientConfig, TitoClient, TitoError
from .rollout import run_rollout

Scenario = Callable[[ClientConfig], Awaitable[dict]]
QUESTION = [{"role": "user", "content": "Name a prime number larger than 10."}]


def _turn(r) -> dict:
    return {"mode": r.mode, "fallback_reason": r.fallback_reason, "finish_reason": r.finish_reason,
            "has_ids": r.completion_ids is not None, "has_logprobs": r.completion_logprobs is not None,
            "tokens_dropped": r.tokens_dropped is not None}


async def single_turn_logprobs(config: ClientConfig) -> dict:
    async with TitoClient(config) as c:
        r = await c.chat(QUESTION, max_tokens=24, top_logprobs=2, seed=11)
    return {"turns": [_turn(r)], "logprobs_match_ids": r.completion_logprobs is None
            or len(r.completion_logprobs) == len(r.completion_ids or [])}


async def rollout_4_turns_tools(config: ClientConfig) -> dict:
    report = await run_rollout(config, turns=4, max_tokens=48, seed=21)
    return {"turns": [_turn(t) for t in report.turns], "continuity": report.continuity_ok()}


async def streaming(config: ClientConfig) -> dict:
    cfg = ClientConfig(**{**config.__dict__, "stream": True})
    report = await run_rollout(cfg, turns=2, max_tokens=32, seed=31)
    return {"turns": [_turn(t) for t in report.turns], "continuity": report.continuity_ok()}


async def truncated_turn(config: ClientConfig) -> dict:
    async with TitoClient(config) as c:
        convo = c.conversation()
        r1 = await convo.turn(QUESTION, max_tokens=1, seed=41)
        r2 = await convo.turn([*QUESTION, r1.message, {"role": "user", "content": "Go on."}], max_tokens=16, seed=42)
    return {"turns": [_turn(r1), _turn(r2)]}


async def _error_of(coro) -> str | None:
    try:
        await coro
    except TitoError as exc:
        return type(exc).__name__
    return None


async def overlong_prompt(config: ClientConfig) -> dict:
    async with TitoClient(config) as c:
        err = await _error_of(c.chat([{"role": "user", "content": "hello " * 2200}], max_tokens=4))
    return {"error": err}


async def unknown_model(config: ClientConfig) -> dict:
    cfg = ClientConfig(**{**config.__dict__, "model": "no-such-model"})
    async with TitoClient(cfg) as c:
        return {"error": await _error_of(c.chat(QUESTION, max_tokens=4))}


async def _raw(config: ClientConfig, method: str, path: str, **kw) -> httpx.Response:
    async with httpx.AsyncClient(timeout=config.timeout) as http:
        return await http.request(method, config.root_url + path, **kw)


def _shape(resp: httpx.Response) -> dict:
    try:
        body = resp.json()
    except ValueError:
        body = None
    keys = sorted(body) if isinstance(body, dict) else None
    return {"status": resp.status_code, "keys": keys}


async def unknown_field(config: ClientConfig) -> dict:
    body = {"model": config.model, "messages": QUESTION, "max_tokens": 4, "definitely_not_a_field": 1}
    return _shape(await _raw(config, "POST", "/v1/chat/completions", json=body))


async def malformed_body(config: ClientConfig) -> dict:
    return _shape(await _raw(config, "POST", "/v1/chat/completions", content=b'{"model": ',
                             headers={"content-type": "application/json"}))


async def tokenize_detokenize(config: ClientConfig) -> dict:
    tok = await _raw(config, "POST", "/tokenize", json={"model": config.model, "messages": QUESTION,
                                                        "add_generation_prompt": True, "return_token_strs": True})
    ids = tok.json().get("tokens", []) if tok.status_code == 200 else []
    detok = await _raw(config, "POST", "/detokenize", json={"model": config.model, "tokens": ids})
    return {"tokenize": _shape(tok), "detokenize": _shape(detok), "count_matches": len(ids) == tok.json().get("count")}


async def vllm_only_keys(config: ClientConfig) -> dict:
    """The keys a vLLM client sends that Dynamo's validator refuses (the client scrubs them)."""
    body = {"model": config.model, "messages": QUESTION, "max_tokens": 4, "return_token_ids": True,
            "priority": 1, "spaces_between_special_tokens": False}
    return _shape(await _raw(config, "POST", "/v1/chat/completions", json=body))


async def extra_fields_variants(config: ClientConfig) -> dict:
    """What each nvext.extra_fields request brings back."""
    out = {}
    for fields in (["engine_data"], ["completion_token_ids"], ["worker_id", "timing"],
                   ["engine_data", "completion_token_ids", "worker_id", "timing"]):
        body = {"model": config.model, "messages": QUESTION, "max_tokens": 8, "logprobs": True,
                "nvext": {"extra_fields": fields}}
        resp = await _raw(config, "POST", "/v1/chat/completions", json=body)
        nvext = resp.json().get("nvext") if resp.status_code == 200 else None
        out["+".join(fields)] = {"status": resp.status_code, "nvext": sorted(nvext) if isinstance(nvext, dict) else None}
    return out


async def token_data_turn(config: ClientConfig) -> dict:
    """A tokens-in turn sent raw: the engine must take nvext.token_data and skip the template."""
    ids = [151644, 872, 198, 9707, 151645, 198, 151644, 77091, 198]  # ChatML for "Hello" + generation prompt
    body = {"model": config.model, "messages": [{"role": "user", "content": ""}], "max_tokens": 8, "logprobs": True,
            "nvext": {"token_data": ids, "extra_fields": ["engine_data", "completion_token_ids"]}}
    resp = await _raw(config, "POST", "/v1/chat/completions", json=body)
    data = resp.json() if resp.status_code == 200 else {}
    nvext = data.get("nvext") or {}
    return {"status": resp.status_code, "usage_counts_sent_ids": (data.get("usage") or {}).get("prompt_tokens") == len(ids),
            "nvext": sorted(nvext), "engine_prompt_is_sent_ids": (nvext.get("engine_data") or {}).get("prompt_token_ids",
                                                                                                     ids) == ids}


async def hostile_inputs(config: ClientConfig) -> dict:
    """The fixed hostile suite (harness/hostile.py), sent raw: each answer's status and error shape."""
    from .hostile import dynamo_suite, vllm_suite

    suite = (vllm_suite(config.model) if config.renderer_transport == "vllm_generate"
             else dynamo_suite(config.model, native_generate=True))
    out = {}
    async with httpx.AsyncClient(timeout=config.timeout) as http:
        for name, path, body in suite:
            resp = await http.post(config.root_url + path, content=body, headers={"content-type": "application/json"})
            out[f"{path} {name}"] = _shape(resp)
    return out


async def native_generate_errors(config: ClientConfig) -> dict:
    """Dynamo's own /inference/v1/generate: a plain answer and the errors it words itself."""
    ids = [151644, 872, 198, 9707, 151645, 198, 151644, 77091, 198]
    sp = {"max_tokens": 8, "logprobs": 1}
    out = {}
    for name, body in (("ok", {"model": config.model, "token_ids": ids, "sampling_params": sp}),
                       ("stream", {"model": config.model, "token_ids": ids, "sampling_params": sp, "stream": True}),
                       ("unknown_model", {"model": "no-such-model", "token_ids": ids, "sampling_params": sp}),
                       ("bad_id", {"model": config.model, "token_ids": [ids[0], 10 ** 7], "sampling_params": sp}),
                       ("too_long", {"model": config.model, "token_ids": [9707] * 2100, "sampling_params": sp}),
                       ("no_sampling_params", {"model": config.model, "token_ids": ids})):
        out[name] = _shape(await _raw(config, "POST", "/inference/v1/generate", json=body))
    return out


ALL = ("vllm_generate", "dynamo_chat", "dynamo_generate")
DYNAMO = ("dynamo_chat", "dynamo_generate")


@dataclass
class Spec:
    name: str
    run: Scenario
    transports: tuple[str, ...] = ALL


SCENARIOS = [Spec("single_turn_logprobs", single_turn_logprobs), Spec("rollout_4_turns_tools", rollout_4_turns_tools),
             Spec("streaming", streaming), Spec("truncated_turn", truncated_turn),
             Spec("tokenize_detokenize", tokenize_detokenize, ("vllm_generate",)),
             Spec("overlong_prompt", overlong_prompt), Spec("unknown_field", unknown_field),
             Spec("unknown_model", unknown_model), Spec("malformed_body", malformed_body),
             Spec("vllm_only_keys", vllm_only_keys), Spec("extra_fields_variants", extra_fields_variants, DYNAMO),
             Spec("token_data_turn", token_data_turn, DYNAMO), Spec("hostile_inputs", hostile_inputs),
             Spec("native_generate_errors", native_generate_errors, ("dynamo_generate",))]
BY_NAME = {s.name: s for s in SCENARIOS}


def scenarios_for(transport: str, only: list[str] | None = None) -> list[Spec]:
    unknown = set(only or []) - set(BY_NAME)
    if unknown:
        raise ValueError(f"unknown scenario(s) {sorted(unknown)}; known: {', '.join(BY_NAME)}")
    return [s for s in SCENARIOS if transport in s.transports and (not only or s.name in only)]


def told_profile(info: dict) -> str | None:
    """A vLLM server's profile from its /version (Dynamo's worker cannot be told from outside)."""
    from harness.wire.profiles import PROFILES

    version = str(info.get("server_version") or "")
    name = f"{info.get('server')}-{'.'.join(version.split('.')[:2])}"
    return name if info.get("server") == "vllm" and name in PROFILES else None


def record_suite(base_url: str, transport: str, model: str, out_dir: str | Path, hardware: str | None = None,
                 only: list[str] | None = None, tokenizer=None, progress=print,
                 profile: str | None = None) -> list[tuple[str, str, str]]:
    """Run every scenario through the recording proxy; one cassette per scenario. A failing
    scenario is reported and the others still run. Each cassette's meta names the server's
    profile (given, or told from /version). Returns [(name, status, detail)]."""
    from .recording.format import Cassette
    from .recording.proxy import Recorder, create_proxy_app, probe_upstream, recording_meta
    from .serve import AppThread

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = asyncio.run(probe_upstream(base_url))
    if profile is not None:
        from harness.wire.profiles import parse_label

        parse_label(profile)  # a ValueError names a label that is not a profile
    profile = profile or told_profile(info)
    if profile is None:
        progress("warning: the server's profile cannot be told from /version; pass --profile, or conformance "
                 "will report these cassettes instead of comparing them")
    specs = scenarios_for(transport, only)
    results = []
    for k, spec in enumerate(specs, 1):
        path = out / f"{spec.name}.yaml"
        meta = recording_meta(base_url, **info, model=model, hardware=hardware, scenario=spec.name, transport=transport,
                              profile=profile)
        meta.pop("upstream", None)
        recorder = Recorder(path, "all", meta=meta)
        progress(f"[{k}/{len(specs)}] {spec.name} ...")
        try:
            with AppThread(create_proxy_app(base_url, recorder)) as proxy:
                config = ClientConfig(base_url=f"http://127.0.0.1:{proxy.port}/v1", model=model,
                                      renderer_transport=transport, tokenizer=tokenizer, max_retries=0)
                outcome = asyncio.run(spec.run(config))
            recorder.flush()
            cassette = Cassette.load(path)
            cassette.meta["outcome"] = outcome
            cassette.save(path)
            results.append((spec.name, "ok", f"{len(cassette.interactions)} exchanges"))
        except Exception as exc:  # report and go on with the next scenario
            results.append((spec.name, "failed", f"{type(exc).__name__}: {exc}"))
        progress(f"    {results[-1][1]}: {results[-1][2]}")
    return results


async def replay_outcome(cassette_path: str | Path) -> tuple[dict, dict]:
    """(recorded outcome, outcome now) for a suite cassette replayed through the client."""
    from .recording.format import Cassette
    from .recording.replay import ReplayIndex, create_replay_app
    from .serve import AppThread

    cassette = Cassette.load(cassette_path)
    meta = cassette.meta
    spec = BY_NAME[meta["scenario"]]
    with AppThread(create_replay_app(ReplayIndex([cassette], repeat="error"))) as srv:
        config = ClientConfig(base_url=f"http://127.0.0.1:{srv.port}/v1", model=meta["model"],
                              renderer_transport=meta["transport"], max_retries=0)
        now = await spec.run(config)
    return meta["outcome"], now
