"""The recorder at production scale: blobs out of line, a writer off the event loop with bounded
back-pressure, shards from several workers merged, and catalogue faults injected into live answers."""

import base64
import json
import signal
import subprocess
import sys
import time

import httpx
import pytest
import vcr as vcrpy

from fake_servers.server import FakeConfig, RunningServer
from harness.client import ClientConfig, TitoClient
from harness.recording.blobs import BlobStore, blob_dir
from harness.recording.format import Cassette, CassetteError
from harness.recording.merge import merge
from harness.recording.proxy import Recorder, create_proxy_app
from harness.recording.replay import ReplayIndex, create_replay_app
from harness.serve import AppThread

from .conftest import MODEL, kill_mid_traffic

IDS = [151644, 872, 198, 9707, 151645, 198, 151644, 77091, 198]
Q = [{"role": "user", "content": "hi"}]


def through(upstream: str, path, requests, **kw):
    """Send (method, path, json) requests through a recording proxy; returns the live bodies."""
    rec = Recorder(path, "all", **kw)
    with AppThread(create_proxy_app(upstream, rec)) as p:
        live = [httpx.request(m, f"http://127.0.0.1:{p.port}{u}", json=b, timeout=30).content for m, u, b in requests]
    return live, rec


# one server per routed-experts wire format, and a request that brings the blob back
FORMATS = {
    "npy": (dict(kind="vllm"), ("POST", "/inference/v1/generate",
                                {"model": MODEL, "token_ids": IDS, "sampling_params": {"max_tokens": 8}})),
    "object": (dict(kind="vllm", profile="prime-rl"), ("POST", "/v1/chat/completions/tokens",
                                                        {"model": MODEL, "tokens": IDS, "max_tokens": 8})),
    "nvext_object": (dict(kind="dynamo"), ("POST", "/v1/chat/completions", {
        "model": MODEL, "messages": Q, "max_tokens": 8, "nvext": {"extra_fields": ["routed_experts", "engine_data"]}})),
    "b64_string": (dict(kind="dynamo", dynamo_backend="sglang"), ("POST", "/v1/chat/completions", {
        "model": MODEL, "messages": Q, "max_tokens": 8, "nvext": {"extra_fields": ["routed_experts"]}})),
}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_blobs_go_out_of_line_and_replay_byte_identical(fmt, tmp_path):
    kw, request = FORMATS[fmt]
    path = tmp_path / "moe.yaml"
    with RunningServer(FakeConfig(moe="4,2,16", **kw)) as srv:
        live, rec = through(srv.root_url, path, [request, request], blob_threshold=64)
    text = path.read_text()
    blobs = list(blob_dir(path).iterdir())
    assert "<tito-blob:" in text and len(blobs) >= 1  # same answer twice: stored once (content-addressed)
    raw = sum(b.stat().st_size for b in blobs)
    assert raw < max(len(body) for body in live) * 0.8  # raw bytes, not base64
    c = Cassette.load(path)
    assert [i.response_body for i in c.interactions] == live  # the exact original bytes put back
    with AppThread(create_replay_app(ReplayIndex([c]))) as rp:
        again = httpx.request(request[0], f"http://127.0.0.1:{rp.port}{request[1]}", json=request[2]).content
    assert again == live[0]


def test_stock_vcrpy_loads_a_cassette_with_blobs_and_sees_the_marker(tmp_path):
    kw, request = FORMATS["npy"]
    path = tmp_path / "stock.yaml"
    with RunningServer(FakeConfig(moe="4,2,16", **kw)) as srv:
        through(srv.root_url, path, [request], blob_threshold=64)
    from vcr.persisters.filesystem import FilesystemPersister
    from vcr.serializers import yamlserializer

    requests, responses = FilesystemPersister.load_cassette(str(path), yamlserializer)
    body = responses[0]["body"]["string"].decode()
    assert len(requests) == 1 and "<tito-blob:" in body and json.loads(body)["choices"][0]["routed_experts"].startswith("<tito-blob:")
    assert vcrpy  # the package the persister comes from


def test_blob_store_keeps_what_it_cannot_restore_exactly_inline(tmp_path):
    store = BlobStore(tmp_path / "b", threshold=16)
    good = base64.b64encode(bytes(range(256)) * 4).decode()
    non_canonical = base64.b64encode(bytes(range(256)) * 4 + b"A").decode()[:-4] + "QR=="  # stray bits in the padding
    not_b64 = "x" * 40 + "!" * 20
    body = json.dumps({"a": good, "b": not_b64, "c": "short", "d": non_canonical, "e": good + "\n"}).encode()
    out, digests = store.take_out(body)
    assert len(digests) == 1 and b"<tito-blob:" in out  # only `a`: the others stay as they were
    for kept in (not_b64, non_canonical):
        assert kept.encode() in out
    assert store.put_back(out) == body
    missing = tmp_path / "gone.yaml"
    c = Cassette.load  # a cassette whose blob folder was not copied: a clear error
    kw, request = FORMATS["npy"]
    with RunningServer(FakeConfig(moe="4,2,16", **kw)) as srv:
        through(srv.root_url, missing, [request], blob_threshold=64)
    for f in blob_dir(missing).iterdir():
        f.unlink()
    with pytest.raises(CassetteError, match="is missing from"):
        c(missing)


