"""pytest plugin (entry point `pytest11`): fake servers and cassettes as fixtures.

- `fake_vllm`, `fake_dynamo`: a running fake server's base URL (".../v1"), started once per
  session and profile in a thread (sync and async tests alike); faults and the request log are
  cleared after every test. `fake_vllm_server` / `fake_dynamo_server` yield the server object:
  `.base_url` (".../v1"), `.root_url`, `.set_faults(["reset@0.5", ...])`, `.received` (the requests it
  got: method, path, headers, body, status, faults, `.json()`), `.state` (requests counted, the fault
  plan, the profile). `@pytest.mark.fake_fault("http_503*2", ...)` sets faults for one test.
  `@pytest.mark.fake_profile("vllm-0.31", "dynamo-1.6.1+mocker")` picks the profiles (one per
  server kind; `harness profiles` lists them); or parametrize the `fake_profile` fixture
  (`@pytest.mark.parametrize("fake_profile", ["vllm-0.31", "vllm-0.32"], indirect=True)`). A profile
  of a kind the test's fixtures do not serve is an error, not silently the default.
- `cassette_server`: the base URL of a server for the test's cassette, named by
  `@pytest.mark.cassette("name")` (a path under the `tito_cassette_dir` ini option, default
  `cassettes/`, `.yaml` optional; default name: the test's name), or
  `@pytest.mark.cassette("shipped:real/vllm-0.32-cpu/streaming.yaml")` for one the package carries. With `--record-mode=none` (the
  default: CI never touches the network) it replays; with `once`, `new_episodes` or `all` it is a
  recording proxy in front of `--record-upstream URL`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

RECORD_MODES = ("none", "once", "new_episodes", "all")


def pytest_addoption(parser):
    group = parser.getgroup("tito-harness")
    try:
        group.addoption("--record-mode", action="store", default="none", choices=RECORD_MODES,
                        help="cassettes: none (replay only, default), once, new_episodes, all")
    except ValueError:  # pytest-recording already defines it, with the same meaning
        pass
    group.addoption("--record-upstream", action="store", default=None,
                    help="the real server to record from (e.g. http://gpu-node:8000)")
    parser.addini("tito_cassette_dir", "directory of cassettes for @pytest.mark.cassette", default="cassettes")


def pytest_configure(config):
    config.addinivalue_line("markers", "cassette(name): the cassette the cassette_server fixture serves")
    config.addinivalue_line("markers", "fake_profile(*labels): server profiles of the fake_vllm / fake_dynamo "
                                       "fixtures, one per kind (e.g. 'vllm-0.31', 'dynamo-1.6.1+mocker')")
    config.addinivalue_line("markers", "fake_fault(*specs, seed=None): catalogue faults the fake servers apply "
                                       "during this test (e.g. 'http_503*2', 'reset@0.5'; harness faults lists them)")


@pytest.fixture
def fake_profile(request):
    """The profile label a test is parametrized with (indirect), or None."""
    return getattr(request, "param", None)


def _profile_for(request, kind: str):
    from harness.wire.profiles import ProfileError, get_profile, parse_label

    labels = []
    marker = request.node.get_closest_marker("fake_profile")
    if marker:
        labels += list(marker.args)
    if "fake_profile" in request.fixturenames:
        param = request.getfixturevalue("fake_profile")
        if param:
            labels.append(param)
    try:
        profiles = [parse_label(label) for label in labels]
    except ProfileError as exc:
        pytest.fail(f"fake_profile: {exc}", pytrace=False)
    used = {kind} | {k for k, names in FIXTURES.items() if any(n in request.fixturenames for n in names)}
    stray = [label for label, p in zip(labels, profiles) if p.kind not in used]
    if stray:
        pytest.fail(f"fake_profile {', '.join(map(repr, stray))} is a profile of another server kind than the "
                    f"test's fixtures serve ({', '.join(sorted(FIXTURES[k][0] for k in used))}): name a "
                    f"{' or '.join(sorted(used))} profile (harness profiles lists them)", pytrace=False)
    return next((p for p in reversed(profiles) if p.kind == kind), get_profile(None, kind))


FIXTURES = {"vllm": ("fake_vllm", "fake_vllm_server"), "dynamo": ("fake_dynamo", "fake_dynamo_server")}


def _server(request, kind: str):
    from harness.wire.profiles import profile_label
    from fake_servers.server import FakeConfig, RunningServer

    prof = _profile_for(request, kind)
    label = profile_label(prof)
    key = f"_tito_fake_{label}"
    srv = getattr(request.config, key, None)
    if srv is None:
        srv = RunningServer(FakeConfig.for_profile(prof)).start()
        setattr(request.config, key, srv)
        request.config.add_cleanup(srv.stop)
    return srv


def _for_one_test(request, kind: str):
    srv = _server(request, kind)
    marker = request.node.get_closest_marker("fake_fault")
    if marker:
        from .wire.faults import FaultSpecError

        try:
            srv.set_faults(list(marker.args), marker.kwargs.get("seed"))
        except FaultSpecError as exc:
            pytest.fail(f"fake_fault: {exc}", pytrace=False)
    srv.clear_received()
    yield srv
    srv.set_faults([])
    srv.clear_received()


@pytest.fixture
def fake_vllm_server(request):
    """The running fake vLLM (RunningServer): base_url, set_faults, received, state."""
    yield from _for_one_test(request, "vllm")


@pytest.fixture
def fake_dynamo_server(request):
    """The running fake Dynamo frontend (RunningServer): base_url, set_faults, received, state."""
    yield from _for_one_test(request, "dynamo")


@pytest.fixture
def fake_vllm(fake_vllm_server) -> str:
    """Base URL of a running fake vLLM (model `tiny-qwen`)."""
    return fake_vllm_server.base_url


@pytest.fixture
def fake_dynamo(fake_dynamo_server) -> str:
    """Base URL of a running fake Dynamo frontend with a vLLM-like backend (model `tiny-qwen`)."""
    return fake_dynamo_server.base_url


SHIPPED = "shipped:"


def cassette_path(request) -> Path:
    """The marker's cassette: `shipped:real/vllm-0.32-cpu/streaming.yaml` names one the package carries
    (`harness.recording.format.shipped`), found wherever the package is installed; any other name is a
    path under `tito_cassette_dir` (or absolute)."""
    marker = request.node.get_closest_marker("cassette")
    name = marker.args[0] if marker and marker.args else request.node.name
    if isinstance(name, str) and name.startswith(SHIPPED):
        from .recording.format import CassetteError, shipped

        rel = name[len(SHIPPED):]
        try:
            return shipped(rel if rel.endswith((".yaml", ".yml")) else rel + ".yaml")
        except CassetteError as exc:
            pytest.fail(f"{exc}; `harness cassette conversations` reads any of them, and the package's "
                        f"cassettes/ folder lists them", pytrace=False)
    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        path = path.with_suffix(".yaml")
    if not path.is_absolute():
        path = Path(request.config.rootpath) / request.config.getini("tito_cassette_dir") / path
    return path


@pytest.fixture
def cassette_server(request):
    """Base URL of a replay server (or a recording proxy) for the test's cassette."""
    from .recording.format import Cassette, CassetteError
    from .recording.proxy import Recorder, create_proxy_app, recording_meta
    from .recording.replay import ReplayIndex, create_replay_app

    path = cassette_path(request)
    mode = request.config.getoption("--record-mode") or "none"
    upstream = request.config.getoption("--record-upstream")
    if mode == "once" and path.exists():
        mode = "none"
    marker = request.node.get_closest_marker("cassette")
    if mode != "none" and marker and str(marker.args[0] if marker.args else "").startswith(SHIPPED):
        pytest.fail("a shipped cassette is replayed, never recorded over: name a path of your own to record",
                    pytrace=False)
    if mode == "none":
        if not path.exists():
            pytest.fail(f"no cassette at {path}: record it with --record-mode=once --record-upstream URL", pytrace=False)
        app = create_replay_app(ReplayIndex([Cassette.load(path)]))
    else:
        if not upstream:
            pytest.fail(f"--record-mode={mode} needs --record-upstream URL", pytrace=False)
        try:
            recorder = Recorder(path, mode, meta=recording_meta(upstream, scenario=request.node.nodeid))
        except CassetteError as exc:
            pytest.fail(str(exc), pytrace=False)
        app = create_proxy_app(upstream, recorder)
    from .serve import AppThread

    with AppThread(app) as srv:
        yield f"http://127.0.0.1:{srv.port}/v1"
