"""The bridge audit: is each stitched turn's bridge what the deployment's template renders, and why a prompt
leaves the ids it should continue.

A stitched (tokens-in) turn sends the previous prompt + completion ids, then a bridge: the ids of the new
messages (a tool result, the next user message) and the next assistant header, computed by the client. The
server would render those messages with its own template and tokenizer. The audit decodes the bridge, reads it
back into messages, renders them with the deployment's template (the capture's meta names the tokenizer and
template; `harness audit --tokenizer DIR` overrides; the built-in Qwen2.5 ChatML one otherwise) and compares
ids: a difference is `bridge_mismatch`, with its position, both sides' ids and text, and its cause.

`cause_of` names why two id runs part, for `bridge_mismatch` and `continuity_break` alike (`CAUSES`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

WHITESPACE = "whitespace or newline in the template"
BPE_MERGE = "a BPE merge across the turn boundary"
THINKING = "a thinking section stripped on re-render"
TOOL_JSON = "a tool call re-serialized (JSON spacing or key order)"
TOOL_XML = "a tool call re-serialized (XML tool-call form)"
ROUND_TRIP = "a boolean or number round-tripped through text"
SPECIAL_AS_TEXT = "special tokens tokenized as text"
TRUNCATED = "a truncated completion re-rendered whole"
EDITED = "an edited message"
UNKNOWN = "an unknown template difference"
CAUSES = (WHITESPACE, BPE_MERGE, THINKING, TOOL_JSON, TOOL_XML, ROUND_TRIP, SPECIAL_AS_TEXT, TRUNCATED, EDITED,
          UNKNOWN)

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.S)
XML_CALL = re.compile(r"<function=|<parameter=")


def bridge_messages(text: str) -> list[dict]:
    """Messages of a ChatML bridge as the client meant them: tool responses become tool messages, an empty
    assistant header (the generation prompt) is dropped."""
    out: list[dict] = []
    for block in text.split(IM_START)[1:]:
        body = block.split(IM_END)[0]
        role, _, content = body.partition("\n")
        role = role.strip()
        if not role or role == "assistant" and not content.strip():
            continue
        responses = re.findall(r"<tool_response>\n(.*?)\n</tool_response>", content, re.S)
        if role == "user" and responses:
            out.extend({"role": "tool", "tool_call_id": f"call_{len(out)}", "content": r} for r in responses)
        else:
            out.append({"role": role, "content": content})
    return out


def _calls(text: str) -> list:
    out = []
    for raw in TOOL_CALL.findall(text):
        try:
            out.append(json.loads(raw))
        except ValueError:
            out.append(raw)
    return out


def _loose(value):
    """A value with booleans and numbers as text would carry them: True/'true'/'True' alike, 1/1.0/'1' alike."""
    if isinstance(value, dict):
        return {k: _loose(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_loose(v) for v in value]
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return repr(float(value))
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("true", "false"):
            return low
        try:
            return repr(float(low))
        except ValueError:
            return value
    return value


def _role_at(text: str) -> str | None:
    """The role of the message a position of rendered text falls in (the last header before it)."""
    at = text.rfind(IM_START)
    return text[at + len(IM_START):].split("\n", 1)[0].strip() if at != -1 else None


def cause_of(now: list[int], want: list[int], decode, before: str = "", truncated: bool = False,
             special_ids: frozenset = frozenset(), continues: bool = False) -> str:
    """Why the ids `now` (what the client sent, from where the two part) differ from `want` (what they should
    be: the previous turn's ids, or the bridge the template renders). `decode` turns ids into text; `before` is
    the text both share up to there; `truncated`: the turn before was cut by max_tokens; `continues`: `now`
    goes on past what `want` covers (a prompt against the head it should start with)."""
    a, b = decode(now) or "", decode(want) or ""
    squash = lambda t: "".join(t.split())  # noqa: E731
    same_text = a.startswith(b) if continues else a == b
    role = _role_at(before)
    if truncated and role == "assistant" and not a.lstrip().startswith(IM_END):
        return TRUNCATED
    if same_text:
        if sum(i in special_ids for i in now[:len(want)]) < sum(i in special_ids for i in want):
            return SPECIAL_AS_TEXT
        return BPE_MERGE
    if any(t in a and t not in b for t in (IM_START, IM_END)) and special_ids and \
            sum(i in special_ids for i in now) < a.count(IM_START) + a.count(IM_END):
        return SPECIAL_AS_TEXT
    if truncated and a.lstrip().startswith(IM_END) and not b.lstrip().startswith(IM_END):
        return TRUNCATED
    if ("<think>" in b and "<think>" not in a) or ("</think>" in b and "</think>" not in a):
        return THINKING
    ca, cb = _calls(a), _calls(b)
    if cb and ((XML_CALL.search(a) is None) != (XML_CALL.search(b) is None)):
        return TOOL_XML
    if ca and cb:
        ca = ca[:len(cb)] if continues else ca
        if ca == cb:
            return TOOL_JSON
        if _loose(ca) == _loose(cb):
            return ROUND_TRIP
    if squash(a).startswith(squash(b)) if continues else squash(a) == squash(b):
        return WHITESPACE
    if truncated and role == "assistant":
        return TRUNCATED
    if role in ("user", "tool", "system"):
        return EDITED
    return UNKNOWN


@dataclass
class BridgeCheck:
    position: int  # in the bridge, from its first id
    sent: list[int]
    rendered: list[int]
    sent_text: str
    rendered_text: str
    cause: str

    def detail(self, offset: int) -> str:
        return (f"the bridge differs from what the template renders at prompt position {offset + self.position} "
                f"(bridge id {self.position}): sent {self.sent} {self.sent_text!r}, template {self.rendered} "
                f"{self.rendered_text!r}")


class Deployment:
    """The deployment's tokenizer and template, for details (called as ids -> text) and bridge checks."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        eos = tokenizer.convert_tokens_to_ids(IM_END)
        self.eos = eos if isinstance(eos, int) else None
        self.special_ids = frozenset(i for i in tokenizer.all_special_ids if isinstance(i, int)) | \
            frozenset(i for i in [self.eos, tokenizer.convert_tokens_to_ids(IM_START)] if isinstance(i, int))
        self._rendered: dict[tuple, list[int]] = {}

    @classmethod
    def load(cls, tokenizer: str | None = None, meta: dict | None = None) -> "Deployment":
        """The capture's deployment: `tokenizer` (a directory or name) over the one its meta names, over the
        built-in Qwen2.5 tokenizer with the meta's template (chatml unless it says thinking)."""
        from ..tokenizer import load_tokenizer

        meta = meta or {}
        spec = tokenizer or meta.get("tokenizer")
        template = meta.get("template") if meta.get("template") in ("chatml", "thinking") else "chatml"
        return cls(load_tokenizer(spec, template) if spec else load_tokenizer(None, template))

    def __call__(self, ids) -> str:
        return self.tokenizer.decode([int(i) for i in ids])

    def render_bridge(self, messages: list[dict], closed: bool) -> list[int]:
        """The ids the template puts after an assistant turn's completion for `messages` and the next
        generation prompt; `closed`: the completion ended with the end-of-turn id (else the template closes it)."""
        key = (json.dumps(messages, sort_keys=True), closed)
        if key not in self._rendered:
            before = [{"role": "user", "content": "u"}, {"role": "assistant", "content": "\x00"}]
            text = self.tokenizer.apply_chat_template(before + messages, tokenize=False, add_generation_prompt=True)
            tail = text[text.index("\x00") + 1:]
            if closed and tail.startswith(IM_END):
                tail = tail[len(IM_END):]
            self._rendered[key] = list(self.tokenizer.encode(tail, add_special_tokens=False))
        return self._rendered[key]

    def check_bridge(self, head: list[int], bridge: list[int], truncated: bool = False) -> BridgeCheck | None:
        """None when the bridge is what the template renders for the messages it holds; else where and why not."""
        if not bridge:
            return None
        closed = bool(head) and head[-1] == self.eos
        text = self(bridge)
        messages = bridge_messages(text if text.lstrip().startswith(IM_START) else IM_START + text.split(IM_START, 1)[-1]
                                   if IM_START in text else "")
        if not messages:
            return None
        want = self.render_bridge(messages, closed)
        if want == list(bridge):
            return None
        k = next((j for j, (x, y) in enumerate(zip(bridge, want)) if x != y), min(len(bridge), len(want)))
        lo = max(0, k - 1)
        cause = cause_of(list(bridge[lo:]), want[lo:], self, self(head[-8:] + list(bridge[:lo])), truncated,
                         self.special_ids)
        return BridgeCheck(k, [int(x) for x in bridge[lo:k + 3]], want[lo:k + 3], self(bridge[lo:k + 3]),
                           self(want[lo:k + 3]), cause)

    def break_cause(self, prompt: list[int], head: list[int], k: int, truncated: bool = False) -> str:
        """Why a prompt leaves the head it should continue at position k: both read from the start of the
        message the break falls in (a tool call, a thinking section are told whole)."""
        start = self.tokenizer.convert_tokens_to_ids(IM_START)
        lo = next((j for j in range(min(k, len(head)) - 1, -1, -1) if head[j] == start), max(0, k - 1))
        return cause_of(list(prompt[lo:]), list(head[lo:]), self, self(head[:k]), truncated, self.special_ids,
                        continues=True)


def audit_bridges(path, tokenizer: str | None = None, **kwargs):
    """`harness audit`: the audit of a capture with its bridges checked against the deployment's template (the
    tokenizer its meta names, or `tokenizer`); without a loadable tokenizer, the audit without bridge checks and
    with ids alone in its details."""
    from .audit import audit, detail_decoder
    from .index import capture_meta

    try:
        deployment = Deployment.load(tokenizer, capture_meta(path))
    except (OSError, ValueError) as exc:
        if tokenizer:
            raise ValueError(f"--tokenizer {tokenizer}: {exc}") from None
        deployment = detail_decoder()
    return audit(path, deployment, **kwargs)