async def test_the_writer_falls_behind_visibly_and_loses_nothing(fake_vllm_server, tmp_path):
    path = tmp_path / "slow.yaml"
    rec = Recorder(path, "all", max_pending=2)
    real_write = rec.writer.write

    def slow(batch, **kw):
        time.sleep(0.05)
        return real_write(batch, **kw)

    rec.writer.write = slow
    with AppThread(create_proxy_app(fake_vllm_server.root_url, rec)) as p:
        async with httpx.AsyncClient() as c:
            import asyncio

            rs = await asyncio.gather(*[c.post(f"http://127.0.0.1:{p.port}/tokenize",
                                               json={"model": MODEL, "prompt": f"p{k}"}) for k in range(40)])
    assert all(r.status_code == 200 for r in rs)
    assert rec.backpressure_waits > 0  # the bounded queue made handlers wait
    assert len(Cassette.load(path).interactions) == 40 == rec.on_disk


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_both_writers_record_every_exchange(fake_vllm_server, tmp_path, writer):
    path = tmp_path / f"{writer}.yaml"
    seen = []
    rec = Recorder(path, "all", writer=writer, on_record=lambda n, i: seen.append((n, i.path, i.status)))
    with AppThread(create_proxy_app(fake_vllm_server.root_url, rec)) as p:
        for k in range(12):
            httpx.post(f"http://127.0.0.1:{p.port}/tokenize", json={"model": MODEL, "prompt": f"w{k}"})
        assert rec.wait_written(30)
    c = Cassette.load(path)
    assert [json.loads(i.request_body)["prompt"] for i in c.interactions] == [f"w{k}" for k in range(12)]
    assert sorted(n for n, *_ in seen) == list(range(1, 13)) and {s for *_, s in seen} == {200}
    assert all(i.recorded_at for i in c.interactions)


def _record_cli(*args):
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "record", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert "send traffic to" in line, proc.stderr.read()
    return proc, int(line.split("send traffic to http://127.0.0.1:")[1].split("/")[0])


def test_workers_share_the_port_and_their_shards_merge_in_arrival_order(fake_vllm_server, tmp_path):
    cassette = tmp_path / "fleet.yaml"
    proc, port = _record_cli("--upstream", fake_vllm_server.root_url, "--cassette", str(cassette), "--workers", "2",
                             "--quiet")
    try:
        for k in range(30):
            with httpx.Client() as c:  # a new connection each time: the kernel spreads them over the workers
                assert c.post(f"http://127.0.0.1:{port}/tokenize", json={"model": MODEL, "prompt": f"m{k}"}).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "30 exchanges from 2 workers merged" in out
    c = Cassette.load(cassette)
    assert [json.loads(i.request_body)["prompt"] for i in c.interactions] == [f"m{k}" for k in range(30)]
    assert c.meta["merged_from"] == ["fleet.shard0.yaml", "fleet.shard1.yaml"]
    assert not list(tmp_path.glob("fleet.shard*"))


