"""`harness view`: one conversation of a capture, turn by turn, token by token.

Each prompt id is coloured by where it came from:
- `reused`: the previous turn's prompt + completion, the engine's own ids handed back (stitched);
- `bridge`: ids the client added after them (a tool result, the next user message);
- `rendered`: a prompt rendered from messages (the first turn, or a messages-in turn: re-rendered by the
  server, the engine's earlier ids not kept);
- `drift`: after the first position where the prompt stops agreeing with the previous turn's ids: the
  break in continuity, highlighted.
Completion ids carry their logprobs, as a bar per token and a sparkline per turn. The terminal view
prints runs of one origin as one line; `--html` writes one static page (no script, no network).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..wire.safe_text import html_text

from .extract import conversation_exchanges
from .linking import Linker, common_prefix

ORIGINS = ("reused", "bridge", "rendered", "drift")


@dataclass
class TurnView:
    number: int
    exchange: int
    mode: str
    link: str
    status: int
    finish_reason: str | None
    prompt_ids: list[int]
    completion_ids: list[int]
    logprobs: list[float] | None
    origins: list[str]  # one per prompt id
    break_at: int | None  # the first prompt position that disagrees with the previous turn's ids
    anomalies: list[str] = field(default_factory=list)  # "kind: detail"
    messages: list[tuple[str, str]] = field(default_factory=list)  # (role, text) of a prompt sent without ids
    completion_text: str | None = None  # the answer's text, where it came without ids

    def runs(self) -> list[tuple[str, int, int]]:
        """(origin, start, end) runs of the prompt."""
        out: list[tuple[str, int, int]] = []
        for k, o in enumerate(self.origins):
            if out and out[-1][0] == o:
                out[-1] = (o, out[-1][1], k + 1)
            else:
                out.append((o, k, k + 1))
        return out


def origins(prompt: list[int], prev_head: list[int] | None, mode: str) -> tuple[list[str], int | None]:
    if prev_head is None:
        return ["rendered"] * len(prompt), None
    import numpy as np

    k = common_prefix(np.asarray(prompt, dtype=np.int64), np.asarray(prev_head, dtype=np.int64))
    broke = k < len(prev_head)
    if mode == "mito":
        return ["rendered"] * k + ["drift" if broke else "rendered"] * (len(prompt) - k), (k if broke else None)
    return ["reused"] * k + ["drift" if broke else "bridge"] * (len(prompt) - k), (k if broke else None)


def conversation(path, cid: int) -> tuple[dict, list[TurnView]]:
    """The turns of conversation `cid` of a capture (read through its index: only its exchanges)."""
    indices, interactions, meta = conversation_exchanges(path, [cid])
    return meta, views(zip(indices, interactions))


def pick_conversation(path) -> tuple[int, str | None]:
    """The conversation to show when none is named, and a note when the file holds more than one.

    One conversation: that one. Several (an extract of every conversation with an anomaly, a capture): the
    first showing the anomaly the extract was cut for, else the first showing any anomaly, else the first;
    the note names the others. A file read whole (a stock vcrpy cassette) is audited to find them."""
    from ..recording.format import read_meta
    from .audit import audit
    from .index import CaptureIndex
    from .kinds import fallback_kinds

    idx = CaptureIndex.load(path)
    if idx is not None:
        where, by_kind = idx.conversation, idx.anomalies
    else:
        report = audit(path, keep=False)
        where, by_kind = report.where, report.by_kind
    ids = sorted({c for c in where if c >= 0})
    if not ids:
        raise ValueError(f"{path} holds no conversation (no generation exchange)")
    if len(ids) == 1:
        return ids[0], None
    cut_for = (read_meta(path).get("extracted_from") or {}).get("anomaly")
    wanted = set(by_kind.get(cut_for, [])) if isinstance(cut_for, str) else set()
    flagged = wanted or {c for k, cs in by_kind.items() if k not in fallback_kinds() for c in cs}
    cid = min(flagged & set(ids)) if flagged & set(ids) else ids[0]
    why = f"the first with {cut_for}" if wanted else "the first with an anomaly" if flagged else "the first"
    others = [c for c in ids if c != cid]
    return cid, (f"{path} holds {len(ids)} conversations; showing {cid}, {why}; the others: "
                 f"{', '.join(map(str, others[:20]))}{' …' if len(others) > 20 else ''} (--conversation ID)")


def only_conversation(path) -> int:
    """The conversation `view` shows when none is named (pick_conversation without its note)."""
    return pick_conversation(path)[0]


@dataclass
class View:
    meta: dict
    cid: int
    turns: list[TurnView]
    decode: object  # ids -> one text piece per id
    note: str | None = None  # which conversation was picked, when the file holds several


def open_view(path, cid: int | None = None, tokenizer=None) -> View:
    """Conversation `cid` of a capture (its only one when None), ready to print or render."""
    note = None
    if cid is None:
        cid, note = pick_conversation(path)
    meta, turns = conversation(path, cid)
    mark_versions(path, cid, turns)  # where the policy version changed
    return View(meta, cid, turns, decoder(tokenizer), note)


def views(numbered) -> list[TurnView]:
    """TurnViews of one conversation's exchanges ((index, Interaction) in order)."""
    linker = Linker(keep_tokens=True)
    out: list[TurnView] = []
    head = None
    for n, inter in numbered:
        placed = linker.add(n, inter)
        if placed is None:
            continue
        conv, k, t, _ = placed
        prompt, completion = t.prompt_ids or [], t.completion_ids or []
        orig, brk = origins(prompt, head, t.mode)
        notes = [f"{a.kind}: {a.detail}" for a in conv.anomalies if a.exchange == n]
        out.append(TurnView(len(out) + 1, n, t.mode, t.link, t.status, t.finish_reason, prompt, completion,
                            t.completion_logprobs, orig, brk, notes,
                            [] if prompt else sent_messages(inter), None if completion else answer_text(inter)))
        if t.status < 400 and t.prompt_ids is not None and t.completion_ids is not None:
            head = prompt + completion
    return out


