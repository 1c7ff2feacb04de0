"""Tokenizer parity: the report, the three policies through multi-turn rollouts, `harness parity`."""

import json

import pytest

from fake_servers.server import FakeConfig, RunningServer
from harness.cli import main
from harness.client import ClientConfig, TitoClient, TokenizerMismatchError
from harness.client.parity import compare
from harness.rollout import run_rollout

from .conftest import MODEL

TEMPLATE_FAULTS = ["template_system_default", "template_no_newline", "template_tools_format"]


def test_compare_equal_and_causes(tokenizer):
    assert compare([1, 2, 3], [1, 2, 3], tokenizer).ok
    r = compare([151644, 872, 198, 9707], [151644, 872, 9707], tokenizer)
    assert not r.ok and r.first_diff == 2 and (r.engine_token, r.local_token) == (198, 9707)
    assert "template differs from token 2" in r.cause and "\n" in r.engine_text
    special = compare([5, 151644, 7], [5, 7], tokenizer)
    assert "special token <|im_start|>" in special.cause and "local" in special.cause
    vocab = compare([5, 200000], [5, 6], tokenizer)
    assert "different vocabulary" in vocab.cause
    tail = compare([1, 2, 3, 4], [1, 2], tokenizer)
    assert tail.local_token is None and "engine rendering continues" in tail.cause
    assert "first difference at token 2" in tail.summary()


def server(kind, fault=None, **kw):
    return RunningServer(FakeConfig(kind=kind, faults=[fault] if fault else None, **kw))


KINDS = [("vllm", "vllm_generate"), ("dynamo", "dynamo_chat")]
LOCAL_BRIDGES = [("dynamo", "dynamo_chat"), ("dynamo", "dynamo_generate")]  # where parity decides stitching


@pytest.mark.parametrize("kind,transport", KINDS)
async def test_matching_templates_pass(kind, transport):
    with server(kind) as srv:
        report = await run_rollout(ClientConfig(base_url=srv.base_url, model=MODEL, renderer_transport=transport), turns=3)
    assert report.parity["ok"] and all(t.parity == "ok" for t in report.turns)


@pytest.mark.parametrize("kind,transport", LOCAL_BRIDGES)
async def test_policy_warn_marks_every_turn_and_keeps_stitching(kind, transport, caplog):
    with server(kind, "template_tools_format") as srv:
        report = await run_rollout(ClientConfig(base_url=srv.base_url, model=MODEL, renderer_transport=transport), turns=4)
    assert [t.parity for t in report.turns] == ["mismatch"] * 4
    assert [t.mode for t in report.turns] == ["mito", "tito", "tito", "tito"]
    assert not report.parity["ok"] and "tokenizer parity" in caplog.text
    assert sum("tokenizer parity" in r.message for r in caplog.records) == 1  # logged once


@pytest.mark.parametrize("policy", ["warn", "raise", "mito"])
async def test_on_vllm_generate_a_difference_is_information_only(policy, caplog):
    """Bridges come from the server's /tokenize: whatever the policy, stitching goes on, nothing raises,
    and the verdict is logged as information, not as a warning."""
    import logging

    caplog.set_level(logging.INFO, logger="harness.client")
    with server("vllm", "template_tools_format") as srv:
        report = await run_rollout(ClientConfig(base_url=srv.base_url, model=MODEL, parity_policy=policy), turns=3)
    assert [t.mode for t in report.turns] == ["mito", "tito", "tito"] and report.continuity_ok()
    assert [t.parity for t in report.turns] == ["mismatch"] * 3
    assert report.parity["ok"] is False and report.parity["affects_stitching"] is False
    notes = [r for r in caplog.records if "tokenizer parity" in r.message]
    assert len(notes) == 1 and notes[0].levelno == logging.INFO and "unaffected" in notes[0].message


@pytest.mark.parametrize("kind,transport", LOCAL_BRIDGES)
async def test_policy_raise(kind, transport):
    with server(kind, "template_no_newline") as srv:
        config = ClientConfig(base_url=srv.base_url, model=MODEL, renderer_transport=transport, parity_policy="raise")
        with pytest.raises(TokenizerMismatchError) as ei:
            await run_rollout(config, turns=2)
    rep = ei.value.report
    assert rep.first_diff is not None and rep.engine_token != rep.local_token


@pytest.mark.parametrize("kind,transport", LOCAL_BRIDGES)
async def test_policy_mito_stops_stitching(kind, transport):
    with server(kind, "template_tools_format") as srv:
        config = ClientConfig(base_url=srv.base_url, model=MODEL, renderer_transport=transport, parity_policy="mito")
        report = await run_rollout(config, turns=4)
    assert [t.mode for t in report.turns] == ["mito"] * 4
    assert [t.fallback_reason for t in report.turns[1:]] == ["tokenizer_mismatch"] * 3
    assert "first difference" in report.turns[1].fallback_detail


async def test_verdict_cached_per_server_model_tokenizer():
    with server("vllm", "template_system_default") as srv:
        config = ClientConfig(base_url=srv.base_url, model=MODEL)
        async with TitoClient(config) as c1:
            r = await c1.chat([{"role": "user", "content": "q"}], max_tokens=8)
            assert r.parity == "mismatch"
        before = srv.state.requests
        async with TitoClient(config) as c2:  # a new client: no second /tokenize for the check
            r = await c2.chat([{"role": "user", "content": "q"}], max_tokens=8)
            assert r.parity == "mismatch" and srv.state.requests == before + 1


@pytest.mark.parametrize("kind,transport", KINDS)
@pytest.mark.parametrize("fault", [None, *TEMPLATE_FAULTS])
def test_parity_command(kind, transport, fault, capsys):
    with server(kind, fault) as srv:
        code = main(["parity", "--base-url", srv.base_url, "--model", MODEL, "--transport", transport, "--json"])
    out = json.loads(capsys.readouterr().out)
    rows = {r["conversation"]: r for r in out["rows"]}
    assert set(rows) == {"plain", "system prompt", "tools + calls + results", "multi-turn", "thinking block", "non-ASCII"}
    if fault is None:
        assert code == 0 and out["mismatches"] == 0
        return
    assert code == 1 and out["mismatches"] >= 1
    bad = [r for r in rows.values() if r["verdict"] == "MISMATCH"]
    for r in bad:
        assert r["first_diff"] is not None and r["engine_token"] != r["local_token"] and r["cause"]
    expected = {"template_system_default": {"plain", "multi-turn", "thinking block", "non-ASCII"},
                "template_no_newline": {"plain", "system prompt", "tools + calls + results", "multi-turn",
                                        "thinking block", "non-ASCII"},
                "template_tools_format": {"tools + calls + results"}}[fault]
    assert {r["conversation"] for r in bad} == expected


def test_parity_command_on_a_backend_without_prompt_ids(capsys):
    with server("dynamo", dynamo_backend="mocker") as srv:
        code = main(["parity", "--base-url", srv.base_url, "--model", MODEL, "--transport", "dynamo_chat"])
    assert code == 3 and "no prompt ids" in capsys.readouterr().out


def test_parity_mismatch_through_a_users_own_tokenizer_dir(tmp_path, capsys):
    """The deliberate mismatch: the same vocabulary with another template, passed as a directory."""
    from harness.tokenizer import build_tokenizer
    path = build_tokenizer(tmp_path / "thinking-tok", "thinking")
    with server("vllm") as srv:
        code = main(["parity", "--base-url", srv.base_url, "--model", MODEL, "--tokenizer", str(path), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and [r["conversation"] for r in out["rows"] if r["verdict"] == "MISMATCH"] == ["thinking block"]
