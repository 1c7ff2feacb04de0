"""`harness conformance`: send every recorded request to a fake and compare the answers.

The comparison is by structure (key paths, JSON types, nesting; a null on either side matches any
type), plus the status code and invariants that hold whatever the values: the logprob count
equals the completion id count, and a tokens-in request's prompt ids echo the ids sent.
Differences listed in ALLOWLIST (each with its reason) are reported but do not fail the run.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from .wire.urls import root_of
from .recording.format import Cassette, CassetteError, Interaction, cassette_files
from .captures.turns import turn_kind, turn_tokens
from .wire.shape import diff

# (fake kind, regex on a difference line, reason). Empty today: every difference the real
# captures showed was fixed in the fakes instead (see the fidelity tests). Add an entry only with
# a reason a reviewer can check.
ALLOWLIST: list[tuple[str, str, str]] = []


@dataclass
class Check:
    profile: str
    cassette: str
    index: int
    request: str
    real_status: int
    fake_status: int
    problems: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.allowed

    @property
    def allowed_only(self) -> bool:
        return not self.problems and bool(self.allowed)


@dataclass
class Report:
    checks: list[Check]
    unknown: list[tuple[str, str]] = field(default_factory=list)  # (cassette, why its server cannot be told)

    @property
    def failed(self) -> int:
        return sum(1 for c in self.checks if c.problems)

    def per_profile(self) -> dict[str, tuple[int, int]]:
        """{profile: (exchanges checked, exchanges that differ)}."""
        out: dict[str, list[int]] = {}
        for c in self.checks:
            row = out.setdefault(c.profile, [0, 0])
            row[0] += 1
            row[1] += bool(c.problems)
        return {k: (v[0], v[1]) for k, v in out.items()}

    def to_dict(self) -> dict:
        return {"failed": self.failed, "checked": len(self.checks),
                "profiles": {k: {"checked": n, "failed": f} for k, (n, f) in self.per_profile().items()},
                "unknown": [{"cassette": c, "why": w} for c, w in self.unknown],
                "allowlist": [{"fake": k, "pattern": p, "reason": r} for k, p, r in ALLOWLIST],
                "checks": [{**c.__dict__, "ok": c.ok} for c in self.checks]}


def fake_config(kind: str, cassettes: list[Cassette], profile=None):
    """A fake set up like the recorded server: model, context window, routes, backend (the
    profile's, when the cassette names one). Its engine never answers only the stop token unasked: each recorded
    answer says how its own draw went, which a replay cannot draw again."""
    from fake_servers.server import FakeConfig

    inters = [i for c in cassettes for i in c.interactions]
    model = next((c.meta.get("model") for c in cassettes if c.meta.get("model")), "tiny-qwen")
    max_len, mocker = 2048, False
    for i in inters:
        if i.path == "/v1/models" and i.status == 200:
            data = (i.response_json() or {}).get("data") or [{}]
            window = data[0].get("max_model_len", data[0].get("context_window"))
            if window == 0:
                mocker = True
            elif window:
                max_len = window
    statuses = {(i.path, i.status) for i in inters}
    if kind == "dynamo" and not mocker:  # a backend that never sends engine_data nor logprobs is the mocker
        chats = [i for i in inters if turn_kind(i) and i.status == 200]
        mocker = bool(chats) and all(b'"engine_data"' not in i.response_body for i in chats)
    if profile is not None:  # a server started without --enable-auto-tool-choice refuses tools
        no_tools = any(i.status == 400 and b"enable-auto-tool-choice" in i.response_body for i in inters)
        return FakeConfig.for_profile(profile, model=model, max_model_len=max_len,
                                      tool_parser=None if no_tools else "hermes", empty_rate=0.0,
                                      **control_switches(profile, inters))
    return FakeConfig(kind=kind, model=model, max_model_len=max_len, dynamo_backend="mocker" if mocker else "vllm",
                      chat_tokens_route=("/v1/chat/completions/tokens", 404) not in statuses, empty_rate=0.0)


def control_switches(profile, inters) -> dict:
    """The RL switches the recorded server ran with: on when it answered a route of its profile's control plane
    with anything but 404 (vLLM's dev mode, Dynamo's --enable-rl)."""
    from harness.wire.control_plane import CONTROL_PLANES, RL_DISCOVERY_PATH

    plane = CONTROL_PLANES.get(profile.control_plane or "")
    if plane is None:
        return {}
    paths = {r.path for r in plane.routes} | {RL_DISCOVERY_PATH}
    on = any((i.path in paths or i.path.startswith("/engine/")) and i.status != 404 for i in inters) or any(
        i.path.startswith("/engine/") and b"Route not found" in i.response_body for i in inters)
    lora = {r.path for r in CONTROL_PLANES["vllm-runtime-lora"].routes}
    return {"dev_mode": on, "enable_rl": on, "runtime_lora": any(i.path in lora and i.status != 404 for i in inters)}


SIDE_SERVERS = {".engine": "system_url", ".discovery": "rl_url"}  # a cassette recorded from Dynamo's side ports


def _clients(srv, client: httpx.Client) -> dict:
    """Where a cassette's exchanges go on the fake, by its name's suffix: `NAME.engine.yaml` (recorded from the
    worker's system server) to the fake worker's, `NAME.discovery.yaml` to its RL discovery listener, others to
    the frontend (or vLLM's one server)."""
    out = {}
    for suffix, attr in SIDE_SERVERS.items():
        if getattr(srv, attr, None):
            out[suffix] = httpx.Client(base_url=getattr(srv, attr), timeout=60)
    return out


def _until_held(control, future) -> None:
    """Wait until the fake holds the request just sent (or it was answered), so the next one follows it."""
    import time

    while not future.done():
        try:
            if any(f.state == "held" for f in list(control.flights.values())):
                return
        except RuntimeError:  # (the flights changed while read from this thread)
            pass
        time.sleep(0.002)


def _invariants(inter: Interaction, fake_inter: Interaction) -> list[str]:
    out = []
    if turn_kind(inter) is None or fake_inter.status >= 400:
        return out
    t = turn_tokens(fake_inter)
    if t is None:
        return ["fake answer cannot be parsed as a turn"]
    if t.completion_ids is not None and t.completion_logprobs is not None and len(t.completion_ids) != len(t.completion_logprobs):
        out.append(f"invariant: {len(t.completion_logprobs)} logprobs for {len(t.completion_ids)} ids")
    req = inter.request_json() or {}
    sent = req.get("tokens") or req.get("token_ids") or (req.get("nvext") or {}).get("token_data")
    if sent is not None and t.prompt_source in ("engine_data", "nvext", "response") and t.prompt_ids != sent:
        out.append("invariant: prompt ids do not echo the ids sent")
    return out


def compare(cassette_name: str, index: int, inter: Interaction, client: httpx.Client, kind: str,
            profile: str = "", sides: tuple[str, str] = ("real", "fake")) -> Check:
    headers = {k: v[-1] for k, v in inter.request_headers.items()
               if k.lower() in ("content-type", "accept")}
    parts = urlsplit(inter.uri)  # the query too: the control plane reads it (POST /pause?mode=keep)
    try:
        resp = client.request(inter.method, parts.path + (f"?{parts.query}" if parts.query else ""),
                              content=inter.request_body or None, headers=headers)
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:  # a tampered cassette: no request can be made of it
        raise CassetteError(f"{cassette_name}: interaction {index}: its URI cannot be sent ({exc})") from None
    fake = Interaction(inter.method, inter.uri, {}, inter.request_body, resp.status_code, "",
                       {k: [v] for k, v in resp.headers.items()}, resp.content)
    check = Check(profile or kind, cassette_name, index, f"{inter.method} {inter.path}", inter.status, resp.status_code)
    if resp.status_code != inter.status:
        check.problems.append(f"status: {sides[0]} {inter.status}, {sides[1]} {resp.status_code}")
    stream = inter.is_stream()
    real_body, fake_body = ((inter.sse_chunks(), fake.sse_chunks()) if stream
                            else (inter.response_json(), fake.response_json()))
    if (real_body is None) != (fake_body is None):
        check.problems.append("body: JSON on one side only")
    elif real_body is not None:
        for line in diff(real_body, fake_body, sides=sides):
            reason = next((r for k, p, r in ALLOWLIST if k == kind and re.search(p, line)), None)
            (check.allowed if reason else check.problems).append(line)
    if inter.path == "/metrics" and inter.status == resp.status_code == 200:
        check.problems.extend(_metric_differences(inter.response_body.decode("utf-8", "replace"), resp.text, sides))
    check.problems.extend(_invariants(inter, fake))
    return check


def _metric_differences(real: str, fake: str, sides: tuple[str, str]) -> list[str]:
    """/metrics families that differ in name, type or label names (values move with load and are not compared)."""
    from harness.wire.metrics import parse_families

    a, b = parse_families(real), parse_families(fake)
    out = [f"metrics: {name} only on the {sides[0]} side" for name in sorted(set(a) - set(b))]
    out += [f"metrics: {name} only on the {sides[1]} side" for name in sorted(set(b) - set(a))]
    out += [f"metrics: {name} is {a[name]} {sides[0]}, {b[name]} {sides[1]}"
            for name in sorted(set(a) & set(b)) if a[name] != b[name]]
    return out


def profile_of(cassette: Cassette):
    """(profile, None) from the cassette's `meta.profile`, or (None, why it cannot be told)."""
    from harness.wire.profiles import ProfileError, parse_label

    label = cassette.meta.get("profile")
    if not label:
        return None, (f"meta names no profile (server {cassette.meta.get('server')!r} "
                      f"{cassette.meta.get('server_version') or ''}): record it with harness record --profile "
                      f"LABEL, or add `profile: LABEL` under meta (labels: harness profiles)")
    try:
        return parse_label(str(label)), None
    except ProfileError as exc:
        return None, str(exc)


def run_conformance(path: str | Path, kind: str | None = None) -> Report:
    """Send every recorded request to a fake and compare. With `kind`, every cassette goes to that
    fake; without, each goes to a fake started with the profile its `meta` names, and a cassette
    whose server cannot be told is reported in `Report.unknown`, never compared."""
    from harness.wire.profiles import profile_label
    from fake_servers.server import RunningServer

    files, p = cassette_files(path), Path(path)
    report = Report([])
    groups: dict[tuple, list] = {}
    loaded = [(f, Cassette.load(f)) for f in files]
    # in the order they were recorded: a server's state (a worker that went down) carries over as it did
    loaded.sort(key=lambda fc: (min((i.recorded_at for i in fc[1].interactions if i.recorded_at), default=0.0),
                                str(fc[1].meta.get("recorded_at") or ""), str(fc[0])))
    for f, c in loaded:
        name = f"{f.parent.name}/{f.stem}" if p.is_dir() else f.name
        if kind is not None:
            cfg, label = fake_config(kind, [c]), kind
        else:
            prof, why = profile_of(c)
            if prof is None:
                report.unknown.append((name, why))
                continue
            cfg, label = fake_config(prof.kind, [c], prof), profile_label(prof)
            stem = f.name.removesuffix(".yaml")
            siblings = [f.with_name(stem + s + ".yaml") for s in SIDE_SERVERS]
            if any(stem.endswith(s) for s in SIDE_SERVERS) or any(x.exists() for x in siblings):
                cfg.enable_rl = cfg.dev_mode = True  # recorded from an RL side port, or beside such a recording
        key = (label, cfg.kind, cfg.model, cfg.max_model_len, cfg.dynamo_backend, cfg.chat_tokens_route, cfg.tool_parser,
               cfg.dev_mode, cfg.enable_rl, cfg.runtime_lora)
        groups.setdefault(key, []).append((name, c, cfg))
    for key, items in groups.items():
        with RunningServer(items[0][2]) as srv, httpx.Client(base_url=srv.root_url, timeout=60) as client, \
                ThreadPoolExecutor(8) as pool:
            routed = _clients(srv, client)
            # one scenario recorded from several ports (NAME.yaml, NAME.engine.yaml) is one timeline: its exchanges
            # go in arrival order across its files (a request that arrived while paused finished after the resume)
            steps = []
            for order, (name, c, _) in enumerate(items):
                start = min((i.recorded_at for i in c.interactions if i.recorded_at), default=None)
                for n, inter in enumerate(c.interactions):
                    at = inter.recorded_at if inter.recorded_at else start
                    steps.append(((at if at is not None else float(order), order, n), name, n, inter))
            pending = []
            for _, name, n, inter in sorted(steps, key=lambda s: s[0]):
                stem = name.removesuffix(".yaml").removesuffix(".yml")
                target = next((cl for suffix, cl in routed.items() if stem.endswith(suffix)), client)
                control = srv.state.control
                if control.paused and inter.path not in srv.state.control_paths and target is client:
                    # sent while the recorded server was paused: held until a later resume, as it was
                    pending.append(pool.submit(compare, name, n, inter, target, key[1], key[0]))
                    _until_held(control, pending[-1])
                    continue
                pending.append(compare(name, n, inter, target, key[1], key[0]))
            report.checks.extend(p if isinstance(p, Check) else p.result() for p in pending)
            for cl in routed.values():
                cl.close()
    return report


def run_drift(path: str | Path, live_url: str, label: str = "live") -> Report:
    """Send every recorded request to a live deployment and compare its answers with the recorded
    ones the same way: what a team runs after upgrading vLLM or Dynamo, before its trainer finds out."""
    from .reach import reach

    files, p = cassette_files(path), Path(path)
    reach(live_url, "--live")
    root = live_url.rstrip("/")
    root = root_of(root)
    report = Report([])
    with httpx.Client(base_url=root, timeout=120) as client, ThreadPoolExecutor(8) as pool:
        for f in files:
            c = Cassette.load(f)
            name = f"{f.parent.name}/{f.stem}" if p.is_dir() else f.name
            if any(f.name.removesuffix(".yaml").endswith(s) for s in SIDE_SERVERS):
                report.unknown.append((name, "recorded from an RL side port (the worker's system server or the "
                                             "discovery listener): --live URL names the frontend only"))
                continue
            pending, paused = [], False
            for n, inter in sorted(enumerate(c.interactions), key=lambda ni: ni[1].recorded_at or 0.0):
                if inter.faults:  # an injected fault is not the server's own answer
                    continue
                if paused and inter.path not in PAUSE_PATHS + RESUME_PATHS:
                    # it arrived while the recorded server was paused, and waited for the resume: so may it here
                    pending.append(pool.submit(compare, name, n, inter, client, "live", label, ("recorded", "live")))
                    continue
                try:
                    pending.append(compare(name, n, inter, client, "live", label, ("recorded", "live")))
                except httpx.TransportError as exc:
                    from .reach import Unreachable

                    raise Unreachable(f"--live {live_url} stopped answering at {name} #{n} "
                                      f"({type(exc).__name__}: {exc})") from None
                if inter.status == 200 and inter.path in PAUSE_PATHS + RESUME_PATHS:
                    paused = inter.path in PAUSE_PATHS
            report.checks.extend(x if isinstance(x, Check) else x.result() for x in pending)
    return report


PAUSE_PATHS = ("/pause", "/engine/pause_generation")  # (a recorded pause, for a drift replay's ordering)
RESUME_PATHS = ("/resume", "/engine/resume_generation")