def sent_messages(inter) -> list[tuple[str, str]]:
    """(role, text) of the messages (or the prompt text) a request sent: what to show of a prompt without ids."""
    body = inter.request_json()
    if not isinstance(body, dict):
        return []
    if isinstance(body.get("prompt"), str):
        return [("prompt", body["prompt"])]
    out = []
    for m in body.get("messages") or [] if isinstance(body.get("messages"), list) else []:
        if isinstance(m, dict):
            out.append((str(m.get("role", "?")), message_text(m)))
    return out


def message_text(m: dict) -> str:
    content = m.get("content")
    if isinstance(content, list):  # content parts
        content = "".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content)
    text = "" if content is None else str(content)
    for call in m.get("tool_calls") or [] if isinstance(m.get("tool_calls"), list) else []:
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict):
            text += f"{' ' if text else ''}[tool call {fn.get('name')}({fn.get('arguments')})]"
    return text


def answer_text(inter) -> str | None:
    """The text of an answer that came without ids (a chat message, a completion's text, streamed or whole)."""
    if inter.status >= 400:
        return None
    bodies = inter.sse_chunks() if inter.is_stream() else [inter.response_json()]
    parts = []
    for b in bodies:
        for ch in (b.get("choices") or [])[:1] if isinstance(b, dict) and isinstance(b.get("choices"), list) else []:
            if not isinstance(ch, dict):
                continue
            m = ch.get("message") if isinstance(ch.get("message"), dict) else ch.get("delta")
            if isinstance(m, dict):
                parts.append(message_text(m))
            elif isinstance(ch.get("text"), str):
                parts.append(ch["text"])
    return "".join(parts) or None


def decoder(tokenizer=None):
    """ids -> one text piece per id: through the built-in tokenizer's cached token table by default (no
    tokenizer is loaded, so a view starts in well under a second), else with the tokenizer given."""
    if tokenizer is None:
        from ..tokenizer import token_table

        return token_table().pieces
    return lambda ids: tokenizer.batch_decode([[i] for i in ids]) if ids else []


# -- terminal -----------------------------------------------------------------------------------------------

SPARK = "▁▂▃▄▅▆▇█"
STYLE = {"reused": "green", "bridge": "cyan", "rendered": "yellow", "drift": "bold white on red"}


def sparkline(logprobs: list[float]) -> str:
    return "".join(SPARK[min(7, int(math.exp(max(lp, -50.0)) * 8))] for lp in logprobs)


