"""The RL control plane on the fakes: routes per profile, pause semantics with requests in flight (kept in flight
by the fake's own hold, never by a timed window), policy versions, LoRA, /metrics under load, control faults."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from fake_servers.server import FakeConfig, RunningServer
from harness.wire import metrics as wire_metrics
from harness.wire.control_plane import CONTROL_PLANES
from harness.wire.profiles import PROFILES

from .conftest import MODEL

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 40, "ignore_eos": True}
GEN = {"model": MODEL, "token_ids": [1, 2, 3], "sampling_params": {"max_tokens": 12, "ignore_eos": True}}


@pytest.fixture(scope="module")
def servers(tokenizer):
    cfgs = {"vllm": FakeConfig(kind="vllm", dev_mode=True, tokenizer=tokenizer, max_num_seqs=2),
            "vllm31": FakeConfig(kind="vllm", profile="vllm-0.31", dev_mode=True, tokenizer=tokenizer),
            "vllm33": FakeConfig(kind="vllm", profile="vllm-0.33", dev_mode=True, tokenizer=tokenizer),
            "off": FakeConfig(kind="vllm", dev_mode=False, tokenizer=tokenizer),
            "prime": FakeConfig(kind="vllm", profile="prime-rl-5fe1a77", tokenizer=tokenizer),
            "dynamo": FakeConfig(kind="dynamo", enable_rl=True, tokenizer=tokenizer)}
    running = {k: RunningServer(c).start() for k, c in cfgs.items()}
    yield running
    for s in running.values():
        s.stop()


def run(coro):
    return asyncio.run(coro)


async def until(c: httpx.AsyncClient, srv, pred, tries: int = 2000):
    """Poll the fake's own control state until `pred(state)` (counts, never a timed window)."""
    for _ in range(tries):
        st = (await c.get(srv.root_url + "/_fake/control")).json()
        if pred(st):
            return st
        await asyncio.sleep(0.005)
    raise AssertionError(f"never reached: {st}")


def held_at(n: int, count: int):
    return lambda st: len(st["flights"]) == count and all(f["tokens"] == n for f in st["flights"])


async def hold(c, srv, n):
    r = await c.post(srv.root_url + "/_fake/control", json={"hold_after": n})
    assert r.status_code == 200


def test_every_route_of_a_row_is_served_and_dev_mode_switches_them(servers):
    with httpx.Client(timeout=10) as c:
        for key, plane in (("vllm", "vllm-0.32-dev"), ("vllm31", "vllm-0.31-dev"), ("prime", "prime-rl")):
            srv = servers[key]
            for route in CONTROL_PLANES[plane].routes:
                r = c.request(route.method, srv.root_url + route.path)
                assert r.status_code != 404, (key, route.path, r.text)
        off = servers["off"]
        assert c.post(off.root_url + "/pause").json() == {"detail": "Not Found"}
        assert c.get(off.root_url + "/weight_info").status_code == 404
        assert "vllm:num_requests_running" in c.get(off.root_url + "/metrics").text  # served without dev mode
        # 0.32's routes that 0.31 has not
        assert c.post(servers["vllm31"].root_url + "/shutdown_weight_transfer_engine").status_code == 404
        assert c.post(servers["vllm"].root_url + "/shutdown_weight_transfer_engine").json() == {
            "message": "Weight transfer shut down"}


def test_bad_bodies_in_the_servers_words(servers):
    v, v31 = servers["vllm"].root_url, servers["vllm31"].root_url
    with httpx.Client(timeout=10) as c:
        r = c.post(v + "/pause?mode=bogus")
        assert r.status_code == 400 and r.json()["error"]["message"].startswith("1 validation error:")
        assert "literal_error" in r.json()["error"]["message"] and r.json()["error"]["param"] == "query.mode"
        r = c.post(v + "/update_weights", json={})
        assert r.status_code == 400 and "'loc': 'body.update_info'" in r.json()["error"]["message"]
        r = c.post(v31 + "/update_weights", json={})
        assert r.status_code == 400 and r.json()["error"]["message"] == "Missing 'update_info' in request body"
        r = c.post(v + "/update_weight_version", json={"new_version": 7})
        assert r.status_code == 400 and "string_type" in r.json()["error"]["message"]
        r = c.post(v + "/abort_requests", json=[1])
        assert r.status_code == 400 and r.json()["error"]["message"] == "Request body must be a JSON object"
        sys = servers["dynamo"].system_url
        assert c.post(sys + "/engine/pause_generation", json=[1]).json() == {
            "status": "error", "message": "request body must be a JSON object"}
        assert c.post(sys + "/engine/pause_generation", json={"mode": "x"}).json()["message"] == \
            "Invalid mode 'x'; expected keep|wait|abort"
        r = c.post(sys + "/engine/nope", json={})
        assert r.status_code == 404 and r.json() == {"error": "Route not found", "message": "Route /engine/nope not found"}


