"""What each body fault of the catalogue does to an answer, for both servers' shapes."""

from __future__ import annotations

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
    """(container, key) pairs that hold a routed_experts payload."""
    for c in body.get("choices") or []:
        if isinstance(c.get("routed_experts"), dict):
            yield c
    nvext = body.get("nvext") or {}
    if isinstance(nvext.get("routed_experts"), dict):
        yield nvext
    ed = nvext.get("engine_data")
    if isinstance(ed, dict) and isinstance(ed.get("routed_experts"), dict):
        yield ed


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
        re = holder["routed_experts"]
        if "experts_wrong_dtype" in active:
            re["dtype"] = "int32" if re.get("dtype", "uint8") != "int32" else "uint8"
        if "experts_missing_dtype" in active:
            re.pop("dtype", None)
        if "experts_sibling_data" in active:
            inner = {k: v for k, v in re.items() if k != "data"}
            inner["meta"] = dict(SIBLING)
            inner["data"] = re["data"]
            rebuilt = {}
            for k, v in holder.items():
                if k == "routed_experts":
                    rebuilt["routed_experts_debug"] = dict(SIBLING)
                    rebuilt[k] = inner
                else:
                    rebuilt[k] = v
            holder.clear()
            holder.update(rebuilt)
            re = inner
        if "experts_key_order" in active:
            holder["routed_experts"] = {k: re[k] for k in ("shape", "start", "dtype", "meta") if k in re}
            holder["routed_experts"]["data"] = re["data"]
    if "experts_string_mention" in active:
        for c in choices:
            msg = c.get("message")
            if isinstance(msg, dict):
                msg["content"] = (msg.get("content") or "") + MENTION
    return body
