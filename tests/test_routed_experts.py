import base64
import json

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.wire.routed_experts import RoutedExpertsError, decode_payload, find_payload, split_body


def payload(arr: np.ndarray, dtype: str | None = None, start: int = 0, order=("data", "shape", "start", "dtype")):
    full = {"data": base64.b64encode(arr.tobytes()).decode(), "shape": list(arr.shape), "start": start,
            "dtype": dtype or str(arr.dtype)}
    return {k: full[k] for k in order if k in full}


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "int32"])
def test_decode_each_dtype(dtype):
    arr = (np.arange(60) % 7).astype(dtype).reshape(5, 3, 4)
    out = decode_payload(payload(arr, start=2))
    assert out.array.dtype == np.dtype(dtype)
    assert np.array_equal(out.array, arr) and out.start == 2 and out.shape == (5, 3, 4)


def test_absent_dtype_means_uint8():
    arr = np.array([[[1, 2]], [[3, 4]]], dtype=np.uint8)
    p = payload(arr)
    del p["dtype"]
    assert np.array_equal(decode_payload(p).array, arr)


@pytest.mark.parametrize("mutate,message", [
    (lambda p: p.update(dtype="float64"), "dtype 'float64' is not one of"),
    (lambda p: p.update(dtype="int32"), "needs"),  # uint8 data read as int32: size check
    (lambda p: p.update(shape=[2, 2]), "needs"),
    (lambda p: p.update(data="!!notbase64!!"), "not valid base64"),
    (lambda p: p.pop("data"), "has no 'data'"),
    (lambda p: p.update(shape="3x4"), "shape must be a list"),
    (lambda p: p.update(start=-1), "start must be"),
])
def test_decode_errors_are_clear(mutate, message):
    p = payload(np.zeros((3, 2, 2), dtype=np.uint8))
    mutate(p)
    with pytest.raises(RoutedExpertsError, match=message):
        decode_payload(p)


def _body(re_obj, before=None, after=None):
    choice = {"index": 0, "message": {"role": "assistant", "content": "hi"}, **(before or {}),
              "routed_experts": re_obj, **(after or {})}
    return {"id": "x", "choices": [choice]}


def roundtrip(body: dict) -> np.ndarray:
    raw = orjson.dumps(body)
    parsed, blobs = split_body(raw)
    assert len(blobs) == 1, "exactly one routed_experts blob cut out"
    assert len(raw) - sum(len(b) for b in blobs) < len(raw)
    return decode_payload(find_payload(parsed), blobs).array


ARR = (np.arange(4 * 3 * 2) % 5).astype(np.uint8).reshape(4, 3, 2)


@pytest.mark.parametrize("order", [("data", "shape", "start", "dtype"), ("shape", "data", "dtype", "start"),
                                   ("dtype", "start", "shape", "data")])
def test_split_any_key_order(order):
    assert np.array_equal(roundtrip(_body(payload(ARR, order=order))), ARR)


def test_split_ignores_sibling_data_keys():
    p = payload(ARR, order=("shape", "start", "dtype", "data"))
    inner = {"meta": {"data": "bm90IHRoaXM="}, **p}  # nested object with its own data first
    body = _body(inner, before={"routed_experts_debug": {"data": "c2libGluZw=="}, "data": [1, 2, 3]})
    assert np.array_equal(roundtrip(body), ARR)


def test_split_ignores_strings_that_mention_routed_experts():
    trap = '"routed_experts": {"data": "AAAA", "shape": [1, 1, 1]} and a \\" quote \\\\'
    body = _body(payload(ARR), before={"message": {"role": "assistant", "content": trap}})
    body["note"] = 'also "routed_experts": {"data": "AAAA"}'
    assert np.array_equal(roundtrip(body), ARR)
    assert split_body(orjson.dumps(body))[0]["choices"][0]["message"]["content"] == trap


def test_split_null_and_absent():
    assert split_body(b'{"choices": [{"routed_experts": null}]}') == ({"choices": [{"routed_experts": None}]}, [])
    assert split_body(b'{"a": 1}') == ({"a": 1}, [])