async def _abort(srv, finish: str, chat_path: str):
    async with httpx.AsyncClient(timeout=30) as c:
        await hold(c, srv, 3)
        whole = asyncio.create_task(c.post(srv.base_url + chat_path, json=CHAT))
        streamed = asyncio.create_task(c.post(srv.base_url + chat_path, json={**CHAT, "stream": True}))
        await until(c, srv, held_at(3, 2))
        if srv.system_url:
            r = await c.post(srv.system_url + "/engine/pause_generation", json={"mode": "abort"})
            assert r.json()["status"] == "ok"
        else:
            assert (await c.post(srv.root_url + "/pause?mode=abort")).json() == {"status": "paused"}
        w, s = await whole, await streamed
        await hold(c, srv, None)
        if srv.system_url:
            await c.post(srv.system_url + "/engine/resume_generation", json={})
        else:
            await c.post(srv.root_url + "/resume")
        return w, s


@pytest.mark.parametrize("key,finish", [("vllm", "abort"), ("dynamo", "stop")])
def test_an_abort_pause_cuts_whole_and_streamed_answers_after_their_tokens(servers, key, finish):
    w, s = run(_abort(servers[key], finish, "/chat/completions"))
    assert w.status_code == 200 and s.status_code == 200
    assert w.json()["choices"][0]["finish_reason"] == finish
    assert w.json()["usage"]["completion_tokens"] == 3
    chunks = [c for c in s.text.split("\n\n") if c.startswith("data: {")]
    assert '"finish_reason":"%s"' % finish in chunks[-1] and s.text.rstrip().endswith("data: [DONE]")


async def _wait_and_held(srv):
    async with httpx.AsyncClient(timeout=30) as c:
        await hold(c, srv, 2)
        first = asyncio.create_task(c.post(srv.base_url + "/chat/completions", json=CHAT))
        await until(c, srv, held_at(2, 1))
        pause = asyncio.create_task(c.post(srv.root_url + "/pause?mode=wait"))
        st = await until(c, srv, lambda st: st["paused"])
        assert not pause.done() and st["flights"][0]["state"] == "running"  # wait drains: nothing answered yet
        late = asyncio.create_task(c.post(srv.base_url + "/chat/completions", json=CHAT))
        await until(c, srv, lambda st: any(f["state"] == "held" for f in st["flights"]))
        await hold(c, srv, None)  # the in-flight one finishes: the pause answers, the late one stays held
        assert (await pause).json() == {"status": "paused"}
        assert (await first).json()["choices"][0]["finish_reason"] == "length"
        st = (await c.get(srv.root_url + "/_fake/control")).json()
        assert [f["state"] for f in st["flights"]] == ["held"] and not late.done()
        await c.post(srv.root_url + "/resume")
        r = await late
        assert r.json()["usage"]["completion_tokens"] == 40


def test_wait_drains_first_and_a_request_sent_while_paused_is_held(servers):
    run(_wait_and_held(servers["vllm"]))


async def _keep_then_update(srv, disk_dir):
    async with httpx.AsyncClient(timeout=30) as c:
        before = (await c.post(srv.root_url + "/inference/v1/generate", json=GEN)).json()["choices"][0]
        await hold(c, srv, 4)
        t = asyncio.create_task(c.post(srv.root_url + "/inference/v1/generate", json=GEN))
        await until(c, srv, held_at(4, 1))
        await c.post(srv.root_url + "/pause?mode=keep")
        st = await until(c, srv, lambda st: st["flights"][0]["state"] == "frozen" or (
            st["paused"] and st["flights"][0]["tokens"] == 4))
        r = await c.post(srv.root_url + "/collective_rpc", json={"method": "reload_weights",
                                                                  "kwargs": {"weights_path": str(disk_dir)}})
        assert r.status_code == 200
        assert (await c.post(srv.root_url + "/update_weight_version", json={"new_version": "step-1"})).json() == {
            "success": True, "new_version": "step-1"}
        await hold(c, srv, None)
        await c.post(srv.root_url + "/resume")
        mixed = (await t).json()["choices"][0]
        after = (await c.post(srv.root_url + "/inference/v1/generate", json=GEN)).json()["choices"][0]
        info = (await c.get(srv.root_url + "/weight_info")).json()
        return before, mixed, after, info


