"""The conversation a cassette holds, rebuilt as messages for our client to send again.

The conversation comes from `meta.conversation` when the recorder wrote one; otherwise it is rebuilt from the
requests: messages-in turns carry their messages, /v1/chat/completions/tokens turns too;
/inference/v1/generate turns take their new messages from the /tokenize call that computed their bridge;
Dynamo token_data turns from their bridge tokens, decoded and read back as ChatML messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..recording.format import Cassette, Interaction
from .bridge import bridge_messages as parse_chatml  # noqa: F401 (a ChatML bridge read back into messages)
from .turns import turn_kind, turn_tokens

CLIENT_FIELDS = {"model", "messages", "tools", "logprobs", "top_logprobs", "temperature", "top_p", "seed", "stop",
                 "stream", "stream_options", "return_token_ids", "max_completion_tokens", "max_tokens", "priority",
                 "tokens", "nvext"}


@dataclass
class ScriptTurn:
    messages: list[dict]
    tools: list[dict] | None = None
    sampling: dict = field(default_factory=dict)


@dataclass
class Script:
    transport: str
    tito_route: str
    model: str
    stream: bool
    turns: list[ScriptTurn]
    extra_body: dict = field(default_factory=dict)


def _sampling(body: dict, path: str) -> dict:
    if path == "/inference/v1/generate":
        sp = body.get("sampling_params") or {}
        s = {k: sp[k] for k in ("max_tokens", "temperature", "top_p", "seed", "stop") if sp.get(k) is not None}
        if sp.get("logprobs"):
            s["top_logprobs"] = sp["logprobs"]
    else:
        s = {k: body[k] for k in ("temperature", "top_p", "seed", "stop", "top_logprobs") if body.get(k) is not None}
        mt = body.get("max_completion_tokens", body.get("max_tokens"))
        if mt is not None:
            s["max_tokens"] = mt
    nvext = body.get("nvext") if isinstance(body.get("nvext"), dict) else {}
    priority = body.get("priority", (nvext.get("agent_hints") or {}).get("priority"))
    if priority is not None:
        s["priority"] = priority
    return s


def rebuild(cassette: Cassette, tokenizer=None) -> Script:
    meta = cassette.meta or {}
    inters = cassette.interactions
    # a 404 on a tokens-in route is the client probing for it (tito_route auto), not a turn
    probed = any(turn_kind(i) == "tito" and i.status == 404 for i in inters)
    turn_reqs = [(n, i) for n, i in enumerate(inters)
                 if turn_kind(i) is not None and i.status < 500 and not (turn_kind(i) == "tito" and i.status == 404)]
    if not turn_reqs:
        raise ValueError("the cassette holds no chat or generate request to replay")
    bodies = [i.request_json() or {} for _, i in turn_reqs]
    dynamo = any(isinstance(b.get("nvext"), dict) for b in bodies)
    paths = {i.path for _, i in turn_reqs}
    route = ("auto" if probed else "chat_tokens" if "/v1/chat/completions/tokens" in paths else
             "generate" if "/inference/v1/generate" in paths else "auto")
    model = next((b.get("model") for b in bodies if b.get("model")), None) or meta.get("model") or "model"
    stream = any(b.get("stream") for b in bodies)
    # fields the client does not write itself came from the caller: replay them as extra_body
    extra: dict = {k: v for k, v in bodies[0].items() if k not in CLIENT_FIELDS}
    if dynamo:
        nv = next(b["nvext"] for b in bodies if isinstance(b.get("nvext"), dict))
        fields = [f for f in nv.get("extra_fields") or [] if f not in ("engine_data", "completion_token_ids")]
        rest = {k: v for k, v in nv.items() if k not in ("extra_fields", "token_data", "agent_hints")}
        if fields or rest:
            extra["nvext"] = {**rest, **({"extra_fields": fields} if fields else {})}
    if meta.get("conversation"):
        turns = [ScriptTurn(t["messages"], t.get("tools"), t.get("sampling") or {}) for t in meta["conversation"]]
        return Script(meta.get("transport") or ("dynamo_chat" if dynamo else "vllm_generate"),
                      meta.get("tito_route") or route, model, stream, turns, extra)

    turns: list[ScriptTurn] = []
    prev_answer: dict | None = None
    for (n, inter), body in zip(turn_reqs, bodies):
        tools = body.get("tools")
        if turn_kind(inter) == "mito" or inter.path == "/v1/chat/completions/tokens":
            messages = body.get("messages") or []
        else:
            if not turns or prev_answer is None:
                raise ValueError(f"interaction #{n} stitches onto a turn the cassette does not hold")
            env = _env_messages(inters, n, inter, turns, tokenizer)
            messages = [*turns[-1].messages, prev_answer, *env]
            tools = tools or turns[-1].tools
        turns.append(ScriptTurn(messages, tools, _sampling(body, inter.path)))
        prev_answer = _answer_message(inters, n, inter)
    return Script("dynamo_chat" if dynamo else "vllm_generate", route, model, stream, turns, extra)


def _answer_message(inters: list[Interaction], n: int, inter: Interaction) -> dict:
    if inter.path == "/inference/v1/generate":
        for later in inters[n + 1:]:
            if later.path == "/detokenize":
                return {"role": "assistant", "content": (later.response_json() or {}).get("prompt", "")}
        return {"role": "assistant", "content": ""}
    t = turn_tokens(inter)
    return t.message if t is not None else {"role": "assistant", "content": ""}


def _env_messages(inters, n, inter, turns, tokenizer) -> list[dict]:
    if inter.path == "/inference/v1/generate":
        for earlier in reversed(inters[:n]):
            if earlier.path == "/tokenize":
                b = earlier.request_json() or {}
                if b.get("add_generation_prompt"):
                    return list((b.get("messages") or [])[1:])
        raise ValueError(f"interaction #{n}: no /tokenize call holds this turn's new messages")
    # Dynamo token_data: the bridge is what follows the previous prompt + completion
    body = inter.request_json() or {}
    ids = body["nvext"]["token_data"]
    prev = next(i for i in reversed(inters[:n]) if turn_kind(i) is not None)
    t = turn_tokens(prev)
    head = (t.prompt_ids or []) + (t.completion_ids or []) if t else []
    if tokenizer is None:
        from ..tokenizer import load_tokenizer

        tokenizer = load_tokenizer()
    return parse_chatml(tokenizer.decode(ids[len(head):]))
