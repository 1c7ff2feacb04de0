"""No input makes a fake server answer 500 or hang: hypothesis-generated bodies on every route."""

import json
import os
import time
import tracemalloc

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.wire.profiles import labels, parse_label

ROUTES = {
    "vllm": ["/v1/chat/completions", "/v1/chat/completions/tokens", "/tokenize", "/detokenize",
             "/inference/v1/generate", "/v1/completions", "/v1/models", "/version", "/nope"],
    "dynamo": ["/v1/chat/completions", "/tokenize", "/v1/models", "/inference/v1/generate"],
}
# every profile, with each Dynamo worker and its native generate route (from the profile table)
PROFILES = [label for label in labels() if not label.endswith("+vllm")]  # (+vllm+native-generate covers +vllm)
FIELDS = ["model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "logprobs",
          "top_logprobs", "stream", "stop", "seed", "n", "tools", "tokens", "token_ids", "sampling_params",
          "prompt", "return_token_ids", "nvext", "add_generation_prompt", "stream_options", "priority",
          "stop_token_ids", "chat_template_kwargs", "ignore_eos"]
# what the first strategies missed and the real servers were asked (harness/hostile.py): huge and
# fractional numbers beyond 64 bits, wrong types inside id arrays
hostile_number = st.sampled_from([1e30, -1e30, 1e308, 2 ** 70, -(2 ** 70), 2 ** 63, 2 ** 32, 1.5, 0.5, -1, 0])
scalar = st.one_of(st.none(), st.booleans(), st.integers(-5, 300), st.integers(-2**63, 2**63), hostile_number,
                   st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
                   st.sampled_from(["tiny-qwen", "user", "assistant", "tool", "system", "engine_data"]))
ids = st.lists(st.one_of(st.integers(0, 151000), hostile_number, st.none(), st.text(max_size=3),
                         st.lists(st.integers(0, 9), max_size=2)), max_size=6)
value = st.recursive(scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.sampled_from(["role", "content", "type", "text", "extra_fields", "token_data", "max_tokens",
                                     "logprobs", "tool_call_id", "function", "name", "agent_hints"]), inner, max_size=4)),
    max_leaves=10)
ID_FIELDS = {"tokens": ids, "token_ids": ids, "prompt": ids, "stop_token_ids": ids,
             "nvext": st.fixed_dictionaries({"token_data": ids}), "sampling_params": st.dictionaries(
                 st.sampled_from(["max_tokens", "logprobs", "temperature", "seed", "routed_experts_prompt_start"]),
                 scalar, max_size=3)}
message = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "tool", "system", "bogus"]),
                                 "content": st.one_of(st.text(max_size=20), st.none(), value)})
body = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS), value, max_size=6),
    st.fixed_dictionaries({"model": st.just("tiny-qwen"), "messages": st.lists(message, max_size=3)},
                          optional={k: value for k in FIELDS[2:]}),
    value,
)
VALID = {
    "/v1/chat/completions": {"model": "tiny-qwen", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8},
    "/v1/chat/completions/tokens": {"model": "tiny-qwen", "tokens": [151644, 872, 198, 6023], "max_tokens": 8},
    "/tokenize": {"model": "tiny-qwen", "messages": [{"role": "user", "content": "hi"}]},
    "/detokenize": {"model": "tiny-qwen", "tokens": [9707, 1879]},
    "/inference/v1/generate": {"model": "tiny-qwen", "token_ids": [9707], "sampling_params": {"max_tokens": 4}},
    "/v1/completions": {"model": "tiny-qwen", "prompt": "Hello", "max_tokens": 4},
}


def near_valid(route: str):
    """A valid body for `route` with up to three fields replaced or added and two removed."""
    base = VALID.get(route, VALID["/v1/chat/completions"])
    return st.tuples(st.dictionaries(st.sampled_from(FIELDS), value, max_size=3),
                     st.lists(st.sampled_from(FIELDS), max_size=2)).map(
        lambda t: {**{k: v for k, v in base.items() if k not in t[1]}, **t[0]})


