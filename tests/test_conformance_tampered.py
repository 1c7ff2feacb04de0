"""harness conformance on a tampered cassette whose recorded URI holds an escape: one error line, exit 2 (it was an
internal error: the URL could not be sent)."""

import json

from harness.cli import main
from harness.recording.format import Cassette, Interaction


def test_a_uri_with_an_escape_is_refused_in_words(tmp_path, capsys):
    body = {"model": "tiny-qwen", "prompt": "a"}
    inter = Interaction(method="POST", uri="http://127.0.0.1:8000/v1/\x1b[31mred\x1b[0m",
                        request_headers={"content-type": ["application/json"]}, request_body=json.dumps(body).encode(),
                        status=200, reason="OK", response_headers={"content-type": ["application/json"]},
                        response_body=b'{"count": 1, "max_model_len": 2048, "tokens": [64], "token_strs": null}')
    path = tmp_path / "tampered.yaml"
    Cassette([inter], {"profile": "vllm-0.32", "server": "vllm", "model": "tiny-qwen"}).save(path)
    assert main(["conformance", "--cassettes", str(path)]) == 2
    err = capsys.readouterr().err
    assert "interaction 0" in err and "cannot be sent" in err and "\x1b" not in err