def print_view(console, path: str, meta: dict, turns: list[TurnView], decode, width: int = 60) -> None:
    from rich.markup import escape

    def text(ids) -> str:
        return escape("".join(decode(ids)).replace("\n", "⏎"))

    def clip(ids) -> str:
        if len(ids) <= width:
            return text(ids)
        return f"{text(ids[:width // 2])} [dim]… {len(ids) - width} more …[/] {text(ids[-width // 2:])}"

    console.print(f"[bold]{escape(path)}[/]: {len(turns)} turns " + escape(
        ", ".join(f"{k}: {meta[k]}" for k in ("server", "server_version", "model", "profile") if meta.get(k))),
        highlight=False)
    console.print("origins: " + " ".join(f"[{STYLE[o]}]{o}[/]" for o in ORIGINS))
    for t in turns:
        console.print(f"\n[bold]turn {t.number}[/] exchange {t.exchange} · {t.mode} · link {t.link} · status "
                      f"{t.status} · finish {escape(str(t.finish_reason))}", highlight=False)
        for o, a, b in t.runs():
            mark = " [bold red]<- first break in continuity[/]" if t.break_at == a and o == "drift" else ""
            console.print(f"  [{STYLE[o]}]{o:<8}[/] {a:>6}..{b:<6} ids {t.prompt_ids[a:a + 3]}{'…' if b - a > 3 else ''}"
                          f"  {clip(t.prompt_ids[a:b])}{mark}", highlight=False)
        for role, said in t.messages:
            console.print(f"  [yellow]{escape(role):<9}[/] {escape(said.replace(chr(10), '⏎')[:400])}", highlight=False)
        if t.completion_ids:
            console.print(f"  [bold]completion[/] {len(t.completion_ids)} ids  {clip(t.completion_ids)}", highlight=False)
        elif t.completion_text is not None:
            console.print(f"  [bold]completion[/] (no ids)  {escape(t.completion_text.replace(chr(10), '⏎')[:400])}",
                          highlight=False)
        if t.logprobs:
            console.print(f"  logprobs   {sparkline(t.logprobs)}  min {min(t.logprobs):.2f}", highlight=False)
        for note in t.anomalies:
            console.print(f"  [red]{escape(note)}[/]", highlight=False)


# -- one static page ----------------------------------------------------------------------------------------

CSS = """
body{font:14px/1.5 system-ui,sans-serif;margin:2rem;color:#222;max-width:80rem}
h1{font-size:1.3rem} .meta{color:#555}
.turn{border:1px solid #ccc;border-radius:6px;padding:.6rem 1rem;margin:1rem 0}
.turn h2{font-size:1rem;margin:.2rem 0}
.ids{font-family:ui-monospace,monospace;font-size:12px;line-height:2.2;word-break:break-all}
.tok{display:inline-block;border-radius:3px;padding:0 2px;margin:1px;white-space:pre}
.tok sub{font-size:9px;color:#666;margin-left:2px}
.reused{background:#d6f5d6} .bridge{background:#d6ecf5} .rendered{background:#f5efd6} .drift{background:#f8d0d0}
.break{outline:3px solid #d00;background:#f55;color:#fff} .break sub{color:#fff}
.comp{background:#eee;position:relative}
.bar{display:block;height:3px;background:#36c;margin-top:-2px}
.anomaly{color:#b00;font-weight:600}
.legend span{margin-right:.8rem}
details summary{cursor:pointer;color:#363}
.msg{white-space:pre-wrap;font-family:ui-monospace,monospace;font-size:12px}
"""


def _tok(piece: str, i: int, cls: str, extra: str = "") -> str:
    i = html_text(i)
    return f'<span class="tok {cls}" data-id="{i}"{extra}>{_shown(piece)}<sub>{i}</sub></span>'


def _shown(piece: str) -> str:
    return html_text(piece.replace("\n", "⏎").replace("\t", "⇥"))


def _spark_svg(logprobs: list[float]) -> str:
    if not logprobs:
        return ""
    w, h = max(2 * len(logprobs), 40), 30
    lo = min(min(logprobs), -1e-6)
    pts = " ".join(f"{2 * k},{h - h * (1 - lp / lo):.1f}" for k, lp in enumerate(logprobs))
    return (f'<svg class="spark" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
            f'aria-label="logprobs of {len(logprobs)} completion tokens, min {lo:.2f}">'
            f'<polyline fill="none" stroke="#36c" stroke-width="1" points="{pts}"/></svg>')


