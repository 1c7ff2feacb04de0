"""vcrpy interoperability, the harness.vcr preset, the pytest plugin, inspect and repro."""

import json
import subprocess
import sys
from pathlib import Path

import aiohttp
import httpx
import vcr as stock_vcr

from fake_servers.server import FakeConfig, RunningServer
from harness.recording.format import Cassette
from harness.recording.inspect import analyze
from harness.recording.proxy import Recorder, create_proxy_app
from harness.recording.repro import emit_test, parse_chatml, repro_cassette
from harness.serve import AppThread
from harness.vcr import make_vcr

from .conftest import MODEL

BODY = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, "logprobs": True,
        "return_token_ids": True}
REORDERED = b'{"return_token_ids": true, "logprobs": true, "max_tokens": 8,\n "messages": [{"content": "hi", "role": "user"}], "model": "tiny-qwen"}'


def test_preset_records_and_replays_httpx_sync(fake_vllm, tmp_path):
    path = tmp_path / "sync.yaml"
    with make_vcr(record_mode="once").use_cassette(str(path)):
        live = httpx.post(f"{fake_vllm}/chat/completions", json=BODY, headers={"Authorization": "Bearer sk-0123456789abcdefghij"})
    assert "sk-0123456789abcdefghij" not in path.read_text() and "meta:" in path.read_text()
    with make_vcr(record_mode="none").use_cassette(str(path)):
        again = httpx.post(f"{fake_vllm}/chat/completions", content=REORDERED)  # key order, whitespace differ
    assert again.json() == live.json()
    Cassette.load(path)  # our own loader reads what the preset wrote


async def test_preset_with_httpx_async_and_aiohttp(fake_dynamo, tmp_path):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    for name, call in [("httpx_async", _httpx_async), ("aiohttp", _aiohttp)]:
        path = tmp_path / f"{name}.yaml"
        with make_vcr(record_mode="once").use_cassette(str(path)):
            live = await call(f"{fake_dynamo}/chat/completions", body)
        with make_vcr(record_mode="none").use_cassette(str(path)):
            again = await call(f"{fake_dynamo}/chat/completions", body)
        assert again == live, name


async def _httpx_async(url, body):
    async with httpx.AsyncClient() as c:
        return (await c.post(url, json=body)).json()


async def _aiohttp(url, body):
    async with aiohttp.ClientSession() as s:
        async with s.post(url, json=body) as r:
            return await r.json()


def test_stock_vcrpy_loads_proxy_cassettes(fake_vllm_server, tmp_path):
    path = tmp_path / "proxy.yaml"
    rec = Recorder(path, "all")
    with AppThread(create_proxy_app(fake_vllm_server.root_url, rec)) as p:
        live = httpx.post(f"http://127.0.0.1:{p.port}/v1/chat/completions", json=BODY).json()
    uri = Cassette.load(path).interactions[0].uri
    with stock_vcr.VCR(record_mode="none").use_cassette(str(path)):  # stock serializer, stock matchers
        replayed = httpx.post(uri, json=BODY).json()
    assert replayed == live


def test_we_load_cassettes_stock_vcrpy_wrote(fake_vllm_server, tmp_path):
    path = tmp_path / "stock.yaml"
    with stock_vcr.VCR(record_mode="once").use_cassette(str(path)):
        live = httpx.post(f"{fake_vllm_server.root_url}/tokenize", json={"model": MODEL, "prompt": "Hello world"}).content
    cassette = Cassette.load(path)
    assert cassette.interactions[0].response_body == live and cassette.meta == {}
    from harness.recording.replay import ReplayIndex, create_replay_app
    with AppThread(create_replay_app(ReplayIndex([cassette]))) as rp:
        assert httpx.post(f"http://127.0.0.1:{rp.port}/tokenize", json={"model": MODEL, "prompt": "Hello world"}).content == live


PLUGIN_TEST = '''
import httpx
import pytest

@pytest.mark.cassette("recorded/{name}")
def test_through_cassette(cassette_server):
    r = httpx.post(cassette_server.replace("/v1", "") + "/tokenize", json={{"model": "tiny-qwen", "prompt": "Hello world"}})
    assert r.json()["tokens"] == [9707, 1879]
'''


