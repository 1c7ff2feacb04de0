"""An extract keeps what the client needs to replay its conversation: our vLLM client bridges with the server's
/tokenize and reads its answers back with /detokenize; the extract of one of three interleaved rollouts keeps
them (and the route probe), and replaying the extract to that same client answers every request."""

import asyncio

import pytest

from fake_servers.server import FakeConfig, RunningServer
from harness.captures import audit, extract
from harness.client import ClientConfig
from harness.recording.format import Cassette
from harness.recording.proxy import Recorder, create_proxy_app
from harness.recording.replay import ReplayIndex, create_replay_app
from harness.rollout import run_rollout
from harness.serve import AppThread

from .conftest import MODEL


def rollouts(url, seeds):
    cfg = ClientConfig(base_url=url, model=MODEL, renderer_transport="vllm_generate", max_retries=0)

    async def many():
        return await asyncio.gather(*[run_rollout(cfg, 3, 24, seed) for seed in seeds])

    return asyncio.run(many())


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    path = tmp_path_factory.mktemp("extract") / "c.yaml"
    with RunningServer(FakeConfig(kind="vllm")) as srv:
        rec = Recorder(path, "all", writer="thread")
        with AppThread(create_proxy_app(srv.root_url, rec)) as p:
            reports = rollouts(f"http://127.0.0.1:{p.port}/v1", [0, 1, 2])
        rec.close()
    return path, reports


def test_the_extract_keeps_tokenize_detokenize_and_the_probe(capture, tmp_path):
    path, _ = capture
    whole = Cassette.load(path)
    report = audit(path)
    conv = next(c for c in report.conversations if len(c.turns) == 3)
    cut = extract(path, tmp_path / "one.yaml", [conv.id])
    paths = [i.path for i in cut.interactions]
    assert paths.count("/tokenize") >= 2 and paths.count("/detokenize") >= 1
    assert "/v1/chat/completions/tokens" in paths  # the route probe (404) the client sent first
    # each auxiliary exchange kept is one the whole capture holds, and no other conversation's turn came along
    assert all(i.request_body in {x.request_body for x in whole.interactions} for i in cut.interactions)
    assert len(audit(Cassette(cut.interactions, {})).conversations) == 1


def test_replaying_the_extract_to_the_client_that_made_it_answers_every_request(capture, tmp_path):
    """Each conversation's extract, served alone, replays the rollout that made it: every request of the
    client is answered from the extract (no 422), and each turn goes as it was recorded (stitched)."""
    path, reports = capture
    for conv in audit(path).conversations:
        cut = extract(path, tmp_path / f"c{conv.id}.yaml", [conv.id])
        seed = cut.interactions[0].request_json()["seed"]
        recorded = next(r for r in reports if r.seed == seed) if hasattr(reports[0], "seed") else reports[seed]
        with AppThread(create_replay_app(ReplayIndex([cut]))) as srv:
            again = rollouts(f"http://127.0.0.1:{srv.port}/v1", [seed])[0]
        assert [t.mode for t in again.turns] == [t.mode for t in recorded.turns] == ["mito", "tito", "tito"]
        assert [t.completion_ids for t in again.turns] == [t.completion_ids for t in recorded.turns]
