"""Server profiles: each version's routes, answer shapes and /version, as the fakes serve them,
and the client parsing every one of them."""

import base64
import io
import json
import subprocess
import sys

import httpx
import numpy as np
import pytest

from harness.wire.profiles import DEFAULTS, PROFILES, ProfileError, differences_markdown, get_profile, labels, parse_label
from fake_servers.server import FakeConfig, RunningServer
from harness.client import ClientConfig, TitoClient
from harness.wire.routed_experts import decode_payload, split_body
from harness.rollout import run_rollout

from .conftest import MODEL

IDS = [151644, 872, 198, 9707, 151645, 198, 151644, 77091, 198]


def gen_body(**sp):
    return {"model": MODEL, "token_ids": IDS, "sampling_params": {"max_tokens": 8, "logprobs": 1, **sp}}


def test_the_docs_list_every_profile_difference():
    from scripts.docs_reference import profiles_page  # the reference page, generated when the site is built

    page = profiles_page()
    assert differences_markdown() in page
    for name in PROFILES:
        assert f"`{name}`" in page


def test_profile_table_names_only_real_differences():
    table = differences_markdown()
    assert "| routed_experts |" in table and "| generate_logprobs |" in table and "| version |" in table
    assert "| kind |" in table  # vllm vs dynamo
    for row in table.splitlines()[2:]:
        if not row.startswith("| "):
            break
        cells = [c.strip() for c in row.strip("|").split("|")][1:]
        assert len(cells) == len(PROFILES) and len(set(cells)) > 1, row  # a row only where profiles differ


def test_profile_lookup_and_labels():
    assert get_profile(None, "vllm").name == DEFAULTS["vllm"] == "vllm-0.32"
    dyn = parse_label("dynamo-1.6.1+sglang")
    assert dyn.backend == "sglang" and dyn.routed_experts == "b64_string" and not dyn.serves("generate")
    assert parse_label("dynamo-1.6.1+vllm+native-generate").serves("generate")
    mocker = parse_label("dynamo-1.6.1+mocker")  # a worker's capabilities are its row's, whatever the profile says
    assert mocker.routed_experts == "none" and not mocker.worker.engine_data and mocker.worker.needs_max_tokens
    assert set(labels()) >= {"vllm-0.32", "prime-rl", "dynamo-1.6.1+vllm", "dynamo-1.6.1+vllm+native-generate",
                             "dynamo-1.6.1+mocker", "dynamo-1.6.1+sglang"}
    assert "dynamo-1.6.1+mocker+native-generate" not in labels()
    with pytest.raises(ProfileError, match="unknown profile 'vllm-9'"):
        get_profile("vllm-9")
    with pytest.raises(ProfileError, match="is a dynamo profile"):
        get_profile("dynamo-1.6.1", "vllm")
    with pytest.raises(ProfileError, match="needs the vLLM backend"):
        get_profile("dynamo-1.6.1", backend="mocker", native_generate=True)
    with pytest.raises(ProfileError, match="Dynamo options"):
        get_profile("vllm-0.31", backend="vllm")


@pytest.mark.parametrize("name", [n for n, p in PROFILES.items() if p.kind == "vllm"])
def test_each_vllm_profile_serves_its_routes_and_version(name):
    prof = PROFILES[name]
    with RunningServer(FakeConfig(kind="vllm", profile=name)) as srv, httpx.Client(base_url=srv.root_url) as c:
        assert c.get("/version").json() == {"version": prof.version}
        tokens = c.post("/v1/chat/completions/tokens", json={"model": MODEL, "tokens": IDS, "max_tokens": 4})
        assert (tokens.status_code == 200) == prof.serves("chat_tokens")
        if not prof.serves("chat_tokens"):
            assert tokens.json() == {"detail": "Not Found"}
        chat = c.post("/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
                                                     "max_tokens": 4})
        assert chat.json()["system_fingerprint"].startswith(f"vllm-{prof.version}")