def test_keep_freezes_and_continues_under_the_new_weights(servers, tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"second policy")
    before, mixed, after, info = run(_keep_then_update(servers["vllm"], tmp_path))
    assert info == {"weight_version": "step-1"}
    assert mixed["token_ids"][:4] == before["token_ids"][:4]  # the old policy up to the freeze
    assert mixed["token_ids"][4:] != before["token_ids"][4:]  # the new one after it
    assert mixed["weight_versions"] == [{"version": "default", "start": 0, "end": 4},
                                        {"version": "step-1", "start": 4, "end": 12}]
    assert after["token_ids"] != before["token_ids"] and after["weight_versions"][0]["version"] == "step-1"


def test_an_update_from_disk_derives_the_policy_from_the_directory(servers, tmp_path):
    srv = servers["prime"]
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "w.bin").write_bytes(b"one")
    (b / "w.bin").write_bytes(b"two")
    with httpx.Client(timeout=10) as c:
        answers = []
        for d in (a, b, a):
            assert c.post(srv.root_url + "/update_weights", json={"weight_dir": str(d)}).json() == {"status": "ok"}
            answers.append(c.post(srv.base_url + "/chat/completions", json=CHAT).json()["choices"][0]["message"])
        assert answers[0] != answers[1] and answers[0] == answers[2]  # deterministic per checkpoint
        r = c.post(srv.root_url + "/update_weights", json={"weight_dir": str(tmp_path / "missing")})
        assert r.status_code == 500 and r.json()["error"]["message"].startswith("Call to collective_rpc method failed")
        assert c.post(srv.root_url + "/pause").json() == {"status": "paused"}  # prime-rl: always keep
        assert srv.control.mode == "keep"
        assert c.post(srv.root_url + "/resume").json() == {"status": "resumed"}


def test_dynamo_versions_discovery_and_cache_flush(servers, tmp_path):
    srv = servers["dynamo"]
    (tmp_path / "w.bin").write_bytes(b"x")
    long_chat = {**CHAT, "max_tokens": 5, "messages": [{"role": "user", "content": "word " * 300}]}
    with httpx.Client(timeout=10) as c:
        workers = c.get(srv.rl_url + "/v1/rl/workers").json()["workers"]
        assert workers[0]["system_url"] == srv.system_url and "pause_generation" in workers[0]["routes"]
        sys = workers[0]["system_url"]
        assert c.post(sys + "/engine/get_weight_version", json={}).json() == {
            "status": "ok", "version": None, "version_declared": False}
        r = c.post(sys + "/engine/update_weights_from_disk", json={"model_path": str(tmp_path)}).json()
        assert r["status"] == "error" and r["message"].startswith("Worker must be paused")
        c.post(srv.base_url + "/chat/completions", json=long_chat)
        assert c.post(srv.base_url + "/chat/completions", json=long_chat).json()["usage"][
            "prompt_tokens_details"]["cached_tokens"] > 0
        assert c.post(sys + "/engine/pause_generation", json={}).json()["mode"] == "keep"
        assert c.post(sys + "/engine/update_weights_from_disk", json={"model_path": str(tmp_path),
                                                                     "weight_version": "step-9"}).json() == {
            "status": "ok", "version": "step-9", "version_declared": True}
        c.post(sys + "/engine/resume_generation", json={})
        assert c.post(srv.base_url + "/chat/completions", json=long_chat).json()["usage"][
            "prompt_tokens_details"]["cached_tokens"] == 0  # the update flushed the cache
        assert c.post(sys + "/engine/get_weight_version", json={}).json()["version"] == "step-9"
        gone = c.get(srv.rl_url + "/v1/rl/workers", headers={"x-fake-fault": "worker_gone"}).json()
        assert gone["workers"] == []
        # a reload from a directory that is not there breaks the worker: the frontend answers 503 (recorded)
        c.post(sys + "/engine/pause_generation", json={})
        r = c.post(sys + "/engine/update_weights_from_disk", json={"model_path": str(tmp_path / "no")}).json()
        assert r["status"] == "error" and "Repo id must be in the form" in r["message"]
        c.post(sys + "/engine/resume_generation", json={})
        r = c.post(srv.base_url + "/chat/completions", json=long_chat)
        assert r.status_code == 503 and r.json() == {"message": "Service temporarily unavailable",
                                                     "type": "Service Unavailable", "code": 503}
        srv.control.dead = False  # (the module's other tests use this fake)


