"""The `harness` command as a user runs it."""

import json
import re
import subprocess
import sys

import pytest

from harness.cli import main

from .conftest import MODEL


def run(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=timeout)


def test_rollout_json_against_fake_vllm(fake_vllm, capsys):
    assert main(["rollout", "--base-url", fake_vllm, "--model", MODEL, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["transport"] == "vllm_generate" and out["summary"] == {"tito_turns": 3, "mito_turns": 1}
    turns = out["turns"]
    assert [t["index"] for t in turns] == [0, 1, 2, 3]
    for key in ("index", "mode", "fallback_reason", "prompt_ids", "completion_ids", "completion_logprobs", "finish_reason"):
        assert key in turns[0]
    for prev, cur in zip(turns, turns[1:]):
        assert cur["prompt_ids"][: len(prev["prompt_ids"]) + len(prev["completion_ids"])] == prev["prompt_ids"] + prev["completion_ids"]


def test_rollout_table_against_fake_dynamo(fake_dynamo, capsys):
    assert main(["rollout", "--base-url", fake_dynamo, "--model", MODEL, "--transport", "dynamo_chat", "--turns", "3"]) == 0
    out = capsys.readouterr().out
    assert "TITO turns: 2, MITO turns: 1" in out and "no_prior_turn" in out and "tokenizer parity: ok" in out


def test_rollout_unreachable_server_fails_clearly(capsys):
    code = main(["rollout", "--base-url", "http://127.0.0.1:9/v1", "--model", MODEL, "--retries", "0", "--timeout", "2"])
    assert code == 2 and "TransportError" in capsys.readouterr().err


def test_rollout_error_answer_fails_clearly(fake_vllm, capsys):
    assert main(["rollout", "--base-url", fake_vllm, "--model", "nope"]) == 2
    err = capsys.readouterr().err
    assert "ModelNotFoundError" in err and "does not exist" in err


def test_fake_command_port_zero_prints_port_and_serves():
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "fake", "dynamo", "--port", "0", "--model", "m1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/v1", line)
        assert m, line
        import httpx
        models = httpx.get(f"http://127.0.0.1:{m.group(1)}/v1/models").json()
        assert models["data"][0]["id"] == "m1"
    finally:
        proc.terminate()
        proc.wait(10)


def test_fake_command_rejects_bad_options():
    r = run("fake", "vllm", "--fault", "no_such_fault", "--port", "0")
    assert r.returncode == 2 and "unknown fault" in r.stderr
    r = run("fake", "vllm", "--moe", "1,2", "--port", "0")
    assert r.returncode == 2 and "LAYERS,TOP_K,EXPERTS" in r.stderr


def test_tokenizer_build(tmp_path, capsys):
    assert main(["tokenizer", "build", str(tmp_path / "tok")]) == 0
    assert "[9707, 1879]" in capsys.readouterr().out and (tmp_path / "tok" / "tokenizer.json").exists()


def test_faults_lists_catalogue(capsys):
    assert main(["faults"]) == 0
    assert "logprobs_one_less" in capsys.readouterr().out


@pytest.mark.timeout(120)
def test_demo_runs_both_transports():
    r = run("demo", "--turns", "3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("TITO turns: 2, MITO turns: 1; token continuity: ok") == 2


def test_rollout_runs_without_tools_when_the_server_refuses_them(capsys):
    import json

    from fake_servers.server import FakeConfig, RunningServer

    with RunningServer(FakeConfig(kind="vllm", tool_parser=None)) as srv:  # no --enable-auto-tool-choice
        code = main(["rollout", "--base-url", srv.base_url, "--model", "tiny-qwen", "--turns", "3", "--json"])
        report = json.loads(capsys.readouterr().out)
        assert code == 0 and report["tools"] is False and "refuses tools" in report["notes"][0]
        assert [t["mode"] for t in report["turns"]] == ["mito", "tito", "tito"]
        code = main(["rollout", "--base-url", srv.base_url, "--model", "tiny-qwen", "--turns", "2", "--no-tools"])
        text = capsys.readouterr().out
        assert code == 0 and "ran without tools (--no-tools)" in text and "TITO turns: 1" in text
    with RunningServer(FakeConfig(kind="vllm")) as srv:  # a server that takes tools keeps them
        assert main(["rollout", "--base-url", srv.base_url, "--model", "tiny-qwen", "--turns", "2", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["tools"] is True and report["notes"] == []