def test_split_dynamo_engine_data_and_nvext_both():
    other = (ARR + 1).astype(np.uint8)
    body = {"choices": [{"index": 0}], "nvext": {"routed_experts": payload(other),
                                                  "engine_data": {"routed_experts": payload(ARR)}}}
    parsed, blobs = split_body(orjson.dumps(body))
    assert len(blobs) == 2
    assert np.array_equal(decode_payload(find_payload(parsed), blobs).array, ARR)  # engine_data first
    assert np.array_equal(decode_payload(parsed["nvext"]["routed_experts"], blobs).array, other)


def test_split_with_whitespace_pretty_json():
    body = _body(payload(ARR, order=("shape", "data", "start", "dtype")))
    raw = json.dumps(body, indent=2).encode()
    parsed, blobs = split_body(raw)
    assert np.array_equal(decode_payload(find_payload(parsed), blobs).array, ARR)


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.text(max_size=20),
                      st.sampled_from(['"routed_experts"', '{"data": "AAAA"}', "\\", '\\"', "routed_experts"]))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(["data", "shape", "x", "routed_experts_x", "y"]),
                                                inner, max_size=4)), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(before=st.dictionaries(st.sampled_from(["data", "note", "a", "b"]), json_value, max_size=4),
       after=st.dictionaries(st.sampled_from(["data", "tail", "c"]), json_value, max_size=3),
       extra=st.dictionaries(st.sampled_from(["meta", "note", "zz"]), json_value, max_size=2),
       order=st.permutations(["data", "shape", "start", "dtype"]),
       rows=st.integers(0, 6), dtype=st.sampled_from(["uint8", "uint16", "int16", "int32"]),
       pretty=st.booleans())
def test_split_matches_json_loads_on_generated_bodies(before, after, extra, order, rows, dtype, pretty):
    arr = (np.arange(rows * 2 * 3) % 97).astype(dtype).reshape(rows, 2, 3)
    re_obj = {**extra, **payload(arr, dtype=dtype, order=tuple(order))}
    body = {**{f"pre_{k}": v for k, v in before.items()}, "choices": [{"routed_experts": re_obj}],
            **{f"post_{k}": v for k, v in after.items()}}
    raw = json.dumps(body, indent=1 if pretty else None).encode()
    parsed, blobs = split_body(raw)
    expected = json.loads(raw)
    expected["choices"][0]["routed_experts"]["data"] = parsed["choices"][0]["routed_experts"]["data"]
    assert parsed == expected  # everything but the blob parses exactly as json.loads does
    got = decode_payload(parsed["choices"][0]["routed_experts"], blobs)
    assert np.array_equal(got.array, arr)


def test_a_blob_with_json_escapes_is_unescaped_and_still_decoded():
    """A server may escape '/' as '\\/' inside the base64: the cut blob then fails validation and is
    unescaped by the JSON parser before decoding, in both the object and the string form."""
    import base64
    import io
    import json

    import numpy as np

    from harness.wire.routed_experts import decode_payload, find_payload, split_body

    arr = np.full((2, 3, 4), 255, dtype=np.uint8)  # all 0xff: base64 '////...'
    b64 = base64.b64encode(arr.tobytes()).decode()
    assert "/" in b64
    obj = ('{"choices":[{"routed_experts":{"data":"%s","shape":[2,3,4]}}]}' % b64.replace("/", "\\/")).encode()
    body, blobs = split_body(obj)
    assert np.array_equal(decode_payload(find_payload(body), blobs).array, arr)
    buf = io.BytesIO()
    np.save(buf, arr)
    npy = base64.b64encode(buf.getvalue()).decode()
    string = json.dumps({"choices": [{"routed_experts": npy}]}).replace("/", "\\/").encode()
    body, blobs = split_body(string)
    assert np.array_equal(decode_payload(find_payload(body), blobs).array, arr)