def hostile_ids(route: str):
    """A valid body whose id array (or sampling params) holds hostile values."""
    base = VALID.get(route, VALID["/v1/chat/completions"])
    return st.sampled_from(sorted(ID_FIELDS)).flatmap(lambda k: ID_FIELDS[k].map(lambda v: {**base, k: v}))


def deep(depth: int):
    v: object = 1
    for _ in range(depth):
        v = {"k": [v]}
    return v


def payload_for(route: str):
    def dump(b):
        try:
            return json.dumps(b).encode()
        except RecursionError:
            return b"{}"

    invalid_utf8 = st.binary(min_size=1, max_size=8).map(
        lambda junk: b'{"model": "tiny-qwen", "messages": [{"role": "user", "content": "' + junk.replace(b'"', b"")
        + b'\xff"}], "max_tokens": 2}')
    nested = st.integers(100, 400).map(lambda d: dump({**VALID.get(route, VALID["/v1/chat/completions"]),
                                                       "metadata": deep(d)}))
    return st.one_of(body.map(dump), near_valid(route).map(dump), near_valid(route).map(dump),
                     hostile_ids(route).map(dump), hostile_ids(route).map(dump), invalid_utf8, nested,
                     st.binary(max_size=40))


def requests_for(kind: str):
    return st.sampled_from(ROUTES[kind]).flatmap(lambda r: st.tuples(st.just(r), payload_for(r)))


LIMIT_S, LIMIT_BYTES = 1.0, 200 * 1024 * 1024  # any input: an answer within a second and 200 MB


@pytest.mark.parametrize("fake_profile", PROFILES, indirect=True)
def test_no_input_gives_500_or_hangs(request, fake_profile):
    """No input gets a 5xx, a hang, or more than a second or 200 MB of the fake's work."""
    kind = "dynamo" if fake_profile.startswith("dynamo") else "vllm"
    srv = request.getfixturevalue(f"fake_{kind}_server")
    client = httpx.Client(base_url=srv.root_url, timeout=10)
    client.post(ROUTES[kind][0], json=VALID.get(ROUTES[kind][0], VALID["/v1/chat/completions"]))  # (warm: templates)
    slowest = [0.0, 0]
    recorded_5xx = parse_label(fake_profile).recorded_5xx  # where the real server of this version was recorded giving one

    # (100 bodies a profile, traced, in the suite: the random hostile suite holds each answer to a real one; set
    # FUZZ_EXAMPLES for a longer hunt)
    @settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 100)), deadline=None, suppress_health_check=list(HealthCheck))
    @given(req=requests_for(kind), method=st.sampled_from(["POST", "POST", "POST", "GET"]))
    def check(req, method):
        route, payload = req
        tracemalloc.start()
        t0 = time.perf_counter()
        resp = client.request(method, route, content=payload if method == "POST" else None)
        took = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()  # (the server runs in this process: its allocations count)
        tracemalloc.stop()
        if took >= LIMIT_S:  # once more: work that grows with the input is slow again, a pause of the machine is not
            t0 = time.perf_counter()
            client.request(method, route, content=payload if method == "POST" else None)
            took = time.perf_counter() - t0
        slowest[0], slowest[1] = max(slowest[0], took), max(slowest[1], peak)
        assert took < LIMIT_S and peak < LIMIT_BYTES, (route, payload[:200], f"{took:.2f} s, {peak / 1e6:.0f} MB")
        assert resp.status_code < 500 or resp.status_code in recorded_5xx, \
            (route, payload[:200], resp.text[:300])
        if resp.status_code >= 400:
            err = resp.json()
            if kind == "dynamo" and route != "/inference/v1/generate":
                assert set(err) >= {"message", "type", "code"}
            else:
                assert "error" in err or "detail" in err or set(err) >= {"message", "type", "code"}
        elif resp.headers["content-type"].startswith("application/json") and resp.content:
            resp.json()

    try:
        check()
    finally:
        client.close()
    print(f"{fake_profile}: slowest answer {slowest[0]:.3f} s, most memory {slowest[1] / 1e6:.1f} MB")