def test_lora_adapters_are_listed_and_serve_their_own_policy(servers, tmp_path):
    srv = servers["vllm"]
    # vLLM's runtime LoRA routes are prime-rl's; this profile has none
    prime = servers["prime"]
    (tmp_path / "adapter_model.safetensors").write_bytes(b"lora")
    with httpx.Client(timeout=10) as c:
        r = c.post(prime.root_url + "/v1/load_lora_adapter", json={"lora_name": "ad", "lora_path": str(tmp_path)})
        assert r.status_code == 200 and r.text == "Success: LoRA adapter 'ad' added successfully."
        r = c.post(prime.root_url + "/v1/load_lora_adapter", json={"lora_name": "ad", "lora_path": str(tmp_path)})
        assert r.status_code == 400 and "has already been loaded" in r.json()["error"]["message"]
        ids = [m["id"] for m in c.get(prime.base_url + "/models").json()["data"]]
        assert ids == [MODEL, "ad"]
        base = c.post(prime.base_url + "/chat/completions", json=CHAT).json()["choices"][0]["message"]["content"]
        lora = c.post(prime.base_url + "/chat/completions", json={**CHAT, "model": "ad"}).json()
        assert lora["choices"][0]["message"]["content"] != base
        assert c.post(prime.root_url + "/v1/unload_lora_adapter", json={"lora_name": "ad"}).status_code == 200
        r = c.post(prime.root_url + "/v1/unload_lora_adapter", json={"lora_name": "ad"})
        assert r.status_code == 404 and r.json()["error"]["message"] == "The lora adapter 'ad' cannot be found."
        assert c.post(prime.base_url + "/chat/completions", json={**CHAT, "model": "ad"}).status_code == 404
        assert c.post(srv.root_url + "/v1/load_lora_adapter", json={}).status_code == 404


async def _metrics_under_load(srv):
    async with httpx.AsyncClient(timeout=30) as c:
        await hold(c, srv, 2)
        tasks = [asyncio.create_task(c.post(srv.base_url + "/chat/completions", json=CHAT)) for _ in range(4)]
        await until(c, srv, lambda st: len(st["flights"]) == 4 and sorted(f["state"] for f in st["flights"]) == [
            "running", "running", "waiting", "waiting"] and all(
            f["tokens"] == 2 for f in st["flights"] if f["state"] == "running"))
        loaded = (await c.get(srv.root_url + "/metrics")).text
        await hold(c, srv, None)
        await asyncio.gather(*tasks)
        rest = (await c.get(srv.root_url + "/metrics")).text
        return loaded, rest


def _value(text: str, name: str) -> float:
    line = next(ln for ln in text.splitlines() if ln.startswith(name + "{"))
    return float(line.rsplit(" ", 1)[1])


def test_metrics_move_under_load_with_max_num_seqs(servers):
    loaded, rest = run(_metrics_under_load(servers["vllm"]))  # max_num_seqs=2: two run, two wait
    assert _value(loaded, "vllm:num_requests_running") == 2
    assert _value(loaded, "vllm:num_requests_waiting") == 2
    assert _value(loaded, "vllm:kv_cache_usage_perc") > 0
    assert _value(rest, "vllm:num_requests_running") == 0 and _value(rest, "vllm:kv_cache_usage_perc") == 0
    assert _value(rest, "vllm:generation_tokens_total") >= 4 * 40


def test_metrics_families_are_the_profiles_rows(servers):
    with httpx.Client(timeout=10) as c:
        for key in ("vllm", "vllm31", "dynamo"):
            srv = servers[key]
            got = wire_metrics.parse_families(c.get(srv.root_url + "/metrics").text)
            want = wire_metrics.METRIC_SETS[PROFILES[srv.cfg.profile or ("vllm-0.32" if key == "vllm" else
                                                                         "dynamo-1.6.1")].metrics]
            expected, lazy = {}, set()
            for f in want:
                name = f.name + "_total" if f.type == "counter" and f.suffix else f.name
                expected[name] = (f.type, frozenset(f.labels))
                if f.created:
                    expected[f.name + "_created"] = ("gauge", frozenset(f.labels))
                if f.lazy:  # (registered on first use)
                    lazy |= {name, f.name + "_created"}
            assert {k: v for k, v in got.items() if k not in lazy} == {k: v for k, v in expected.items() if k not in lazy}
            assert all(expected[k] == v for k, v in got.items())


