"""The recorder and replay on the RL control plane: query strings, empty bodies and /metrics text are
recorded in order with the data plane, and replay answers them, telling query parameters apart."""

import asyncio
import json
import threading

import httpx
import pytest
from aiohttp import web

from harness.recording.format import Cassette
from harness.recording.proxy import Recorder, create_proxy_app
from harness.recording.replay import UNMATCHED_STATUS, ReplayIndex, create_replay_app
from harness.serve import AppThread

METRICS = ('# HELP vllm:num_requests_running Number of requests in model execution batches.\n'
           '# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{{engine="0",model_name="m"}} {n}.0\n')


def control_plane_upstream() -> web.Application:
    """A server holding chat answers while paused, as vLLM's dev routes do in keep mode."""
    state = {"resumed": None, "pauses": [], "running": 0}

    async def chat(request):
        body = await request.json()
        state["running"] += 1
        if state["resumed"] is not None:
            await state["resumed"].wait()
        state["running"] -= 1
        return web.json_response({"choices": [{"index": 0, "finish_reason": "stop",
                                               "message": {"role": "assistant", "content": body["messages"][0]["content"]}}]})

    async def pause(request):
        if await request.read():
            return web.json_response({"detail": "no body expected"}, status=400)
        state["pauses"].append(dict(request.query))
        state["resumed"] = state["resumed"] or asyncio.Event()
        return web.json_response({"status": "paused"})

    async def resume(request):
        if state["resumed"] is not None:
            state["resumed"].set()
            state["resumed"] = None
        return web.json_response({"status": "resumed"})

    async def is_paused(request):
        return web.json_response({"is_paused": state["resumed"] is not None})

    async def metrics(request):
        return web.Response(text=METRICS.format(n=state["running"]), content_type="text/plain")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/pause", pause)
    app.router.add_post("/resume", resume)
    app.router.add_get("/is_paused", is_paused)
    app.router.add_get("/metrics", metrics)
    return app


def chat(text: str) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": text}]}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A step recorded through the proxy: a chat held by a keep pause, /metrics, /is_paused, resume."""
    path = tmp_path_factory.mktemp("rl") / "step.yaml"
    with AppThread(control_plane_upstream()) as up:
        rec = Recorder(path, "all", writer="thread")
        with AppThread(create_proxy_app(f"http://127.0.0.1:{up.port}", rec)) as proxy:
            base = f"http://127.0.0.1:{proxy.port}"
            assert httpx.post(base + "/v1/chat/completions", json=chat("before")).status_code == 200
            assert httpx.post(base + "/pause?mode=keep&clear_cache=false").json() == {"status": "paused"}
            held: dict = {}
            worker = threading.Thread(target=lambda: held.update(r=httpx.post(base + "/v1/chat/completions",
                                                                              json=chat("held"), timeout=30)))
            worker.start()
            for _ in range(400):  # until the upstream counts the held request as running
                if "} 1.0" in httpx.get(base + "/metrics").text:
                    break
            assert httpx.get(base + "/is_paused").json() == {"is_paused": True}
            assert httpx.post(base + "/pause?mode=abort").status_code == 200
            assert httpx.post(base + "/resume").json() == {"status": "resumed"}
            worker.join(30)
            assert held["r"].status_code == 200
            assert httpx.get(base + "/is_paused").json() == {"is_paused": False}
    return Cassette.load(path)


def test_control_plane_exchanges_are_recorded_with_their_query_and_empty_bodies(recorded):
    by_path = [(i.method, i.uri.split("/", 3)[3]) for i in recorded.interactions]
    assert ("POST", "pause?mode=keep&clear_cache=false") in by_path
    assert ("POST", "pause?mode=abort") in by_path
    pause = next(i for i in recorded.interactions if i.uri.endswith("mode=keep&clear_cache=false"))
    assert pause.request_body == b"" and pause.response_json() == {"status": "paused"}
    scrapes = [i for i in recorded.interactions if i.path == "/metrics"]
    assert scrapes and all(i.response_body.decode().startswith("# HELP vllm:num_requests_running") for i in scrapes)
    assert any(b"} 1.0" in i.response_body for i in scrapes)  # the held request was running under the pause


def test_control_plane_is_in_arrival_order_with_the_data_plane(recorded):
    """The held chat ends after /resume, but it arrived between the pause and the resume: the
    arrival times keep the step's order, whatever order the answers finished in."""
    order = sorted(recorded.interactions, key=lambda i: i.recorded_at)
    names = [(i.path, (i.request_json() or {}).get("messages", [{}])[0].get("content")) for i in order]
    first = names.index(("/pause", None))
    held = names.index(("/v1/chat/completions", "held"))
    resume = names.index(("/resume", None))
    assert names.index(("/v1/chat/completions", "before")) < first < held < resume
    done = {i.request_json()["messages"][0]["content"]: i.recorded_at + i.duration_ms / 1000
            for i in recorded.interactions if i.path == "/v1/chat/completions"}
    resumed_at = next(i.recorded_at for i in recorded.interactions if i.path == "/resume")
    assert done["held"] >= resumed_at  # answered only once resumed


def test_replay_answers_the_control_plane_matching_query_parameters(recorded):
    with AppThread(create_replay_app(ReplayIndex([recorded]))) as rp:
        base = f"http://127.0.0.1:{rp.port}"
        assert httpx.post(base + "/pause?clear_cache=false&mode=keep").json() == {"status": "paused"}  # any order
        assert httpx.get(base + "/is_paused").json() == {"is_paused": True}  # repeats in recorded order
        assert httpx.get(base + "/is_paused").json() == {"is_paused": False}
        scrape = httpx.get(base + "/metrics")
        assert scrape.status_code == 200 and scrape.headers["content-type"].startswith("text/plain")
        assert scrape.text.startswith("# HELP vllm:num_requests_running")
        miss = httpx.post(base + "/pause?mode=wait")
        assert miss.status_code == UNMATCHED_STATUS
        assert 'query.mode: recorded "abort", now "wait"' in miss.json()["differences"]
        miss = httpx.post(base + "/pause?mode=keep&clear_cache=true")
        assert 'query.clear_cache: recorded "false", now "true"' in miss.json()["differences"]


def test_a_body_where_none_was_recorded_is_named_not_called_identical(recorded):
    with AppThread(create_replay_app(ReplayIndex([recorded]))) as rp:
        miss = httpx.post(f"http://127.0.0.1:{rp.port}/resume", content=json.dumps({"x": 1}))
        assert miss.status_code == UNMATCHED_STATUS
        assert miss.json()["differences"] == ["body differs (not JSON)"]
