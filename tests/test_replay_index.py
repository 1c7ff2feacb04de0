"""Replay through the request index beside a capture: start-up reads no interaction, a request reads only the
one it is answered with, answers equal a whole load's, and a stale index or a capture still being written
is rebuilt first, with a line that says so."""

import logging

import orjson
import pytest

from harness.recording import request_index
from harness.recording.format import Cassette, Interaction
from harness.recording.journal import Journal
from harness.recording.replay import ReplayIndex, load_index

N = 2000


def exchange(k: int, repeat: int = 0) -> Interaction:
    body = orjson.dumps({"model": "m", "prompt": f"p{k % (N // 2)}", "max_tokens": 4})  # each prompt twice
    answer = orjson.dumps({"id": f"c{k}", "choices": [{"text": f"answer {k}", "index": 0}], "n": repeat})
    return Interaction("POST", "http://up/v1/completions", {"Content-Type": ["application/json"]}, body, 200, "OK",
                       {"Content-Type": ["application/json"]}, answer, None, 1.0, 1_700_000_000 + k, xid=f"x-{k}")


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    path = tmp_path_factory.mktemp("rix") / "big.yaml"
    Cassette([exchange(k) for k in range(N)], {"server": "vllm"}).save(path)
    return path


@pytest.fixture
def reads(monkeypatch):
    count = [0]
    real = request_index.load_span

    def counting(*a, **kw):
        count[0] += 1
        return real(*a, **kw)

    monkeypatch.setattr(request_index, "load_span", counting)
    return count


def test_start_up_reads_no_interaction_and_a_request_reads_one(capture, reads):
    load_index([capture])  # builds the index beside it (a pass over the capture)
    assert capture.with_name(capture.name + ".rix").exists()
    reads[0] = 0
    index = load_index([capture])
    assert index.count == N and reads[0] == 0
    body = exchange(7).request_body
    first, second = index.lookup("POST", "/v1/completions", body), index.lookup("POST", "/v1/completions", body)
    assert reads[0] == 2
    assert orjson.loads(first.response_body)["id"] == "c7" and orjson.loads(second.response_body)["id"] == f"c{7 + N // 2}"


def test_answers_equal_a_whole_load_including_repeats_and_misses(capture):
    disk, whole = load_index([capture], repeat="cycle"), ReplayIndex([Cassette.load(capture)], repeat="cycle")
    for k in (0, 1, 999, 1000, 1999, 5, 5, 5):
        body = exchange(k).request_body
        a, b = disk.lookup("POST", "/v1/completions", body), whole.lookup("POST", "/v1/completions", body)
        assert (a.response_body, a.xid) == (b.response_body, b.xid)
    miss = orjson.dumps({"model": "m", "prompt": "p3", "max_tokens": 5})
    assert disk.lookup("POST", "/v1/completions", miss) is None
    info = disk.closest("POST", "/v1/completions", miss)
    assert info["closest"]["path"] == "/v1/completions"
    assert any("max_tokens" in d for d in info["differences"])
    assert disk.closest("GET", "/nope", b"")["recorded_routes"] == ["POST /v1/completions"]


def test_a_stale_index_is_rebuilt_first_and_says_so(tmp_path, caplog):
    path = tmp_path / "grows.yaml"
    Cassette([exchange(k) for k in range(10)]).save(path)
    assert load_index([path]).count == 10
    Cassette([exchange(k) for k in range(11)]).save(path)
    with caplog.at_level(logging.WARNING, logger="harness.recording"):
        index = load_index([path])
    assert index.count == 11 and "stale" in caplog.text and "rebuilding" in caplog.text
    assert orjson.loads(index.lookup("POST", "/v1/completions", exchange(10).request_body).response_body)["id"] == "c10"


def test_a_capture_still_being_written_is_indexed_afresh_and_says_so(tmp_path, caplog):
    path = tmp_path / "live.yaml"
    Cassette([exchange(k) for k in range(4)]).save(path)
    load_index([path])
    journal = Journal(path)  # a recorder holds it: the file may grow under the replay
    try:
        with caplog.at_level(logging.WARNING, logger="harness.recording"):
            assert load_index([path]).count == 4
        assert "still being written" in caplog.text
    finally:
        journal.close()