def test_metrics_equal_the_recorded_real_server(servers):
    """Every family of real vLLM 0.32's /metrics (scraped in dev mode, tests/data), with its type and label names,
    and no other, in the same order."""
    from pathlib import Path

    recorded = (Path(__file__).parent / "data" / "real_metrics_vllm-0.32.txt").read_text()
    srv = servers["vllm"]
    httpx.post(srv.root_url + "/start_weight_update", timeout=10)  # a weight operation registers two more families
    fake = httpx.get(srv.root_url + "/metrics", timeout=10).text
    lazy = {"vllm:rl_weight_update_operation_duration_seconds", "vllm:rl_weight_update_operation_duration_seconds_created",
            "vllm:rl_weight_update_operations_in_flight"}  # (the recorded scrape was taken before any operation ran)
    got = wire_metrics.parse_families(fake)
    assert lazy <= set(got) and got["vllm:rl_weight_update_operations_in_flight"] == ("gauge", frozenset({"operation"}))
    assert {k: v for k, v in got.items() if k not in lazy} == wire_metrics.parse_families(recorded)
    order = [ln.split(" ")[2] for ln in recorded.splitlines() if ln.startswith("# TYPE")]
    assert [ln.split(" ")[2] for ln in fake.splitlines() if ln.startswith("# TYPE") and ln.split(" ")[2] not in lazy] == order


def test_control_faults_fire_on_control_routes_only(servers, tmp_path):
    srv = servers["vllm"]
    with httpx.Client(timeout=10) as c:
        srv.set_faults(["version_not_applied*1"])
        assert c.post(srv.base_url + "/chat/completions", json=CHAT).status_code == 200  # not spent on answers
        before = srv.control.version
        assert c.post(srv.root_url + "/update_weight_version", json={"new_version": "x"}).json()["success"] is True
        assert c.get(srv.root_url + "/weight_info").json() == {"weight_version": before}
        srv.set_faults([])
        r = c.post(srv.root_url + "/update_weights", json={"update_info": {}}, headers={"x-fake-fault": "update_fails"})
        assert r.status_code == 500 and r.json()["error"]["type"] == "InternalServerError"
    run(_never_drains(srv))


async def _never_drains(srv):
    async with httpx.AsyncClient(timeout=30) as c:
        pause = asyncio.create_task(c.post(srv.root_url + "/pause?mode=wait",
                                           headers={"x-fake-fault": "pause_never_drains"}))
        await until(c, srv, lambda st: st["paused"])
        assert not pause.done()  # nothing in flight, and still no answer
        await c.post(srv.root_url + "/resume")
        assert (await pause).status_code == 200


def test_a_reload_from_a_missing_directory_leaves_the_vllm_engine_dead(servers):
    srv = servers["vllm31"]
    with httpx.Client(timeout=10) as c:
        r = c.post(srv.root_url + "/collective_rpc", json={"method": "reload_weights",
                                                          "kwargs": {"weights_path": "/nonexistent/model-dir"}})
        assert r.status_code == 500 and "Repo id must be in the form" in r.json()["error"]["message"]
        chat = c.post(srv.base_url + "/chat/completions", json=CHAT)
        assert chat.status_code == 500 and chat.json()["error"]["message"] == (
            "EngineCore encountered an issue. See stack trace (above) for the root cause.")
        assert c.get(srv.root_url + "/health").status_code == 503
    srv.control.dead = False  # (the module's other tests use this fake)


def test_vllm_033_refuses_new_requests_while_paused_in_abort_and_wait_and_keeps_them_in_keep(servers):
    srv = servers["vllm33"]
    with httpx.Client(timeout=10) as c:
        for mode in ("abort", "wait"):
            assert c.post(srv.root_url + f"/pause?mode={mode}").json() == {"status": "paused"}
            r = c.post(srv.base_url + "/chat/completions", json=CHAT)
            assert r.status_code == 503 and r.json()["error"] == {
                "message": "Generation is paused. Please retry after it resumes.", "type": "ServiceUnavailableError",
                "param": None, "code": 503}
            c.post(srv.root_url + "/resume")
    run(_held_in_keep(srv))


async def _held_in_keep(srv):
    async with httpx.AsyncClient(timeout=30) as c:
        await c.post(srv.root_url + "/pause?mode=keep")
        late = asyncio.create_task(c.post(srv.base_url + "/chat/completions", json=CHAT))
        await until(c, srv, lambda st: [f["state"] for f in st["flights"]] == ["held"])
        await c.post(srv.root_url + "/resume")
        assert (await late).status_code == 200


