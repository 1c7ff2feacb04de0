"""Server-Sent Events as the OpenAI-style servers frame them: `data: {json}\n\n` per chunk, `data: [DONE]`
at the end. One framing, written by the fakes and read by the client and the cassette tools."""

from __future__ import annotations

import orjson

DONE = b"data: [DONE]\n\n"


def frame(chunk: dict) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def data_of(line: str) -> str | None:
    """The payload of a `data:` line (None for any other line: comments, events, blank lines)."""
    return line[5:].strip() if line.startswith("data:") else None


def is_done(payload: str) -> bool:
    return payload == "[DONE]"


def chunks(text: str) -> list[dict]:
    """Every JSON chunk of a recorded stream, in order (payloads that are not JSON are skipped)."""
    out = []
    for line in text.splitlines():
        payload = data_of(line)
        if payload is None or is_done(payload):
            continue
        try:
            out.append(orjson.loads(payload))
        except orjson.JSONDecodeError:
            pass
    return out
