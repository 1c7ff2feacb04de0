"""`harness rl-step`'s rows and pieces: each kind drives only routes its servers serve (the wire layer's
control-plane rows, read from the servers' code), and the discovery and /metrics readings it relies on."""

import pytest

from harness.compat.prime_rl_admin import ScenarioFailed, dynamo_workers
from harness.rl.control import _on_loopback, gauge
from harness.rl.kinds import KINDS, kind
from harness.wire.control_plane import CONTROL_PLANES, RL_DISCOVERY_PATH

# which servers' control planes each kind is driven against
SERVED_BY = {"vllm": ("vllm-0.31-dev", "vllm-0.32-dev"), "vllm-0.33": ("vllm-0.33-dev",), "prime-rl": ("prime-rl",), "dynamo": ("dynamo-1.6.1-worker",)}


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_call_of_a_kind_is_a_route_its_servers_serve(name):
    k = kind(name)
    calls = [k.pause, k.resume, *k.update_from_dir, k.set_version, k.get_version, k.is_paused]
    for plane in SERVED_BY[name]:
        routes = {(r.method, r.path) for r in CONTROL_PLANES[plane].routes}
        for c in calls:
            if c is None:
                continue
            # /collective_rpc is vLLM's dev route beside the RL ones: the vLLM rows carry it too
            assert (c.method, c.path) in routes, f"{name} sends {c.method} {c.path}, which {plane} does not serve"
        assert set(k.modes) <= {"abort", "wait", "keep"}
        assert k.abort_finish in (None, CONTROL_PLANES[plane].abort_finish)
    if k.discovery:
        assert k.discovery == RL_DISCOVERY_PATH


def test_an_unknown_kind_names_the_known_ones():
    with pytest.raises(ValueError, match="known: vllm, vllm-0.33, prime-rl, dynamo"):
        kind("sglang")


def test_a_pause_call_is_filled_from_the_mode():
    k = kind("vllm")
    call = k.fill(k.pause, mode="abort", clear_cache=False)
    assert call.query == {"mode": "abort", "clear_cache": False} and call.body is None
    d = kind("dynamo")
    assert d.fill(d.pause, mode="wait", clear_cache=True).body == {"mode": "wait", "clear_cache": True}
    assert d.fill(d.update_from_dir[0], dir="/ckpt", version="step-2").body == {"model_path": "/ckpt",
                                                                                "weight_version": "step-2"}


def test_gauge_sums_a_metric_over_its_labels_and_ignores_its_neighbours():
    text = ('# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{engine="0",model_name="m"} 3.0\n'
            'vllm:num_requests_running{engine="1",model_name="m"} 2.0\nvllm:num_requests_running_total 9.0\n'
            'vllm:num_requests_waiting{engine="0"} 7.0\n')
    assert gauge(text, "vllm:num_requests_running") == 5.0
    assert gauge(text, "dynamo_frontend_inflight_requests") is None


def test_a_worker_advertised_on_the_host_address_is_reached_on_loopback_when_discovery_is():
    assert _on_loopback("http://10.1.2.3:9345", "http://127.0.0.1:9400/v1/rl/workers") == "http://127.0.0.1:9345"
    assert _on_loopback("http://10.1.2.3:9345", "http://gpu-7:9400/v1/rl/workers") == "http://10.1.2.3:9345"


def test_prime_rl_reads_dynamo_discovery_as_its_pull_request_does():
    routes = ["abort_request", "flush_cache", "get_weight_version", "pause_generation", "resume_generation",
              "set_weight_version", "update_weights_from_disk"]  # Dynamo 1.6.1's, as recorded
    snapshot = {"protocol_version": 1, "workers": [{"model": "m", "system_url": "http://127.0.0.1:1", "routes": routes,
                                                    "instance_id": 1, "world_size": 1}]}
    with pytest.raises(ScenarioFailed, match="missing native routes.*control/get_weight_version"):
        dynamo_workers(snapshot, "m")
    with pytest.raises(ScenarioFailed, match="no bound workers for model 'other'"):
        dynamo_workers(snapshot, "other")
    with pytest.raises(ScenarioFailed, match="protocol_version 1"):
        dynamo_workers({**snapshot, "protocol_version": 2}, "m")
    named = [f"control/{r}" for r in ("pause_generation", "resume_generation", "is_paused", "get_weight_version")]
    ok = {"protocol_version": 1, "workers": [{**snapshot["workers"][0], "routes": [*named, "update/update_weight_version"]}]}
    assert [w["system_url"] for w in dynamo_workers(ok, "m")] == ["http://127.0.0.1:1"]
