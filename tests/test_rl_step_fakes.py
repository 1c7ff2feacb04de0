"""`harness rl-step` end to end on the fakes: each pause mode with rollouts in flight, a weight update from
a directory, the versions each turn was sampled under, and the exit codes (0 kept promises, 1 broken, 2 bad
input or nothing there).

The in-flight turns are paced by the fake (300 tokens, 4 ms each): the step pauses once the fake's
/metrics counts them running, so what is counted is what the pause did to them."""

import json

import pytest

from fake_servers.server import FakeConfig, RunningServer
from harness.cli import main

ROLLOUTS = 2


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt-step-1")
    (d / "model.safetensors").write_bytes(b"step 1 weights")
    return str(d)


@pytest.fixture(scope="module")
def vllm():
    with RunningServer(FakeConfig(kind="vllm", profile="vllm-0.32", dev_mode=True, per_token=0.004)) as srv:
        yield srv


@pytest.fixture(scope="module")
def prime_rl():
    with RunningServer(FakeConfig(kind="vllm", profile="prime-rl", per_token=0.004)) as srv:
        yield srv


def step(capsys, srv, *args) -> tuple[int, dict]:
    rc = main(["rl-step", "--base-url", srv.base_url, "--model", "tiny-qwen", "--rollouts", str(ROLLOUTS),
               "--inflight-tokens", "300", "--json", *args])
    text = capsys.readouterr().out
    return rc, json.loads(text) if text.strip() else {}


def failed(report: dict) -> list:
    return [c for c in report["checks"] if not c["ok"]]


def test_keep_freezes_the_turns_in_flight_and_they_finish_under_both_policies(capsys, vllm, weights):
    rc, r = step(capsys, vllm, "--mode", "keep", "--weights", weights, "--version", "step-1")
    assert rc == 0, failed(r)
    assert r["in_flight_at_pause"] == ROLLOUTS and r["kept"] == ROLLOUTS and r["aborted"] == 0
    assert r["paused_request"] == "held" and r["drain_seconds"] is None
    assert r["version_before"] == "default" and r["reported_versions"] == ["step-1"]
    assert r["versions_per_turn"] == {"1": ["default"], "2": ["default", "step-1"], "3": ["step-1"]}
    assert r["off_policy_turns"] == ROLLOUTS  # each kept turn: one completion, two policies
    assert r["answers_differ"] is True
    kept = [t for t in r["turns"] if t["turn"] == 1]
    assert all(t["tokens"] == 300 and t["finish_reason"] == "length" for t in kept)
    calls = [e["call"] for e in r["events"]]
    assert calls.index("pause keep") < calls.index("update /collective_rpc") < calls.index("resume")


def test_abort_cuts_every_turn_in_flight_and_the_step_sends_them_again(capsys, vllm):
    rc, r = step(capsys, vllm, "--mode", "abort", "--version", "step-2")
    assert rc == 0, failed(r)
    assert r["aborted"] == ROLLOUTS and r["retried"] == ROLLOUTS and r["kept"] == 0
    cut = [t for t in r["turns"] if t["phase"] == "in flight"]
    assert all(t["finish_reason"] == "abort" and t["tokens"] < 300 for t in cut)
    retries = [t for t in r["turns"] if t["retry_of"] == 1]
    assert len(retries) == ROLLOUTS and all(t["versions"] == ["step-2"] for t in retries)
    assert r["answers_differ"] is False  # only the label changed


def test_wait_drains_before_the_pause_answers(capsys, vllm):
    rc, r = step(capsys, vllm, "--mode", "wait", "--version", "step-3")
    assert rc == 0, failed(r)
    assert r["finished_while_pausing"] == ROLLOUTS and r["aborted"] == r["kept"] == 0
    assert r["drain_seconds"] is not None and r["drain_seconds"] <= r["pause_seconds"] + 0.05
    assert r["versions_per_turn"]["2"] == ["step-2"]  # drained under the weights they started on


def test_prime_rl_updates_from_a_weight_dir_in_keep_mode(capsys, prime_rl, weights):
    rc, r = step(capsys, prime_rl, "--kind", "prime-rl", "--weights", weights)
    assert rc == 0, failed(r)
    assert r["mode"] == "keep" and r["kept"] == ROLLOUTS and r["answers_differ"] is True
    assert r["reported_versions"] is None  # prime-rl's server reports no version label
    assert [e["call"] for e in r["events"]] == ["pause keep", "update /update_weights", "resume"]
    assert main(["rl-step", "--base-url", prime_rl.base_url, "--model", "tiny-qwen", "--kind", "prime-rl",
                 "--mode", "abort"]) == 2
    assert "prime-rl pauses in mode keep, not 'abort'" in capsys.readouterr().err


def test_a_version_tag_not_applied_fails_the_step(capsys, vllm):
    vllm.set_faults(["version_not_applied"])
    try:
        rc, r = step(capsys, vllm, "--mode", "keep", "--version", "step-9")
    finally:
        vllm.set_faults([])
    assert rc == 1
    assert [c["promise"] for c in failed(r)] == ["every engine reports the new version label"]
    assert r["reported_versions"] != ["step-9"]


