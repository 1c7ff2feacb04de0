"""What each body fault of the catalogue does to an answer, for both servers' shapes."""

from __future__ import annotations

import pybase64

from . import npy
from .faults import Active

SIBLING = {"data": "c2libGluZyBkYXRh", "note": "not the routed experts"}
MENTION = ' (debug: "routed_experts": {"data": "AAAA", "shape": [1, 1, 1], "dtype": "uint8"})'


def _logprob_lists(body: dict):
    """Every list of per-token logprobs in the answer (choices' content, engine_data's)."""
    for c in body.get("choices") or []:
        lp = c.get("logprobs")
        if isinstance(lp, dict) and isinstance(lp.get("content"), list):
            yield lp["content"]
    ed = (body.get("nvext") or {}).get("engine_data")
    if isinstance(ed, dict) and isinstance(ed.get("completion_logprobs"), list):
        yield ed["completion_logprobs"]


def _experts_holders(body: dict):
    """Containers that hold a routed_experts payload (an object or a string)."""
    for c in body.get("choices") or []:
        if isinstance(c.get("routed_experts"), (dict, str)):
            yield c
    nvext = body.get("nvext") or {}
    if isinstance(nvext.get("routed_experts"), (dict, str)):
        yield nvext
    ed = nvext.get("engine_data")
    if isinstance(ed, dict) and isinstance(ed.get("routed_experts"), (dict, str)):
        yield ed


def _npy_header(text: str, edit) -> str:
    """Rewrite the header of a base64 `.npy` payload (`edit(header) -> header` of the same length)."""
    raw = bytearray(pybase64.b64decode(text))
    if raw[:6] != npy.MAGIC:
        return text
    at, size = npy.header_span(bytes(raw[:12]))
    header = raw[at:at + size].decode("latin-1")
    new = edit(header.rstrip("\n")).rstrip(" ")
    new = new + " " * (len(header) - len(new) - 1) + "\n"  # the header keeps its length, ending in a newline
    raw[at:at + size] = new.encode("latin-1")
    return pybase64.b64encode(bytes(raw)).decode("ascii")


_WIDER = {"|u1": "<i4", "<u2": "<i4", "<i2": "<i4", "<i4": "|u1"}


def _wider_dtype(header: str) -> str:
    for old, new in _WIDER.items():
        if f"'descr': '{old}'" in header:
            return header.replace(f"'descr': '{old}'", f"'descr': '{new}'")
    return header


def _no_descr(header: str) -> str:
    import re

    return re.sub(r"'descr': '[^']*', ", "", header)


def _experts_fault(active: Active, holder: dict) -> None:
    re_ = holder["routed_experts"]
    if isinstance(re_, str):  # .npy string (upstream vLLM) or raw int32 bytes (SGLang)
        if "experts_wrong_dtype" in active:
            fixed = _npy_header(re_, _wider_dtype)
            if fixed == re_:  # raw int32 bytes: two bytes short of a whole number of int32s
                fixed = pybase64.b64encode(pybase64.b64decode(re_)[:-2]).decode("ascii")
            holder["routed_experts"] = fixed
        if "experts_missing_dtype" in active:
            holder["routed_experts"] = _npy_header(holder["routed_experts"], _no_descr)
    else:
        if "experts_wrong_dtype" in active:
            re_["dtype"] = "int32" if re_.get("dtype", "uint8") != "int32" else "uint8"
        if "experts_missing_dtype" in active:
            re_.pop("dtype", None)
    if "experts_sibling_data" in active:
        payload = holder["routed_experts"]
        if isinstance(payload, dict):
            inner = {k: v for k, v in payload.items() if k != "data"}
            inner["meta"] = dict(SIBLING)
            inner["data"] = payload["data"]
            payload = inner
        rebuilt = {}
        for k, v in holder.items():
            if k == "routed_experts":
                rebuilt["routed_experts_debug"] = dict(SIBLING)
                rebuilt[k] = payload
            else:
                rebuilt[k] = v
        holder.clear()
        holder.update(rebuilt)
    if "experts_key_order" in active:
        payload = holder["routed_experts"]
        if isinstance(payload, dict):
            holder["routed_experts"] = {k: payload[k] for k in ("shape", "start", "dtype", "meta") if k in payload}
            holder["routed_experts"]["data"] = payload["data"]
        else:  # a string: the key moves to the front of its object
            rest = {k: v for k, v in holder.items() if k != "routed_experts"}
            holder.clear()
            holder["routed_experts"] = payload
            holder.update(rest)


def apply(active: Active, body: dict, echo_ids=None) -> dict:
    """Mutate a complete (non-streamed) answer per the active body faults; returns it."""
    if not active:
        return body
    nvext = body.get("nvext") if isinstance(body.get("nvext"), dict) else {}
    ed = nvext.get("engine_data") if isinstance(nvext.get("engine_data"), dict) else None
    choices = body.get("choices") or []
    if "empty_choices" in active:
        body["choices"] = []
        return body
    if "missing_token_ids" in active:
        for c in choices:
            c.pop("token_ids", None)
        nvext.pop("completion_token_ids", None)
        if ed is not None:
            ed.pop("completion_token_ids", None)
    if "missing_prompt_token_ids" in active:
        body.pop("prompt_token_ids", None)
        nvext.pop("prompt_token_ids", None)
        if ed is not None:
            ed.pop("prompt_token_ids", None)
    if "missing_engine_data" in active:
        nvext.pop("engine_data", None)
        ed = None
    if "engine_data_no_logprobs" in active:
        if ed is not None:
            ed.pop("completion_logprobs", None)
        for c in choices:
            c["logprobs"] = None
    if "logprobs_no_content" in active:
        for c in choices:
            c["logprobs"] = {"content": None}
    if "logprobs_one_more" in active:
        for lst in _logprob_lists(body):
            if lst:
                lst.append(lst[-1])
    if "logprobs_one_less" in active:
        for lst in _logprob_lists(body):
            if lst:
                lst.pop()
    if "echo_ids" in active and echo_ids is not None:
        for c in choices:
            c["token_ids"] = list(echo_ids)
    for holder in list(_experts_holders(body)):
        _experts_fault(active, holder)
    if "experts_string_mention" in active:
        for c in choices:
            msg = c.get("message")
            if isinstance(msg, dict):
                msg["content"] = (msg.get("content") or "") + MENTION
    return body