def test_generate_logprob_shapes_differ_by_version():
    shapes = {}
    for name in ("vllm-0.31", "vllm-0.32", "prime-rl"):
        with RunningServer(FakeConfig(kind="vllm", profile=name)) as srv:
            body = httpx.post(srv.root_url + "/inference/v1/generate", json=gen_body()).json()
        entry = body["choices"][0]["logprobs"]["content"][0]
        shapes[name] = sorted(entry)
        tid = body["choices"][0]["token_ids"][0]
        if name == "vllm-0.32":
            assert entry["token_id"] == tid and entry["rank"] == 1 and "output_mode" in body
        else:  # the shape renderers 0.1.12 requires
            assert entry["token"] == f"token_id:{tid}" and entry["bytes"] is None and "output_mode" not in body
    assert shapes["vllm-0.31"] == shapes["prime-rl"] == ["bytes", "logprob", "token", "top_logprobs"]
    assert shapes["vllm-0.32"] == ["logprob", "rank", "token_id", "top_logprobs"]


def test_vllm_033_output_mode_text_and_older_versions_refuse_it():
    with RunningServer(FakeConfig(kind="vllm", profile="vllm-0.33")) as srv:
        r = httpx.post(srv.root_url + "/inference/v1/generate", json={**gen_body(), "output_mode": "text"}).json()
    choice = r["choices"][0]
    assert r["output_mode"] == "text" and isinstance(choice["text"], str)
    assert all(not e["token"].startswith("token_id:") for e in choice["logprobs"]["content"])
    with RunningServer(FakeConfig(kind="vllm", profile="vllm-0.32")) as srv:
        bad = httpx.post(srv.root_url + "/inference/v1/generate", json={**gen_body(), "output_mode": "text"})
    assert bad.status_code == 400 and "output_mode" in bad.json()["error"]["message"]