def test_weight_versions_on_choices_from_vllm_033_when_asked(servers):
    with httpx.Client(timeout=10) as c:
        asked = {**CHAT, "max_tokens": 5, "return_weight_versions": True}
        new = c.post(servers["vllm33"].base_url + "/chat/completions", json=asked).json()["choices"][0]
        version = servers["vllm33"].control.version
        assert new["weight_versions"] == [{"version": version, "start": 0, "end": 5}]
        plain = c.post(servers["vllm33"].base_url + "/chat/completions", json={**asked, "return_weight_versions": False})
        assert plain.json()["choices"][0]["weight_versions"] is None
        old = c.post(servers["vllm"].base_url + "/chat/completions", json={**CHAT, "max_tokens": 5}).json()["choices"][0]
        assert "weight_versions" not in old  # 0.32's chat choices have no such field
        done = [ln for ln in c.post(servers["vllm33"].base_url + "/chat/completions", json={**asked, "stream": True})
                .text.split("\n\n") if '"finish_reason":"length"' in ln]
        assert len(done) == 1 and '"weight_versions":[{"version"' in done[0]


async def _abort_one(srv):
    async with httpx.AsyncClient(timeout=30) as c:
        await hold(c, srv, 2)
        mine = asyncio.create_task(c.post(srv.base_url + "/chat/completions", json=CHAT, headers={"X-Request-Id": "r-1"}))
        other = asyncio.create_task(c.post(srv.base_url + "/chat/completions", json=CHAT, headers={"X-Request-Id": "r-2"}))
        await until(c, srv, held_at(2, 2))
        r = await c.post(srv.root_url + "/abort_requests", json={"request_ids": ["r-1"]})
        assert r.json() == {"status": "aborted", "aborted": 1}
        assert (await mine).json()["choices"][0]["finish_reason"] == "abort"
        assert not other.done() and not (await c.get(srv.root_url + "/is_paused")).json()["is_paused"]
        await hold(c, srv, None)
        assert (await other).json()["choices"][0]["finish_reason"] == "length"


def test_abort_requests_aborts_the_named_request_without_pausing(servers):
    run(_abort_one(servers["vllm"]))


def test_sleep_and_wake_show_in_the_sleep_state_metric(servers):
    srv = servers["vllm"]
    with httpx.Client(timeout=10) as c:
        assert c.post(srv.root_url + "/sleep?level=2").json() == {"status": "sleeping", "level": 2}
        assert c.get(srv.root_url + "/is_sleeping").json() == {"is_sleeping": True}
        text = c.get(srv.root_url + "/metrics").text
        assert 'vllm:engine_sleep_state{engine="0",model_name="tiny-qwen",sleep_state="discard_all"} 1.0' in text
        assert c.post(srv.root_url + "/wake_up").json() == {"status": "awake", "tags": None}
        assert c.get(srv.root_url + "/is_sleeping").json() == {"is_sleeping": False}
        v31 = servers["vllm31"].root_url  # 0.31 answers these with an empty 200
        r = c.post(v31 + "/sleep")
        assert r.status_code == 200 and r.content == b""
        assert c.post(v31 + "/wake_up").content == b""


def test_a_failed_dynamo_update_keeps_the_policy(servers, tmp_path):
    srv = servers["dynamo"]
    sys = srv.system_url
    with httpx.Client(timeout=10) as c:
        c.post(sys + "/engine/pause_generation", json={"mode": "wait"})
        policy = srv.control.policy
        r = c.post(sys + "/engine/update_weights_from_disk", json={"model_path": str(tmp_path)},
                   headers={"x-fake-fault": "update_fails"}).json()
        assert r["status"] == "error" and r["message"].startswith("Call to collective_rpc method failed: ")
        assert srv.control.policy == policy
        r = c.post(sys + "/engine/update_weights_from_distributed", json={"allow_unpaused": True}).json()
        assert r == {"status": "error", "message": "Unpaused weight updates cannot reset the prefix cache. Set "
                     "'reset_prefix_cache' to false or pause generation first."}
        assert c.post(sys + "/engine/update_weights_from_distributed", json={"weight_version": "d1"}).json() == {
            "status": "ok", "version": "d1", "version_declared": True}
        assert srv.control.policy != policy
        assert c.post(sys + "/engine/update_weights_from_tensor", json={}).json() == {
            "status": "error", "message": "update_weights_from_tensor is not implemented"}
        c.post(sys + "/engine/resume_generation", json={})