def render_html(path: str, meta: dict, cid: int, turns: list[TurnView], decode, fold: int = 24) -> str:
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>conversation {cid} of "
           f"{html_text(path)}</title><style>{CSS}</style></head><body>",
           f"<h1>Conversation {cid} of {html_text(path)}</h1>",
           "<p class='meta'>" + html_text(", ".join(f"{k}: {meta[k]}" for k in (
               "server", "server_version", "model", "profile", "recorded_at") if meta.get(k))) + "</p>",
           "<p class='legend'>prompt ids: " + " ".join(f"<span class='tok {o}'>{o}</span>" for o in ORIGINS)
           + " · completion ids with their probability as a bar</p>"]
    for t in turns:
        pieces = decode(t.prompt_ids)
        out.append(f"<section class='turn' id='turn-{t.number}' data-mode='{html_text(t.mode)}'>"
                   f"<h2>Turn {t.number} · exchange {t.exchange} · {html_text(t.mode)} · link {html_text(t.link)} · status {t.status}"
                   f" · finish {html_text(str(t.finish_reason))}</h2>")
        for note in t.anomalies:
            out.append(f"<p class='anomaly'>{html_text(note)}</p>")
        for role, said in t.messages:
            out.append(f"<p class='msg'><b>{html_text(role)}</b> {html_text(said)}</p>")
        out.append(f"<div class='ids prompt'><b>prompt</b> ({len(t.prompt_ids)} ids) ")
        for o, a, b in t.runs():
            chips = []
            for k in range(a, b):
                is_break = k == t.break_at
                chips.append(_tok(pieces[k], t.prompt_ids[k], o + (" break" if is_break else ""),
                                  ' id="first-break" title="first break in continuity"' if is_break else ""))
            if o == "reused" and b - a > fold:
                out.append(f"<details class='run {o}'><summary>{b - a} reused engine ids ({a}..{b})</summary>"
                           + "".join(chips) + "</details>")
            else:
                out.append("".join(chips))
        out.append("</div>")
        if t.completion_ids:
            pieces = decode(t.completion_ids)
            out.append(f"<div class='ids completion'><b>completion</b> ({len(t.completion_ids)} ids) ")
            for k, i in enumerate(t.completion_ids):
                lp = t.logprobs[k] if t.logprobs and k < len(t.logprobs) else None
                bar = "" if lp is None else f"<span class='bar' style='width:{100 * math.exp(max(lp, -50)):.0f}%'></span>"
                title = "" if lp is None else f' title="logprob {lp:.4f}"'
                i = html_text(i)
                out.append(f'<span class="tok comp" data-id="{i}"{title}>{_shown(pieces[k])}<sub>{i}</sub>{bar}</span>')
            out.append("</div>")
            if t.logprobs:
                out.append(f"<p>logprobs {_spark_svg(t.logprobs)} min {min(t.logprobs):.3f}</p>")
        elif t.completion_text is not None:
            out.append(f"<p class='msg'><b>completion</b> (no ids) {html_text(t.completion_text)}</p>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out)


def mark_versions(path, cid: int, turns) -> None:
    """`harness view`'s version boundaries: the policy findings of conversation `cid` added to the notes of
    the turns they are about (view.TurnView.anomalies). Costs nothing for a capture whose index lists none."""
    from .audit import audit, capture_index
    from .policy import POLICY_KINDS

    try:
        idx = capture_index(path)
    except Exception:  # a file the index cannot be built for: the audit below reads it whole
        idx = None
    if idx is not None and not any(cid in idx.anomalies.get(k, ()) for k in POLICY_KINDS):
        return
    by_exchange: dict[int, list[str]] = {}
    for a in audit(path, keep=False).anomalies:
        if a.kind in POLICY_KINDS and a.conversation == cid:
            by_exchange.setdefault(a.exchange, []).append(f"{a.kind}: {a.detail}")
    for t in turns:
        for note in by_exchange.get(t.exchange, ()):
            if note not in t.anomalies:
                t.anomalies.append(note)