@pytest.mark.parametrize("profile", ["vllm-0.31", "vllm-0.32", "vllm-0.33"])
def test_upstream_routed_experts_are_an_npy_string_with_the_prompt_start_honoured(profile):
    with RunningServer(FakeConfig(kind="vllm", profile=profile, moe="3,2,8")) as srv:
        full = httpx.post(srv.root_url + "/inference/v1/generate", json=gen_body()).json()["choices"][0]
        cut = httpx.post(srv.root_url + "/inference/v1/generate",
                         json=gen_body(routed_experts_prompt_start=4)).json()["choices"][0]
        chat = httpx.post(srv.base_url + "/chat/completions", json={
            "model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}).json()["choices"][0]
    arr = np.load(io.BytesIO(base64.b64decode(full["routed_experts"])))  # the documented decode
    assert arr.shape == (len(IDS) + len(full["token_ids"]) - 1, 3, 2) and arr.dtype == np.uint8
    cut_arr = np.load(io.BytesIO(base64.b64decode(cut["routed_experts"])))
    assert np.array_equal(cut_arr, arr[4:])
    assert (chat["routed_experts"] is None) == (profile == "vllm-0.31")  # on chat from 0.32 on


def test_prime_rl_sends_the_object_form_with_data_first_on_its_tokens_route_only():
    with RunningServer(FakeConfig(kind="vllm", profile="prime-rl", moe="3,2,8")) as srv:
        raw = httpx.post(srv.base_url + "/chat/completions/tokens", json={"model": MODEL, "tokens": IDS,
                                                                          "max_tokens": 4}).content
        chat = httpx.post(srv.base_url + "/chat/completions", json={
            "model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}).json()
    assert b'"routed_experts":{"data":"' in raw  # what renderers' and verifiers' splitters look for
    body = json.loads(raw)
    assert body["choices"][0]["routed_experts"]["dtype"] == "uint8"
    assert chat["choices"][0]["routed_experts"] is None  # stripped from plain chat completions


def test_client_decodes_npy_in_place_and_cuts_string_blobs_out_of_the_body():
    arr = np.arange(5 * 3 * 2, dtype=np.uint16).reshape(5, 3, 2)
    buf = io.BytesIO()
    np.save(buf, arr)
    npy = base64.b64encode(buf.getvalue()).decode()
    raw = json.dumps({"choices": [{"message": {"content": 'says "routed_experts": "AAAA"'},
                                   "routed_experts": npy}]}, separators=(",", ":")).encode()
    parsed, blobs = split_body(raw)
    assert len(blobs) == 1 and bytes(blobs[0]) == npy.encode()  # a zero-copy view of the body
    assert parsed["choices"][0]["message"]["content"] == 'says "routed_experts": "AAAA"'
    out = decode_payload(parsed["choices"][0]["routed_experts"], blobs, start=2)
    assert np.array_equal(out.array, arr) and out.start == 2
    assert out.array.base is not None and not out.array.flags.owndata  # a view, the .npy header parsed in place
    raw32 = base64.b64encode(np.arange(12, dtype=np.int32).tobytes()).decode()
    assert decode_payload(raw32).array.tolist() == list(range(12))  # SGLang: flat int32


@pytest.mark.parametrize("profile", ["vllm-0.31", "vllm-0.32", "vllm-0.33", "prime-rl"])
async def test_our_client_is_tito_against_every_vllm_profile(profile):
    with RunningServer(FakeConfig(kind="vllm", profile=profile)) as srv:
        report = await run_rollout(ClientConfig(base_url=srv.base_url, model=MODEL, backoff=0.01), turns=4,
                                   max_tokens=64)
    assert [t.mode for t in report.turns] == ["mito", "tito", "tito", "tito"] and report.continuity_ok()
    want = "/v1/chat/completions/tokens" if profile == "prime-rl" else "/inference/v1/generate"
    assert {t.route for t in report.turns[1:]} == {want}
    assert all(len(t.completion_logprobs) == len(t.completion_ids) for t in report.turns)


async def test_dynamo_generate_falls_back_to_token_data_and_says_so():
    with RunningServer(FakeConfig(kind="dynamo")) as srv:
        report = await run_rollout(ClientConfig(base_url=srv.base_url, model=MODEL, backoff=0.01,
                                                renderer_transport="dynamo_generate"), turns=3, max_tokens=64)
    assert [t.mode for t in report.turns] == ["mito", "tito", "tito"]
    for t in report.turns[1:]:
        assert t.route == "/v1/chat/completions+token_data"
        assert any("DYN_VLLM_ENABLE_INFERENCE_V1_GENERATE" in n for n in t.notes)


async def test_dynamo_native_generate_rollout_decodes_text_locally():
    with RunningServer(FakeConfig(kind="dynamo", native_generate=True)) as srv:
        async with TitoClient(ClientConfig(base_url=srv.base_url, model=MODEL, backoff=0.01,
                                           renderer_transport="dynamo_generate")) as c:
            convo = c.conversation()
            q = [{"role": "user", "content": "hi"}]
            r1 = await convo.turn(q, max_tokens=32)
            r2 = await convo.turn([*q, r1.message, {"role": "user", "content": "more"}], max_tokens=32)
            streamed = httpx.post(srv.root_url + "/inference/v1/generate", json={**gen_body(), "stream": True})
    assert r2.mode == "tito" and r2.route == "/inference/v1/generate" and r2.text
    assert r2.prompt_ids[:len(r1.prompt_ids) + len(r1.completion_ids)] == r1.prompt_ids + r1.completion_ids
    assert streamed.status_code == 501 and streamed.json()["error"]["type"] == "not_implemented"


def test_cli_profiles_and_fake_profile_flag(capsys):
    from harness.cli import main  # (in-process where nothing is served: a subprocess re-imports it all)

    assert main(["profiles", "--json"]) in (0, None)
    data = json.loads(capsys.readouterr().out)
    assert data["defaults"] == DEFAULTS and {p["name"] for p in data["profiles"]} == set(PROFILES)
    assert main(["profiles"]) in (0, None)
    table = capsys.readouterr().out
    assert "vllm-0.32 (default)" in table and "prime-rl" in table
    bad = subprocess.run([sys.executable, "-m", "harness.cli", "fake", "vllm", "--profile", "vllm-0.99"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown profile 'vllm-0.99'" in bad.stderr
    bad = subprocess.run([sys.executable, "-m", "harness.cli", "fake", "dynamo", "--backend", "mocker",
                          "--native-generate"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "needs the vLLM backend" in bad.stderr


MARKER_TEST = '''
import httpx
import pytest


@pytest.mark.fake_profile("vllm-0.31", "dynamo-1.6.1+mocker")
def test_marked(fake_vllm, fake_dynamo):
    assert httpx.get(fake_vllm[:-3] + "/version").json() == {"version": "0.31.0"}
    assert httpx.get(fake_dynamo + "/models").json()["data"][0]["context_window"] == 0  # the mocker


def test_default(fake_vllm):
    assert httpx.get(fake_vllm[:-3] + "/version").json() == {"version": "0.32.0"}


@pytest.mark.parametrize("fake_profile", ["vllm-0.31", "vllm-0.33", "prime-rl"], indirect=True)
def test_each(fake_vllm, fake_profile):
    version = httpx.get(fake_vllm[:-3] + "/version").json()["version"]
    assert version == {"vllm-0.31": "0.31.0", "vllm-0.33": "0.33.0", "prime-rl": "0.21.0"}[fake_profile]


@pytest.mark.fake_profile("vllm-7")
def test_bad(fake_vllm):
    pass
'''


def test_fake_profile_marker_and_parametrized_profiles(pytester):
    pytester.makepyfile(test_it=MARKER_TEST)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=5, errors=1)
    assert "unknown profile 'vllm-7'" in result.stdout.str()


PLUGIN_TEST = '''
import httpx
import pytest


@pytest.mark.parametrize("fake_profile", ["dynamo-1.6.1+mocker"], indirect=True)
def test_wrong_kind(fake_vllm, fake_profile):
    pass


@pytest.mark.fake_fault("http_503*1")
def test_fault_marker_and_request_log(fake_vllm_server):
    url = fake_vllm_server.root_url + "/tokenize"
    first = httpx.post(url, json={"model": "tiny-qwen", "prompt": "a"})
    second = httpx.post(url, json={"model": "tiny-qwen", "prompt": "b"})
    assert (first.status_code, second.status_code) == (503, 200)
    got = fake_vllm_server.received
    assert [(r.method, r.path, r.status, r.faults) for r in got] == [
        ("POST", "/tokenize", 503, ["http_503"]), ("POST", "/tokenize", 200, [])]
    assert got[1].json()["prompt"] == "b"


def test_next_test_starts_clean(fake_vllm_server):
    assert fake_vllm_server.received == []
    assert httpx.post(fake_vllm_server.root_url + "/tokenize", json={"model": "tiny-qwen", "prompt": "c"}).status_code == 200
'''


def test_plugin_refuses_a_profile_of_the_wrong_kind_and_serves_faults_and_a_request_log(pytester):
    pytester.makepyfile(test_plugin=PLUGIN_TEST)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    assert "'dynamo-1.6.1+mocker' is a profile of another server kind than the test's fixtures serve" in result.stdout.str()


def test_dynamo_151_drops_a_failed_mocker_worker_then_takes_it_back():
    """Recorded from Dynamo 1.5.1 + mocker: a request the mocker cannot take (no max_tokens) is a 500, the
    frontend drops the worker, and everything past serde is a 503 until the worker registers again (about
    5 s). The fake answers so for this profile only; Dynamo 1.6.1 refuses the same request with a 400."""
    import time

    import httpx

    from fake_servers.server import FakeConfig, RunningServer

    ok = {"model": "tiny-qwen", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 2}
    no_max = {"model": "tiny-qwen", "messages": [{"role": "user", "content": "Hello"}]}
    with RunningServer(FakeConfig(kind="dynamo", profile="dynamo-1.5.1", dynamo_backend="mocker",
                                  worker_down_seconds=2.0)) as srv:
        url = srv.base_url + "/chat/completions"
        assert httpx.post(url, json=ok).status_code == 200
        failed = httpx.post(url, json=no_max)
        assert (failed.status_code, failed.json()["message"]) == (500, "Failed to generate completions")
        away = httpx.post(url, json=ok)
        assert away.status_code == 503 and "is not ready to serve requests yet" in away.json()["message"]
        assert httpx.post(url, json={**ok, "max_tokens": "x"}).status_code == 400  # serde still answers
        deadline = time.monotonic() + 60  # away for 2 s: back once they pass, however slow the machine
        while (status := httpx.post(url, json=ok).status_code) == 503 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert status == 200
    with RunningServer(FakeConfig(kind="dynamo", dynamo_backend="mocker")) as srv:
        assert httpx.post(srv.base_url + "/chat/completions", json=no_max).status_code == 400
    assert "dynamo-1.5.1+mocker" in labels() and "dynamo-1.5.1+vllm" not in labels()  # only what was seen
    with pytest.raises(ProfileError, match="backend must be one of"):
        get_profile("dynamo-1.5.1", backend="vllm")


async def test_current_prime_rl_sends_routed_experts_on_plain_chat_with_its_training_keys():
    """prime-rl's PrimeRlServingChat (read at 5fe1a77): the routed-experts object, sampling_mask and
    training_metadata on /v1/chat/completions too; the older profile keeps them off plain chat."""
    import httpx

    from fake_servers.server import FakeConfig, RunningServer
    from harness.client import ClientConfig, TitoClient

    body = {"model": "tiny-qwen", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    for name, on_chat in (("prime-rl-5fe1a77", True), ("prime-rl", False)):
        with RunningServer(FakeConfig(kind="vllm", profile=name, moe="4,2,16")) as srv:
            answer = httpx.post(srv.base_url + "/chat/completions", json=body).json()
            choice = answer["choices"][0]
            assert (isinstance(choice["routed_experts"], dict), "sampling_mask" in choice,
                    "training_metadata" in answer) == (on_chat, on_chat, on_chat), name
            if on_chat:
                assert list(choice["routed_experts"])[0] == "data"  # {data, shape, start, dtype}, data first
                cfg = ClientConfig(base_url=srv.base_url, model="tiny-qwen", tito_route="chat_tokens")
                async with TitoClient(cfg) as client:
                    r = await client.conversation().turn(body["messages"], max_tokens=8)
                assert r.mode == "mito" and r.routed_experts is not None
                assert r.routed_experts.shape[1:] == (4, 2)
    assert PROFILES["prime-rl-5fe1a77"].read_from.startswith("PrimeIntellect-ai/prime-rl@5fe1a77")


@pytest.mark.parametrize("label, status", [("vllm-0.32", 400), ("vllm-0.33", 200)])
def test_each_vllm_version_reads_requests_with_its_own_models(label, status):
    """vLLM 0.33's request models differ from 0.32's (read from its 0.33.0 wheel): `skip_special_tokens` may be
    null. Real vLLM 0.32 refuses null (recorded: a bool_type error); the fake of each version answers as it."""
    import httpx

    from fake_servers.server import FakeConfig, RunningServer

    with RunningServer(FakeConfig.for_profile(parse_label(label))) as srv:
        for path, body in [("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}]}),
                           ("/v1/completions", {"prompt": "Hi"})]:
            r = httpx.post(srv.root_url + path, json={"model": "tiny-qwen", "max_tokens": 2,
                                                      "skip_special_tokens": None, **body})
            assert r.status_code == status, r.text
            if status == 400:
                assert r.json()["error"]["param"] == "body.skip_special_tokens"
