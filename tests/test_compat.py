"""The compatibility matrix: the ecosystem's real clients against every fake profile, held to the
reviewed expected.json; the same matrix against a live server and a replay."""

import json
import subprocess
import sys

import pytest

from fake_servers.server import FakeConfig, RunningServer
from harness.compat import matrix as m
from harness.compat.base import FAIL, NA, PASS


@pytest.fixture(scope="module")
def fake_matrix():
    return m.run_on_fakes()


def test_every_client_against_every_profile_matches_the_reviewed_matrix(fake_matrix):
    assert fake_matrix.skipped == {}, f"clients not installed: {fake_matrix.skipped}"
    assert fake_matrix.clients == m.client_names() and fake_matrix.targets == m.PROFILE_LABELS
    assert len(fake_matrix.cells) == len(m.client_names()) * len(m.PROFILE_LABELS)
    changed = m.changes(fake_matrix)
    assert not changed, "\n".join(f"{c.client} x {c.target}: expected {e}, now {c.status} {c.detail}" for c, e in changed)
    assert all(c.status != "not installed" for c in fake_matrix.cells)


def test_the_matrix_shows_the_version_break_renderers_meets(fake_matrix):
    assert fake_matrix.cell("renderers", "vllm-0.31").status == PASS
    broke = fake_matrix.cell("renderers", "vllm-0.32")
    assert broke.status == FAIL and "token must be 'token_id:" in broke.detail  # the client's own error, one line
    assert fake_matrix.cell("renderers", "dynamo-1.6.1+vllm+native-generate").status == PASS
    assert fake_matrix.cell("renderers", "dynamo-1.6.1+vllm").status == NA
    assert fake_matrix.cell("verifiers-token", "prime-rl").status == PASS
    for t in ("vllm_generate", "dynamo_chat", "dynamo_generate"):
        assert any(c.status == PASS for c in fake_matrix.cells if c.client == f"tito:{t}")


def test_verifiers_train_client_runs_four_turns_and_meets_the_routed_experts_format(fake_matrix):
    """verifiers 0.4's TrainClient, in its own venv: 4 stitched turns on prime-rl's server; its trace
    commit reads routed experts only in prime-rl's object form, not vLLM's .npy string."""
    assert fake_matrix.cell("verifiers-train", "prime-rl").status == PASS
    npy = fake_matrix.cell("verifiers-train", "vllm-0.31")
    assert npy.status == FAIL and npy.detail.startswith("TypeError: string indices must be integers")
    assert "token must be 'token_id:" in fake_matrix.cell("verifiers-train", "vllm-0.32").detail
    assert fake_matrix.cell("verifiers-train", "dynamo-1.6.1+mocker").status == NA


def test_verifiers_train_without_moe_passes_on_vllm_031():
    """Without routed experts the same client passes on vLLM 0.31: the failure above is the format."""
    from harness.wire.profiles import parse_label
    from harness.compat.base import Target
    from harness.compat.verifiers_train import VerifiersTrain

    prof = parse_label("vllm-0.31")
    with RunningServer(FakeConfig(kind="vllm", profile="vllm-0.31")) as srv:
        import asyncio

        cell = asyncio.run(m.run_cell(VerifiersTrain(), Target(srv.base_url, "tiny-qwen", "vllm", prof, "vllm-0.31")))
    assert cell.status == PASS, cell.detail


def test_a_changed_cell_fails_the_check_and_names_the_error(fake_matrix):
    want = json.loads(m.EXPECTED.read_text())["matrix"]
    want["renderers"]["vllm-0.32"] = PASS  # as if a profile change broke a client that used to work
    changed = m.changes(fake_matrix, want)
    assert [(c.client, c.target, e) for c, e in changed] == [("renderers", "vllm-0.32", PASS)]
    assert "token_id:" in changed[0][0].detail


def test_the_docs_show_the_expected_matrix():
    from scripts.docs_reference import compat_page  # the reference page, generated when the site is built

    want = m.expected()
    table = m.Matrix(m.client_names(), m.PROFILE_LABELS,
                     [m.Cell(c, t, want[c][t]) for c in m.client_names() for t in m.PROFILE_LABELS]).markdown()
    assert table in compat_page()


def test_cli_on_fakes_json_junit_and_live_and_replay(tmp_path, fake_vllm_server):
    junit = tmp_path / "compat.xml"
    run = subprocess.run([sys.executable, "-m", "harness.cli", "compat", "--profiles", "vllm-0.31,vllm-0.32",
                          "--clients", "renderers,openai-sdk", "--json", "--junit", str(junit)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    data = json.loads(run.stdout)
    assert data["changed"] == [] and len(data["cells"]) == 4
    xml = junit.read_text()
    assert xml.count("<testcase") == 4 and xml.count("<failure") == 1 and "token_id:" in xml
    live = subprocess.run([sys.executable, "-m", "harness.cli", "compat", "--base-url", fake_vllm_server.base_url,
                           "--server", "vllm", "--label", "my-vllm", "--json"], capture_output=True, text=True, timeout=300)
    cells = {c["client"]: c["status"] for c in json.loads(live.stdout)["cells"]}
    # a live server is probed for its routes: the default fake (vLLM 0.32) has no /v1/chat/completions/tokens
    assert cells == {"tito:vllm_generate": PASS, "tito:dynamo_chat": NA, "tito:dynamo_generate": NA,
                     "openai-sdk": PASS, "renderers": FAIL, "verifiers-token": NA, "verifiers-train": FAIL,
                     "prime-rl-orchestrator": FAIL}  # (its pause is a 404 without dev mode)
    bad = subprocess.run([sys.executable, "-m", "harness.cli", "compat", "--profiles", "vllm-9"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown profile" in bad.stderr


def test_replayed_traffic_answers_the_client_that_recorded_it(tmp_path):
    """Record our client's scenario through the proxy, then run the matrix against the replay."""
    from harness.recording.proxy import Recorder, create_proxy_app
    from harness.serve import AppThread

    path = tmp_path / "ours.yaml"
    with RunningServer(FakeConfig(kind="vllm")) as srv:
        rec = Recorder(path, "all", meta={"server": "vllm", "model": "tiny-qwen"})
        with AppThread(create_proxy_app(srv.root_url, rec)) as p:
            live = m.run_live(f"http://127.0.0.1:{p.port}/v1", "vllm", "tiny-qwen", ["tito:vllm_generate"])
    assert live.cells[0].status == PASS
    run = subprocess.run([sys.executable, "-m", "harness.cli", "compat", "--cassettes", str(path), "--clients",
                          "tito:vllm_generate,openai-sdk", "--json"], capture_output=True, text=True, timeout=300)
    cells = {c["client"]: c for c in json.loads(run.stdout)["cells"]}
    assert cells["tito:vllm_generate"]["status"] == PASS  # the same requests: answered from the cassette
    assert cells["openai-sdk"]["status"] == FAIL and "422" in cells["openai-sdk"]["detail"]  # never recorded
