"""A vcrpy preset for TITO traffic: JSON-body matching, secret scrubbing, readable cassettes.

    from harness.vcr import vcr

    with vcr.use_cassette("cassettes/my_test.yaml"):
        httpx.post(...)            # httpx (sync and async) and aiohttp clients alike

Requests match on method, path and the canonical JSON body (key order and whitespace ignored,
volatile fields such as `request_id` dropped). Secrets are scrubbed before recording. Cassettes
are written in this project's readable format (pretty JSON bodies, a `meta` mapping), which stock
vcrpy also reads.
"""

from __future__ import annotations

import vcr as _vcr

from .recording.format import Cassette, Interaction
from .recording.replay import DEFAULT_IGNORE, canonical_body
from .recording.scrub import Scrubber

SERIALIZER = "tito"


def _body_bytes(body) -> bytes:
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    try:  # file-like or iterator bodies
        return b"".join(body)
    except TypeError:
        return b""


def json_body_matcher(r1, r2, ignore=DEFAULT_IGNORE):
    """vcrpy matcher: bodies equal as canonical JSON (or as bytes when not JSON)."""
    a = canonical_body(_body_bytes(r1.body), ignore)[0]
    b = canonical_body(_body_bytes(r2.body), ignore)[0]
    if a != b:
        raise AssertionError(f"JSON bodies differ: {a[:200]!r} != {b[:200]!r}")


class _Serializer:
    """vcrpy serializer writing this project's readable cassette format."""

    @staticmethod
    def serialize(data: dict) -> str:
        interactions = []
        for item in data["interactions"]:
            req, resp = item["request"], item["response"]
            body = resp.get("body", {}).get("string")
            body = body.encode("utf-8") if isinstance(body, str) else (body or b"")
            headers = {k: v if isinstance(v, list) else [v] for k, v in (req.get("headers") or {}).items()}
            interactions.append(Interaction(
                req["method"], req["uri"], headers, _body_bytes(req.get("body")), resp["status"]["code"],
                resp["status"].get("message", ""), {k: v if isinstance(v, list) else [v]
                                                   for k, v in (resp.get("headers") or {}).items()}, body))
        return Cassette(interactions, data.get("meta") or {"recorder": "harness.vcr"}).to_yaml()

    @staticmethod
    def deserialize(text: str) -> dict:
        import yaml

        from .recording.format import _Loader

        data = yaml.load(text, Loader=_Loader)
        cassette = [Interaction.from_vcr(d) for d in data.get("interactions") or []]
        out = []
        for i in cassette:
            out.append({"request": {"body": i.request_body or None, "headers": i.request_headers, "method": i.method,
                                    "uri": i.uri},
                        "response": {"status": {"code": i.status, "message": i.reason}, "headers": i.response_headers,
                                     "body": {"string": i.response_body.decode("utf-8", "replace")}}})
        return {"version": 1, "interactions": out}


def make_vcr(scrubber: Scrubber | None = None, ignore=DEFAULT_IGNORE, **kwargs) -> _vcr.VCR:
    """A configured `vcr.VCR`; keyword arguments override the preset (e.g. record_mode)."""
    scrubber = scrubber or Scrubber()

    def before_request(request):
        request.uri = scrubber.url(request.uri)
        for name in list(request.headers):
            if scrubber.is_secret_header(name):
                request.headers[name] = scrubber.placeholder
        body = _body_bytes(request.body)
        if body:
            request.body = scrubber.body(body)
        return request

    def before_response(response):
        headers = response.get("headers") or {}
        for name in list(headers):
            if scrubber.is_secret_header(name):
                headers[name] = [scrubber.placeholder]
        body = response.get("body", {}).get("string")
        if isinstance(body, (bytes, str)):
            raw = body.encode("utf-8") if isinstance(body, str) else body
            response["body"]["string"] = scrubber.body(raw)
        return response

    options = dict(serializer=SERIALIZER, match_on=["method", "path", "query", "tito_json_body"],
                   before_record_request=before_request, before_record_response=before_response,
                   decode_compressed_response=True, record_mode="none")
    options.update(kwargs)
    v = _vcr.VCR(**options)
    v.register_serializer(SERIALIZER, _Serializer)
    v.register_matcher("tito_json_body", lambda a, b: json_body_matcher(a, b, ignore))
    return v


vcr = make_vcr()