def test_plugin_records_then_replays_offline(pytester, fake_vllm_server):
    pytester.makeini("[pytest]\ntito_cassette_dir = cassettes\n")
    pytester.makepyfile(test_it=PLUGIN_TEST.format(name="tok"))
    missing = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    missing.assert_outcomes(errors=1)
    assert "record it with --record-mode=once" in missing.stdout.str()
    recorded = pytester.runpytest_subprocess("--record-mode=once", f"--record-upstream={fake_vllm_server.root_url}")
    recorded.assert_outcomes(passed=1)
    cassette = pytester.path / "cassettes" / "recorded" / "tok.yaml"
    assert cassette.exists() and "test_through_cassette" in cassette.read_text()
    offline = pytester.runpytest_subprocess()  # default --record-mode=none: replay, no upstream
    offline.assert_outcomes(passed=1)
    refuse = pytester.runpytest_subprocess("--record-mode=all")
    assert "--record-upstream" in refuse.stdout.str()


def test_inspect_names_anomalies(tmp_path):
    faults = [None, "logprobs_one_less", "missing_token_ids", "echo_ids", "experts_wrong_dtype"]
    with RunningServer(FakeConfig(kind="dynamo", moe="2,2,8")) as srv:
        path = tmp_path / "anomalies.yaml"
        rec = Recorder(path, "all")
        with AppThread(create_proxy_app(srv.root_url, rec)) as p:
            for fault in faults:
                httpx.post(f"http://127.0.0.1:{p.port}/v1/chat/completions", headers={"x-fake-fault": fault} if fault else {},
                           json={"model": MODEL, "messages": [{"role": "user", "content": "q"}], "max_tokens": 8,
                                 "logprobs": True, "nvext": {"extra_fields": ["engine_data", "completion_token_ids"]}})
            httpx.post(f"http://127.0.0.1:{p.port}/tokenize", json={})
    report = analyze(Cassette.load(path))
    found = {i: a for i, a in report.anomalies}
    assert 0 not in found and report.rows[0].kind == "mito" and report.rows[0].logprobs == report.rows[0].completion_tokens
    assert "logprob/id length mismatch" in found[1]
    assert "missing completion token ids" in found[2]
    assert "echo differs" in found[3]
    assert "routed experts do not decode" in found[4]
    assert "error 404" in found[5] and report.statuses[404] == 1


def test_inspect_cli(tmp_path):
    bug = Path(__file__).parents[1] / "cassettes" / "bugs" / "dynamo_logprobs_one_short.yaml"
    out = subprocess.run([sys.executable, "-m", "harness.cli", "inspect", str(bug)], capture_output=True, text=True)
    assert out.returncode == 0 and "logprob/id length mismatch" in out.stdout and "1 anomaly" in out.stdout
    js = json.loads(subprocess.run([sys.executable, "-m", "harness.cli", "inspect", str(bug), "--json"],
                                   capture_output=True, text=True).stdout)
    assert js["meta"]["bug"] and len(js["rows"]) == 2


def test_repro_rebuilds_dynamo_turns_without_meta_and_emits_a_passing_test(fake_dynamo_server, tmp_path):
    from harness.client import ClientConfig
    from harness.rollout import run_rollout
    import asyncio
    path = tmp_path / "dyn.yaml"
    rec = Recorder(path, "all")
    with AppThread(create_proxy_app(fake_dynamo_server.root_url, rec)) as p:
        report = asyncio.run(run_rollout(ClientConfig(base_url=f"http://127.0.0.1:{p.port}/v1", model=MODEL,
                                                      renderer_transport="dynamo_chat"), turns=4, max_tokens=48))
    assert "conversation" not in Cassette.load(path).meta  # rebuilt from the requests alone
    repro = repro_cassette(path)
    assert [t.mode for t in repro.turns] == [t.mode for t in report.turns] == ["mito", "tito", "tito", "tito"]
    assert [t.prompt_tokens for t in repro.turns] == [len(t.prompt_ids) for t in report.turns]
    test_file = emit_test(repro, tmp_path / "regress" / "test_dyn.py")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
                         capture_output=True, text=True, cwd=tmp_path)
    assert "1 passed" in run.stdout, run.stdout + run.stderr


def test_parse_chatml_bridge():
    text = ("\n<|im_start|>user\n<tool_response>\nr1\n</tool_response>\n<tool_response>\nr2\n</tool_response><|im_end|>\n"
            "<|im_start|>user\nthanks<|im_end|>\n<|im_start|>assistant\n")
    msgs = parse_chatml(text)
    assert [m["role"] for m in msgs] == ["tool", "tool", "user"] and msgs[1]["content"] == "r2"


def test_repro_cli_on_bug_cassettes():
    for bug in sorted((Path(__file__).parents[1] / "cassettes" / "bugs").glob("*.yaml")):
        out = subprocess.run([sys.executable, "-m", "harness.cli", "repro", str(bug), "--client", "ours"], capture_output=True, text=True)
        assert out.returncode == 0 and "2 turns" in out.stdout, out.stderr
