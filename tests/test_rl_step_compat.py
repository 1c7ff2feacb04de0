"""prime-rl's orchestrator admin calls in the compatibility matrix: its server takes them, vLLM's own dev
routes refuse its weight update (as real vLLM 0.32 in dev mode was seen doing: 400 on /update_weights
{"weight_dir"}), and its Dynamo pool needs a discovery listener."""

import asyncio

import pytest

from fake_servers.server import FakeConfig, RunningServer
from harness.compat import matrix as m
from harness.compat.base import FAIL, PASS, Target
from harness.compat.prime_rl_admin import PrimeRLAdmin
from harness.wire.profiles import parse_label

NAME = PrimeRLAdmin.name


def cell(label: str, **cfg):
    prof = parse_label(label)
    with RunningServer(FakeConfig.for_profile(prof, **cfg)) as srv:
        seen_before = len(srv.state.received)
        c = asyncio.run(m.run_cell(PrimeRLAdmin(), Target(srv.base_url, "tiny-qwen", prof.kind, prof, label)))
        calls = [(r.method, r.path) for r in list(srv.state.received)[seen_before:]]
    return c, calls


def test_prime_rl_server_takes_the_orchestrator_weight_update():
    c, calls = cell("prime-rl")
    assert c.status == PASS, c.detail
    admin = [x for x in calls if x[1].split("?")[0] in ("/pause", "/update_weights", "/resume")]
    assert admin == [("POST", "/pause?mode=keep&clear_cache=false"), ("POST", "/update_weights"), ("POST", "/resume")]


def test_vllm_dev_mode_refuses_prime_rl_weight_dir_update_and_is_resumed_anyway():
    c, calls = cell("vllm-0.32", dev_mode=True)
    assert c.status == FAIL and "400 Bad Request" in c.detail and "/update_weights" in c.detail
    assert ("POST", "/resume") in calls  # the orchestrator resumes in its finally


def test_vllm_without_dev_mode_has_no_pause():
    c, _ = cell("vllm-0.32", dev_mode=False)
    assert c.status == FAIL and "404 Not Found" in c.detail and "/pause?mode=keep&clear_cache=false" in c.detail


def test_the_reviewed_matrix_has_a_cell_for_every_profile():
    want = m.expected()[NAME]
    assert set(want) == set(m.PROFILE_LABELS)
    assert {label for label, status in want.items() if status == PASS} == {"prime-rl", "prime-rl-5fe1a77"}
    assert NAME in m.client_names()


def test_prime_rl_dynamo_pool_refuses_dynamo_161_discovery_for_its_route_names():
    """prime-rl's pull request names routes control/pause_generation, update/update_weight_version...;
    Dynamo 1.6.1's worker lists pause_generation, set_weight_version...: discovery refuses it."""
    prof = parse_label("dynamo-1.6.1+vllm")
    with RunningServer(FakeConfig.for_profile(prof, enable_rl=True)) as srv:
        target = Target(srv.base_url, "tiny-qwen", "dynamo", prof, "dynamo-1.6.1+vllm --enable-rl")
        target.rl_url = srv.rl_url
        c = asyncio.run(m.run_cell(PrimeRLAdmin(), target))
    assert c.status == FAIL and "missing native routes" in c.detail and "control/pause_generation" in c.detail
