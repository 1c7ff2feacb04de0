"""Which policy sampled each turn of a capture, and what the RL control plane did to the turns in flight.

A turn's policy version comes, in this order, from the answer itself (vLLM 0.33+'s `weight_versions`
spans: which version sampled which completion tokens), from the control-plane exchanges recorded around
it (a weight update makes a new policy when it is answered; a version tag names it; a pause holds the
turns that arrive while it lasts), or from the client's own tag (prime-rl sends `cache_salt` = the policy
version). The audit kinds it adds:

- `policy_switch`: a conversation, or one turn, sampled under more than one version; the detail names the
  versions and the conversation's token position where the policy changed;
- `aborted`: a turn cut by a pause (finish_reason "abort", or a turn ended by an abort pause on a server
  that says "stop"), linked to the later turn that sends the same prompt again;
- `sent_while_paused`: a generation request that arrived while the engines were paused;
- `stale_version`: an answer (or a version query) after new weights that still names the version from
  before them.

And a summary per step (pause to resume): its mode, how long it lasted, the turns in flight when it began,
the updates and version tags inside it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import orjson
from urllib.parse import parse_qsl, urlsplit

from .kinds import KINDS, Kind, add_kind
from .turns import parsed_answer, turn_kind

# route -> (action, where its version label is, where its pause mode is): the servers' own routes
ACTIONS = {
    "/pause": ("pause", None, "query:mode"), "/engine/pause_generation": ("pause", None, "body:mode"),
    "/resume": ("resume", None, None), "/engine/resume_generation": ("resume", None, None),
    "/update_weights": ("update", None, None), "/collective_rpc": ("update", None, None),
    "/engine/update_weights_from_disk": ("update", "weight_version", None),
    "/engine/update_weights_from_distributed": ("update", "weight_version", None),
    "/finish_weight_update": ("update", "weight_version", None),
    "/update_weight_version": ("tag", "new_version", None), "/engine/set_weight_version": ("tag", "weight_version", None),
    "/weight_info": ("report", "weight_version", None), "/engine/get_weight_version": ("report", "version", None),
}
ABORT_FINISH = ("abort",)

for _k in (Kind("policy_switch", "a conversation or one turn sampled under more than one policy version"),
           Kind("aborted", "a turn cut by a pause of the engines"),
           Kind("sent_while_paused", "a generation request that arrived while the engines were paused"),
           Kind("stale_version", "an answer after new weights that names the version from before them")):
    if _k.name not in KINDS:
        add_kind(_k)


@dataclass
class _Gen:
    exchange: int
    conversation: int
    start: float
    end: float
    finish: str | None
    prompt_len: int | None
    completion_len: int | None
    spans: list | None
    salt: str | None
    key: bytes = b""  # what it asked for (messages or prompt ids): a retry asks the same


@dataclass
class _Event:
    exchange: int
    action: str
    start: float
    end: float
    version: str | None
    mode: str | None


@dataclass
class PolicyTimeline:
    """Built exchange by exchange during the audit (`add`), read once at its end (`anomalies`, `steps`)."""

    gens: list[_Gen] = field(default_factory=list)
    events: list[_Event] = field(default_factory=list)

    def add(self, n: int, inter, conversation: int) -> None:
        start = inter.recorded_at or 0.0
        end = start + (inter.duration_ms or 0.0) / 1000
        row = ACTIONS.get(inter.path)
        if row is not None:
            if inter.status >= 400:
                return
            body = inter.request_json() if inter.request_body else None
            answer = inter.response_json()
            if isinstance(answer, dict) and answer.get("status") == "error":
                return
            action, vfield, mode_at = row
            source = answer if action == "report" else body
            version = source.get(vfield) if vfield and isinstance(source, dict) else None
            mode = None
            if mode_at:
                where, key = mode_at.split(":")
                mode = (dict(parse_qsl(urlsplit(inter.uri).query)).get(key) if where == "query"
                        else (body or {}).get(key) if isinstance(body, dict) else None)
            self.events.append(_Event(n, action, start, end, None if version is None else str(version), mode))
            return
        if conversation < 0 or turn_kind(inter) is None or inter.status >= 400:
            return
        answer, _ = parsed_answer(inter)
        choice = ((answer or {}).get("choices") or [{}])[0] if isinstance(answer, dict) else {}
        spans = choice.get("weight_versions") if isinstance(choice, dict) else None
        req = inter.request_json() or {}
        ids = choice.get("token_ids") if isinstance(choice, dict) else None
        prompt = (answer or {}).get("prompt_token_ids") if isinstance(answer, dict) else None
        if prompt is None and isinstance(req, dict):
            prompt = req.get("tokens") or req.get("token_ids")
        self.gens.append(_Gen(n, conversation, start, end, choice.get("finish_reason") if isinstance(choice, dict) else None,
                              len(prompt) if isinstance(prompt, list) else None,
                              len(ids) if isinstance(ids, list) else None,
                              spans if isinstance(spans, list) and spans else None,
                              str(req["cache_salt"]) if isinstance(req, dict) and req.get("cache_salt") is not None else None,
                              _asked(req)))

    def version_of(self, exchange: int) -> str | None:
        """The version that sampled the last token of the generation exchange just added (None: not told)."""
        g = self.gens[-1] if self.gens else None
        if g is None or g.exchange != exchange:
            return None
        versions, _, _ = self.versions(g, self._states())
        return versions[-1] if versions else None

    # -- the control plane's state over time -------------------------------------------------------
    def _states(self):
        """(time, policy, label, paused-by-mode) after each event, in time order; policy counts updates."""
        policy, label, paused = 0, None, None
        out = [(float("-inf"), policy, label, paused)]
        marks = []
        for e in self.events:
            at = e.start if e.action in ("pause", "resume") else e.end
            marks.append((at, e))
        for at, e in sorted(marks, key=lambda m: m[0]):
            if e.action == "pause":
                paused = e.mode or "pause"
            elif e.action == "resume":
                paused = None
            elif e.action == "update":
                policy += 1
                label = e.version if e.version is not None else label
            elif e.action == "tag":
                label = e.version
            elif e.action == "report" and label is None and policy == 0:  # the label the first weights carry
                label = e.version
            out.append((at, policy, label, paused))
        return out

    @staticmethod
    def _at(states, t):
        cur = states[0]
        for s in states:
            if s[0] <= t:
                cur = s
            else:
                break
        return cur

    @staticmethod
    def _sampling_starts(states, t: float) -> float:
        """A request that arrives while paused is held: it starts sampling at the resume."""
        cur = PolicyTimeline._at(states, t)
        if cur[3] is None:
            return t
        return next((s[0] for s in states if s[0] > t and s[3] is None), t)

    @staticmethod
    def _name(policy: int, label: str | None) -> str:
        return label if label is not None else ("the first weights" if policy == 0 else f"update {policy}")

    def versions(self, g: _Gen, states) -> tuple[list[str], int | None, str]:
        """(versions in sampling order, completion token where it changed or None, source)."""
        if g.spans:
            names = [str(s.get("version")) for s in g.spans if isinstance(s, dict)]
            at = next((s.get("start") for s in g.spans[1:] if isinstance(s, dict)), None)
            return list(dict.fromkeys(names)), at, "answer"
        if len(states) > 1:
            a, b = self._at(states, self._sampling_starts(states, g.start)), self._at(states, g.end)
            va, vb = self._name(a[1], a[2]), self._name(b[1], b[2])
            if (a[1], a[2]) != (b[1], b[2]) and va != vb:
                return [va, vb], None, "control plane"
            return [va], None, "control plane"
        if g.salt is not None:
            return [g.salt], None, "client tag"
        return [], None, "none"

    def anomalies(self, turn_number: dict) -> list[tuple]:
        """(conversation, turn, exchange, kind, detail) rows for the audit."""
        states = self._states()
        out = []
        last: dict[int, tuple] = {}  # conversation -> (version, gen)
        alias: dict[int, int] = {}  # a retry's conversation continues the one of the turn it sends again
        for g in sorted(self.gens, key=lambda g: g.exchange):
            if self._cut(g, states):
                retry = next((h for h in self.gens if h.exchange > g.exchange and h.key == g.key), None)
                if retry is not None and retry.conversation != g.conversation:
                    alias[retry.conversation] = alias.get(g.conversation, g.conversation)
        by_conv: dict[int, list[_Gen]] = {}
        for g in sorted(self.gens, key=lambda g: g.exchange):
            by_conv.setdefault(alias.get(g.conversation, g.conversation), []).append(g)
        for conv, gens in by_conv.items():
            for k, g in enumerate(gens):
                turn = turn_number.get(g.exchange, k + 1)
                versions, at, source = self.versions(g, states)
                if len(versions) > 1:
                    where = (f"completion token {at} (conversation token {(g.prompt_len or 0) + at})" if at is not None
                             else "a completion token the answer does not name (it carries no weight_versions)")
                    out.append((conv, turn, g.exchange, "policy_switch",
                                f"turn {turn} sampled under {versions[0]} then {versions[-1]} (from the {source}); "
                                f"the policy changed at {where}"))
                elif versions and conv in last and last[conv][0] != versions[0]:
                    out.append((conv, turn, g.exchange, "policy_switch",
                                f"turns up to {last[conv][1]} sampled under {last[conv][0]}, turn {turn} under "
                                f"{versions[0]} (from the {source}); the policy changed at conversation token "
                                f"{g.prompt_len if g.prompt_len is not None else '?'} (turn {turn}'s first completion token)"))
                if versions:
                    last[conv] = (versions[-1], turn)
                paused = self._at(states, g.start)[3]
                if paused is not None:
                    out.append((conv, turn, g.exchange, "sent_while_paused",
                                f"arrived while the engines were paused ({paused})"))
                if self._cut(g, states):
                    retry = next((h for h in self.gens if h.exchange > g.exchange and h.key == g.key), None)
                    had = "an unknown number of" if g.completion_len is None else g.completion_len  # (no ids)
                    out.append((conv, turn, g.exchange, "aborted",
                                f"cut by a pause after {had} tokens (finish_reason {g.finish!r}); " +
                                (f"sent again as exchange {retry.exchange}" if retry else "never sent again")))
        out += self._stale(states)
        return sorted(out, key=lambda r: r[2])

    def _cut(self, g: _Gen, states) -> bool:
        """Cut by a pause: finish_reason "abort" (vLLM), or ended inside an abort pause it did not arrive in,
        before its length ran out (Dynamo ends such turns "stop")."""
        ended_in = self._at(states, g.end - 1e-6)[3]
        return g.finish in ABORT_FINISH or (ended_in == "abort" and self._at(states, g.start)[3] is None
                                            and g.finish != "length")

    def _stale(self, states) -> list[tuple]:
        out = []
        updates = [e for e in self.events if e.action == "update"]
        for u in updates:
            before = self._at(states, u.start)
            old = self._name(before[1], before[2])
            if before[2] is None:
                continue
            for e in self.events:
                if e.action == "report" and e.start > u.end and e.version == old:
                    out.append((-1, 0, e.exchange, "stale_version",
                                f"the version query after new weights (exchange {u.exchange}) still answers {old!r}"))
            for g in self.gens:
                if g.spans and g.start > u.end and old in [str(s.get("version")) for s in g.spans]:
                    out.append((g.conversation, 0, g.exchange, "stale_version",
                                f"an answer after new weights (exchange {u.exchange}) names the old version {old!r}"))
        return out

    def steps(self) -> list[dict]:
        """One row per pause: mode, seconds until resume, turns in flight when it began, updates inside."""
        rows = []
        events = sorted(self.events, key=lambda e: e.start)
        for e in events:
            if e.action != "pause":
                continue
            resume = next((r for r in events if r.action == "resume" and r.start >= e.start), None)
            until = resume.start if resume else None
            inside = [u for u in events if u.action in ("update", "tag") and u.start >= e.start
                      and (until is None or u.start <= until)]
            rows.append({"pause_exchange": e.exchange, "mode": e.mode,
                         "paused_seconds": None if until is None else round(until - e.start, 3),
                         "in_flight": sum(g.start < e.start < g.end for g in self.gens),
                         "updates": sum(u.action == "update" for u in inside),
                         "versions": [u.version for u in inside if u.version is not None]})
        return rows


def _asked(req) -> bytes:
    if not isinstance(req, dict):
        return b""
    what = req.get("messages") or req.get("tokens") or req.get("token_ids") or (req.get("nvext") or {}).get("token_data")
    return hashlib.blake2b(orjson.dumps(what, option=orjson.OPT_SORT_KEYS), digest_size=12).digest()


POLICY_KINDS = ("policy_switch", "aborted", "sent_while_paused", "stale_version")
