"""Recording proxy, scrubbing, cassette format, replay server."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import httpx
import pytest

from fake_servers.server import FakeConfig, RunningServer
from harness.recording.format import Cassette, CassetteError, Interaction
from harness.recording.journal import journal_dir
from harness.recording.proxy import Recorder, create_proxy_app
from harness.recording.replay import UNMATCHED_STATUS, ReplayIndex, create_replay_app
from harness.serve import AppThread

from .conftest import MODEL, kill_mid_traffic

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16, "logprobs": True,
        "return_token_ids": True}


def proxy(upstream_root: str, path: Path, mode="all", **kw) -> tuple[AppThread, Recorder]:
    rec = Recorder(path, mode, **kw)
    return AppThread(create_proxy_app(upstream_root, rec)), rec


def replay(*cassettes, **kw) -> AppThread:
    return AppThread(create_replay_app(ReplayIndex(list(cassettes), **kw)))


@pytest.fixture(scope="module")
def moe_vllm():
    with RunningServer(FakeConfig(kind="vllm", moe="2,2,8")) as srv:
        yield srv


SECRETS = ["sk-live-ABCDEFGHIJKLMNOPQRSTUVWX", "hf_abcdefghijklmnopqrstuvwxyz", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ",
           "session-cookie-value-123456", "query-token-98765432", "nvapi-secretsecretsecretsecret12"]


def test_no_secret_reaches_the_cassette(fake_vllm_server, tmp_path):
    path = tmp_path / "secrets.yaml"
    p, rec = proxy(fake_vllm_server.root_url, path)
    body = {**CHAT, "messages": [{"role": "user", "content": f"my key is {SECRETS[0]} and {SECRETS[1]}"}],
            "metadata": {"api_key": "plainapikey1234567890"}, "user": SECRETS[5]}
    with p:
        r = httpx.post(f"http://127.0.0.1:{p.port}/v1/chat/completions?api_key={SECRETS[4]}&foo=bar", json=body,
                       headers={"Authorization": SECRETS[2], "x-api-key": SECRETS[0], "Cookie": SECRETS[3],
                                "X-Custom-Token": "customtoken123456"})
        assert r.status_code == 200
    text = path.read_text()
    for secret in [*SECRETS, "plainapikey1234567890", "customtoken123456", "eyJhbGciOiJIUzI1NiJ9"]:
        assert secret not in text, secret
    assert text.count("<SCRUBBED>") >= 7 and "foo=bar" in text
    # the scrubbed cassette still replays the request (headers and secret query values are not matched)
    with replay(Cassette.load(path)) as rp:
        again = httpx.post(f"http://127.0.0.1:{rp.port}/v1/chat/completions?api_key=other&foo=bar",
                           json={**body, "messages": [{"role": "user", "content": "my key is <SCRUBBED> and <SCRUBBED>"}],
                                 "metadata": {"api_key": "<SCRUBBED>"}, "user": "<SCRUBBED>"})
        assert again.status_code == 200


def test_extra_scrub_patterns(fake_vllm_server, tmp_path):
    from harness.recording.scrub import Scrubber
    path = tmp_path / "extra.yaml"
    p, rec = proxy(fake_vllm_server.root_url, path, scrubber=Scrubber(extra_patterns=[r"ACME-\d{6}"]))
    with p:
        httpx.post(f"http://127.0.0.1:{p.port}/tokenize", json={"model": MODEL, "prompt": "ticket ACME-123456"})
    assert "ACME-123456" not in path.read_text()


def test_replay_is_byte_identical_including_streams_and_routed_experts(moe_vllm, tmp_path):
    path = tmp_path / "bytes.yaml"
    requests = [("POST", "/v1/chat/completions", CHAT),
                ("POST", "/v1/chat/completions", {**CHAT, "stream": True, "stream_options": {"include_usage": True}}),
                ("POST", "/tokenize", {"model": MODEL, "prompt": "Grüße 世界"}),
                ("GET", "/v1/models", None),
                ("POST", "/v1/chat/completions", {"model": "nope", "messages": []})]
    p, _ = proxy(moe_vllm.root_url, path)
    with p:
        live = [httpx.request(m, f"http://127.0.0.1:{p.port}{u}", json=b).content for m, u, b in requests]
    cassette = Cassette.load(path)
    assert [i.status for i in cassette.interactions] == [200, 200, 200, 200, 404]
    chunks = cassette.interactions[1].chunks
    assert chunks and sum(chunks) == len(cassette.interactions[1].response_body)
    with replay(cassette) as rp:
        again = [httpx.request(m, f"http://127.0.0.1:{rp.port}{u}", json=b).content for m, u, b in requests]
    assert again == live
    assert b'"routed_experts":"' in live[0]  # upstream vLLM's base64 .npy string
    text = path.read_text()
    assert '"role": "user"' in text and '"prompt_token_ids": [151644' in text  # readable: one key per line


async def test_stream_replayed_with_the_recorded_chunking(tmp_path):
    path = tmp_path / "sse.yaml"
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 12, "stream": True,
            "logprobs": True, "nvext": {"extra_fields": ["engine_data", "completion_token_ids"]}}
    with RunningServer(FakeConfig(kind="dynamo", per_token=0.01)) as srv:  # tokens arrive 10 ms apart
        p, _ = proxy(srv.root_url, path)
        with p:
            httpx.post(f"http://127.0.0.1:{p.port}/v1/chat/completions", json=body)
    recorded = Cassette.load(path).interactions[0]
    assert recorded.is_stream() and sum(recorded.chunks) == len(recorded.response_body)
    assert len(recorded.chunks) >= 5
    with replay(Cassette.load(path)) as rp:
        async with aiohttp.ClientSession() as s:
            async with s.post(f"http://127.0.0.1:{rp.port}/v1/chat/completions", json=body) as r:
                sizes, buf = [], b""
                async for data, end in r.content.iter_chunks():
                    buf += data
                    if end and buf:  # (the zero-length chunk that ends a chunked body is not data)
                        sizes.append(len(buf))
                        buf = b""
    assert sizes == recorded.chunks


async def test_hundreds_of_concurrent_exchanges_none_lost_or_interleaved(fake_vllm_server, tokenizer, tmp_path):
    path = tmp_path / "many.yaml"
    p, rec = proxy(fake_vllm_server.root_url, path)
    n = 300
    with p:
        limits = httpx.Limits(max_connections=n)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            rs = await asyncio.gather(*[client.post(f"http://127.0.0.1:{p.port}/tokenize",
                                                    json={"model": MODEL, "prompt": f"request number {k}"})
                                        for k in range(n)])
        assert all(r.status_code == 200 for r in rs)
    cassette = Cassette.load(path)
    assert len(cassette.interactions) == n == rec.recorded and rec.write_errors == 0
    seen = set()
    for i in cassette.interactions:
        prompt = i.request_json()["prompt"]
        assert i.response_json()["tokens"] == tokenizer.encode(prompt)  # each answer with its own request
        seen.add(prompt)
    assert len(seen) == n


@pytest.fixture
def record_cli(request):
    """Start `harness record` on a free port; the process never outlives the test."""
    procs = []

    def start(upstream, cassette, *extra):
        proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "record", "--upstream", upstream, "--cassette",
                                 str(cassette), "--port", "0", *extra], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        line = proc.stdout.readline()
        port = int(line.split("send traffic to http://127.0.0.1:")[1].split("/")[0])
        return proc, port

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signals_flush_and_exit_cleanly(fake_vllm_server, tmp_path, sig, record_cli):
    cassette = tmp_path / "sig.yaml"
    proc, port = record_cli(fake_vllm_server.root_url, cassette, "--hardware", "test box")
    for k in range(5):
        assert httpx.post(f"http://127.0.0.1:{port}/tokenize", json={"model": MODEL, "prompt": str(k)}).status_code == 200
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "5 exchanges recorded" in out and "#5 POST /tokenize -> 200" in err  # a line per exchange
    c = Cassette.load(cassette)
    assert len(c.interactions) == 5 and c.meta["hardware"] == "test box" and c.meta["server"] == "vllm"


@pytest.mark.parametrize("target", ["process", "group"])
def test_kill_9_loses_no_answered_exchange(fake_vllm_server, tmp_path, target):
    """kill -9 of the recorder (or of its whole process group, writer included, as an OOM kill of a
    container does) mid-traffic: every exchange whose answer reached a client is in the cassette
    when it is next loaded (from the journal), and the file is whole."""
    cassette = tmp_path / "killed.yaml"
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "record", "--upstream", fake_vllm_server.root_url,
                             "--cassette", str(cassette), "--port", "0", "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        port = int(proc.stdout.readline().split("send traffic to http://127.0.0.1:")[1].split("/")[0])
        answered = []

        def send(client, k, n):
            prompt = f"t{k}-{n}"
            r = client.post(f"http://127.0.0.1:{port}/tokenize", timeout=30, json={"model": MODEL, "prompt": prompt})
            if r.status_code == 200:
                answered.append(prompt)
            return r.status_code

        killer = proc.kill if target == "process" else (lambda: os.killpg(proc.pid, signal.SIGKILL))
        kill_mid_traffic(proc, send, 60, threads=8, kill=killer)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    c = Cassette.load(cassette)  # the journal of the interrupted recording goes in on load
    recorded = {json.loads(i.request_body)["prompt"] for i in c.interactions}
    assert len(answered) > 50
    assert set(answered) - recorded == set()  # not one answered exchange lost
    assert not journal_dir(cassette).exists()  # recovered: the journal is gone
    assert [f for f in os.listdir(tmp_path) if f.endswith(".tmp")] == []


def test_a_live_recording_is_not_recovered_under_it(fake_vllm_server, tmp_path):
    path = tmp_path / "live.yaml"
    rec = Recorder(path, "all", writer="thread")
    try:
        with AppThread(create_proxy_app(fake_vllm_server.root_url, rec)) as p:
            httpx.post(f"http://127.0.0.1:{p.port}/tokenize", json={"model": MODEL, "prompt": "a"})
            assert rec.wait_written(10)
            assert journal_dir(path).exists()
            assert len(Cassette.load(path).interactions) == 1  # read while recording: the journal stays
            assert journal_dir(path).exists()
            with pytest.raises(CassetteError, match="another recorder is recording into"):
                Recorder(path, "all")
    finally:
        rec.close()
    assert not journal_dir(path).exists()  # a clean stop leaves no journal


def test_no_secret_reaches_the_journal(fake_vllm_server, tmp_path):
    path = tmp_path / "secret.yaml"
    rec = Recorder(path, "all", writer="thread")
    with AppThread(create_proxy_app(fake_vllm_server.root_url, rec)) as p:
        httpx.post(f"http://127.0.0.1:{p.port}/tokenize?api_key=SEKRIT-QUERY-123",
                   headers={"Authorization": "Bearer SEKRIT-HEADER-1234567"},
                   json={"model": MODEL, "prompt": "my key is sk-SEKRITBODY1234567890abcdef"})
        journal = b"".join(f.read_bytes() for f in journal_dir(path).glob("*.tj"))
        assert b"/tokenize" in journal  # the exchange is there ...
        for secret in (b"SEKRIT-QUERY", b"SEKRIT-HEADER", b"SEKRITBODY"):
            assert secret not in journal  # ... without its secrets


def test_a_cut_off_cassette_says_where_and_recover_keeps_the_whole_part(fake_vllm_server, tmp_path):
    path = tmp_path / "cut.yaml"
    p, rec = proxy(fake_vllm_server.root_url, path, mode="all")
    with p:
        for k in range(3):
            httpx.post(f"http://127.0.0.1:{p.port}/tokenize", json={"model": MODEL, "prompt": f"c{k}"})
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 40])  # cut inside the last interaction
    with pytest.raises(CassetteError, match=r"is cut off .* ends at byte \d+, inside interaction 3; the 2 before it are whole"):
        Cassette.load(path)
    r = subprocess.run([sys.executable, "-m", "harness.cli", "cassette", "recover", str(path)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert "2 whole interactions kept" in r.stdout
    assert [json.loads(i.request_body)["prompt"] for i in Cassette.load(path).interactions] == ["c0", "c1"]


def test_record_modes(fake_vllm_server, tmp_path):
    path = tmp_path / "modes.yaml"
    p, _ = proxy(fake_vllm_server.root_url, path, mode="once")
    with p:
        httpx.post(f"http://127.0.0.1:{p.port}/tokenize", json={"model": MODEL, "prompt": "a"})
    with pytest.raises(CassetteError, match="mode 'once' never overwrites"):
        Recorder(path, "once")
    p, rec = proxy(fake_vllm_server.root_url, path, mode="new_episodes")
    before = fake_vllm_server.state.requests
    with p:
        httpx.post(f"http://127.0.0.1:{p.port}/tokenize", json={"model": MODEL, "prompt": "a"})  # from the cassette
        httpx.post(f"http://127.0.0.1:{p.port}/tokenize", json={"model": MODEL, "prompt": "b"})  # new: recorded
    assert fake_vllm_server.state.requests == before + 1
    assert [i.request_json()["prompt"] for i in Cassette.load(path).interactions] == ["a", "b"]
    p, _ = proxy(fake_vllm_server.root_url, path, mode="all")
    with p:
        httpx.post(f"http://127.0.0.1:{p.port}/tokenize", json={"model": MODEL, "prompt": "c"})
    assert [i.request_json()["prompt"] for i in Cassette.load(path).interactions] == ["c"]


def _tokenize_cassette(answers):
    inters = [Interaction("POST", "http://x/tokenize", {}, json.dumps({"model": MODEL, "prompt": p}).encode(), 200, "OK",
                          {"Content-Type": ["application/json"]}, json.dumps(a).encode()) for p, a in answers]
    return Cassette(inters)


def test_matching_ignores_key_order_and_whitespace_and_replays_repeats_in_order():
    c = _tokenize_cassette([("a", {"n": 1}), ("a", {"n": 2}), ("b", {"n": 3})])
    for policy, expected in [("last", [1, 2, 2, 2]), ("cycle", [1, 2, 1, 2]), ("error", [1, 2, None, None])]:
        with replay(c, repeat=policy) as rp:
            got = []
            for _ in range(4):
                r = httpx.post(f"http://127.0.0.1:{rp.port}/tokenize",
                               content=b'{ "prompt" : "a",\n "model": "tiny-qwen" }')
                got.append(r.json().get("n") if r.status_code == 200 else None)
        assert got == expected, policy


def test_unmatched_request_names_closest_and_field_differences():
    c = _tokenize_cassette([("alpha", {"n": 1})])
    c.interactions[0].request_body = json.dumps({"model": MODEL, "prompt": "alpha", "max": 5}).encode()
    with replay(c) as rp:
        r = httpx.post(f"http://127.0.0.1:{rp.port}/tokenize", json={"model": MODEL, "prompt": "beta", "extra": 1})
        other = httpx.get(f"http://127.0.0.1:{rp.port}/v1/models")
    assert r.status_code == UNMATCHED_STATUS
    body = r.json()
    assert body["closest"] == {"index": 0, "method": "POST", "path": "/tokenize"}
    diffs = "\n".join(body["differences"])
    assert 'body.prompt: recorded "alpha", now "beta"' in diffs and "body.max: recorded 5, missing now" in diffs
    assert "body.extra: not recorded, now 1" in diffs and "closest is interaction #0" in body["error"]["message"]
    assert other.status_code == UNMATCHED_STATUS and "POST /tokenize" in other.json()["recorded_routes"]


def test_volatile_fields_are_ignored():
    c = _tokenize_cassette([("a", {"n": 1})])
    c.interactions[0].request_body = json.dumps({"model": MODEL, "prompt": "a", "request_id": "r1"}).encode()
    with replay(c) as rp:
        r = httpx.post(f"http://127.0.0.1:{rp.port}/tokenize", json={"model": MODEL, "prompt": "a", "request_id": "r2"})
    assert r.status_code == 200
    with replay(c, ignore=("request_id", "prompt")) as rp:
        assert httpx.post(f"http://127.0.0.1:{rp.port}/tokenize", json={"model": MODEL, "prompt": "zz"}).status_code == 200


def test_bad_cassettes_give_clear_errors(tmp_path):
    for text, match in [("[1, 2", "not valid YAML"), ("a: 1", "no 'interactions'"),
                        ("version: 2\ninteractions: []", "version 2"),
                        ("version: 1\ninteractions:\n- request: {}\n", "interaction 0")]:
        p = tmp_path / "bad.yaml"
        p.write_text(text)
        with pytest.raises(CassetteError, match=match):
            Cassette.load(p)
    with pytest.raises(CassetteError, match="no cassette"):
        Cassette.load(tmp_path / "missing.yaml")


def test_a_dead_writer_process_neither_hangs_the_recorder_nor_loses_exchanges(fake_vllm_server, tmp_path):
    path = tmp_path / "writer_died.yaml"
    rec = Recorder(path, "all", writer="process")
    with AppThread(create_proxy_app(fake_vllm_server.root_url, rec)) as p:
        rec._proc.kill()  # the writer dies (OOM killer, a bug): the proxy keeps answering
        rec._proc.join(10)
        for k in range(5):
            assert httpx.post(f"http://127.0.0.1:{p.port}/tokenize", json={"model": MODEL, "prompt": f"d{k}"}).status_code == 200
        t0 = time.time()
        rec.close(timeout=30)
        assert time.time() - t0 < 10  # no wait for acknowledgements that cannot come
    assert journal_dir(path).exists()  # kept: the cassette lacks what the writer never wrote
    assert [json.loads(i.request_body)["prompt"] for i in Cassette.load(path).interactions] == [f"d{k}" for k in range(5)]