def test_without_dev_mode_the_pause_is_refused_and_the_step_fails(capsys):
    with RunningServer(FakeConfig(kind="vllm", profile="vllm-0.32", dev_mode=False)) as srv:
        rc = main(["rl-step", "--base-url", srv.base_url, "--model", "tiny-qwen", "--rollouts", "1"])
    assert rc == 1
    assert "answered 404" in capsys.readouterr().err


@pytest.mark.parametrize("args, words", [
    (["--base-url", "http://127.0.0.1:1/v1"], "127.0.0.1:1"),
    (["--kind", "dynamo"], "--discovery-url"),
])
def test_bad_input_or_nothing_there_exits_2_with_one_line(capsys, vllm, args, words):
    argv = ["rl-step", "--base-url", vllm.base_url, "--model", "tiny-qwen", *args]
    assert main(argv) == 2
    assert words in capsys.readouterr().err


def test_weights_name_a_directory_on_the_server_and_its_refusal_fails_the_step(capsys):
    # --weights is loaded where the server runs, so no local check: the server's own refusal is what the user sees
    with RunningServer(FakeConfig(kind="vllm", profile="vllm-0.32", dev_mode=True)) as srv:
        rc = main(["rl-step", "--base-url", srv.base_url, "--model", "tiny-qwen", "--rollouts", "1",
                   "--weights", "/nonexistent/ckpt"])
    err = capsys.readouterr().err
    assert rc == 1 and "/collective_rpc" in err and "/nonexistent/ckpt" in err and "Traceback" not in err


@pytest.fixture(scope="module")
def dynamo():
    with RunningServer(FakeConfig(kind="dynamo", dynamo_backend="vllm", enable_rl=True, per_token=0.004)) as srv:
        yield srv


def test_dynamo_is_driven_through_its_discovery_and_ends_cut_turns_with_stop(capsys, dynamo, weights):
    rc, r = step(capsys, dynamo, "--kind", "dynamo", "--discovery-url", dynamo.rl_url, "--mode", "abort",
                 "--weights", weights)
    assert rc == 0, failed(r)
    assert r["engines"] == [dynamo.system_url]
    assert r["aborted"] == ROLLOUTS and r["version_before"] is None and r["reported_versions"] == ["step-1"]
    assert all(t["finish_reason"] == "stop" and t["tokens"] < 300 for t in r["turns"] if t["phase"] == "in flight")
    calls = [e["call"] for e in r["events"]]
    assert calls[:3] == ["get version", "pause abort", "update /engine/update_weights_from_disk"]


def test_dynamo_with_its_worker_gone_from_discovery_fails_the_step(capsys, dynamo):
    dynamo.set_faults(["worker_gone"])
    try:
        rc = main(["rl-step", "--base-url", dynamo.base_url, "--model", "tiny-qwen", "--kind", "dynamo",
                   "--discovery-url", dynamo.rl_url, "--rollouts", "1"])
    finally:
        dynamo.set_faults([])
    assert rc == 1 and "lists no worker" in capsys.readouterr().err


def test_vllm_033_refuses_while_paused_in_abort_and_names_versions_in_its_answers(capsys, weights):
    with RunningServer(FakeConfig(kind="vllm", profile="vllm-0.34", dev_mode=True, per_token=0.004)) as srv:
        rc, cut = step(capsys, srv, "--kind", "vllm-0.33", "--mode", "abort", "--version", "step-1")
        assert rc == 0, failed(cut)
        assert cut["paused_request"] == "refused"
        rc, kept = step(capsys, srv, "--kind", "vllm-0.33", "--mode", "keep", "--weights", weights, "--version", "step-2")
        assert rc == 0, failed(kept)
    assert kept["paused_request"] == "held"
    frozen = [t for t in kept["turns"] if t["phase"] == "in flight"]
    assert all(t["version_source"] == "answer" and t["versions"] == ["step-1", "step-2"] for t in frozen)
    assert all(0 < t["switch_at"] < 300 for t in frozen)  # the token where the new weights took over


def test_dynamo_worker_calls_go_through_a_recording_proxy_named_with_engine_url(capsys, dynamo, tmp_path):
    from harness.recording.format import Cassette
    from harness.recording.proxy import Recorder, create_proxy_app
    from harness.serve import AppThread

    path = tmp_path / "worker.yaml"
    with AppThread(create_proxy_app(dynamo.system_url, Recorder(path, "all", writer="thread"))) as proxy:
        rc, r = step(capsys, dynamo, "--kind", "dynamo", "--discovery-url", dynamo.rl_url, "--mode", "keep",
                     "--engine-url", f"http://127.0.0.1:{proxy.port}", "--version", "step-5")
    assert rc == 0, failed(r)
    recorded = [i.path for i in Cassette.load(path).interactions]
    assert recorded[:2] == ["/engine/get_weight_version", "/engine/pause_generation"]
    assert "/engine/set_weight_version" in recorded and recorded[-2:] == ["/engine/get_weight_version",
                                                                          "/engine/resume_generation"]
    assert main(["rl-step", "--base-url", dynamo.base_url, "--model", "tiny-qwen", "--kind", "dynamo", "--discovery-url",
                 dynamo.rl_url, "--engine-url", "http://127.0.0.1:1", "--engine-url", "http://127.0.0.1:2"]) == 1
    assert "2 --engine-url given for 1 discovered worker" in capsys.readouterr().err