def test_merge_orders_by_arrival_keeps_ids_and_copies_blobs(tmp_path):
    kw, request = FORMATS["npy"]
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    with RunningServer(FakeConfig(moe="4,2,16", **kw)) as srv:
        through(srv.root_url, a, [request], blob_threshold=64)
        time.sleep(0.01)
        second = {**request[2], "sampling_params": {"max_tokens": 8, "seed": 5}}
        through(srv.root_url, b, [("POST", request[1], second)], blob_threshold=64)
        time.sleep(0.01)
        through(srv.root_url, a.with_name("a2.yaml"), [request], blob_threshold=64)
    out = tmp_path / "merged" / "all.yaml"
    merged = merge(out, [a.with_name("a2.yaml"), b, a])  # given out of order
    ids = [json.loads(i.response_body)["request_id"] for i in Cassette.load(out).interactions]
    originals = [json.loads(Cassette.load(p).interactions[0].response_body)["request_id"] for p in (a, b, a.with_name("a2.yaml"))]
    assert ids == originals and len(merged.interactions) == 3
    before = out.read_bytes()
    refused = subprocess.run([sys.executable, "-m", "harness.cli", "cassette", "merge", str(out), str(a)],
                             capture_output=True, text=True)
    assert refused.returncode == 2 and "pass --force to overwrite" in refused.stderr
    assert out.read_bytes() == before  # an existing cassette is never replaced silently
    run = subprocess.run([sys.executable, "-m", "harness.cli", "cassette", "merge", str(out), str(a), "--force"],
                         capture_output=True, text=True)
    assert run.returncode == 0 and len(Cassette.load(out).interactions) == 1
    bad = subprocess.run([sys.executable, "-m", "harness.cli", "cassette", "merge", str(a), str(a)],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "also an input" in bad.stderr


async def test_record_with_faults_names_each_fault_and_the_client_reacts(fake_vllm_server, tmp_path):
    cassette = tmp_path / "chaos.yaml"
    proc, port = _record_cli("--upstream", fake_vllm_server.root_url, "--cassette", str(cassette),
                             "--fault", "logprobs_one_less*2", "--fault", "http_503*1")
    try:
        async with TitoClient(ClientConfig(base_url=f"http://127.0.0.1:{port}/v1", model=MODEL, backoff=0.01)) as c:
            r = await c.chat(Q, max_tokens=16)  # first attempt 503 (retried), then one logprob short
            r2 = await c.chat(Q, max_tokens=16)  # the faults are spent: a clean answer
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert r.tokens_dropped and "logprobs" in r.tokens_dropped and r.completion_ids is None
    assert r2.tokens_dropped is None and len(r2.completion_logprobs) == len(r2.completion_ids)
    inters = [i for i in Cassette.load(cassette).interactions if i.path == "/v1/chat/completions"]  # (not /tokenize)
    # each rule fires on the first N requests: the 503 spends one of the two logprob faults
    assert [(i.status, i.faults) for i in inters] == [(503, ["http_503", "logprobs_one_less"]),
                                                      (200, ["logprobs_one_less"]), (200, None)]
    assert json.loads(inters[0].response_body)["error"]["type"] == "ServiceUnavailableError"  # vLLM's shape


def test_chaos_forwards_with_faults_and_refuses_faults_it_cannot_apply_live(fake_dynamo_server):
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "chaos", "--upstream", fake_dynamo_server.root_url,
                             "--port", "0", "--fault", "http_429*2", "--fault", "empty_choices@0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        port = int(line.split("send traffic to http://127.0.0.1:")[1].split("/")[0])
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        body = {"model": MODEL, "messages": Q, "max_tokens": 4}
        statuses = [httpx.post(url, json=body) for _ in range(3)]
        assert [r.status_code for r in statuses] == [429, 429, 200]
        assert set(statuses[0].json()) == {"message", "type", "code"}  # Dynamo's error shape
        assert statuses[0].headers["retry-after"] == "1"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    bad = subprocess.run([sys.executable, "-m", "harness.cli", "chaos", "--upstream", fake_dynamo_server.root_url,
                          "--port", "0", "--fault", "template_no_newline"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "cannot be applied to a live server" in bad.stderr


async def test_truncated_stream_and_reset_injected_into_live_answers(fake_vllm_server, tmp_path):
    from harness.recording.chaos import LiveFaults

    rec = Recorder(tmp_path / "cut.yaml", "all")
    app = create_proxy_app(fake_vllm_server.root_url, rec, LiveFaults(["truncated_stream*1", "reset@0"]))
    with AppThread(app) as p:
        cfg = ClientConfig(base_url=f"http://127.0.0.1:{p.port}/v1", model=MODEL, backoff=0.01, stream=True)
        async with TitoClient(cfg) as c:
            r = await c.chat(Q, max_tokens=16)  # the cut stream is retried; the retry is whole
        assert r.completion_ids and r.finish_reason
    inters = Cassette.load(tmp_path / "cut.yaml").interactions
    assert inters[0].faults == ["truncated_stream"] and b"[DONE]" not in inters[0].response_body
    assert inters[1].faults is None and b"[DONE]" in inters[1].response_body


def test_kill_9_under_moe_load_leaves_a_loadable_cassette_with_every_blob(tmp_path):
    """Blobs are written (fsync, rename) before the YAML that names them: a kill -9 mid-traffic never
    leaves a marker without its blob."""
    cassette = tmp_path / "moe_killed.yaml"
    with RunningServer(FakeConfig(kind="vllm", moe="8,4,64", max_model_len=4096)) as srv:
        proc, port = _record_cli("--upstream", srv.root_url, "--cassette", str(cassette), "--quiet",
                                 "--blob-threshold", "1024")
        done = kill_mid_traffic(proc, lambda c, k, n: c.post(
            f"http://127.0.0.1:{port}/inference/v1/generate", timeout=5, json={
                "model": MODEL, "token_ids": [9707] * 200, "sampling_params": {"max_tokens": 8, "seed": k * 1000 + n}}
        ).status_code, 20)
    time.sleep(0.5)  # (the orphaned writer process finishes the batch it holds, in one append)
    c = Cassette.load(cassette)  # a whole cassette, every blob it names present
    assert len(done) >= 10 and len(c.interactions) >= 1
    assert all(b"<tito-blob:" not in i.response_body for i in c.interactions)
    assert len(list(blob_dir(cassette).glob("*.bin"))) >= len(c.interactions)
