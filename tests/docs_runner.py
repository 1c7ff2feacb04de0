"""How tests/test_docs_examples.py runs the README's and the docs' code blocks: in order, page by page, in a fresh
project folder.

How a block runs:
- `bash`/`sh`: each line is a command. `harness ...` runs in process (one interpreter, no start-up per
  command); `python -m pytest ...` and anything else run as a subprocess. A trailing `# exit N` (or
  `# exits N`) is the exit code the command must give (default 0). `CMD &` starts a server in the background:
  the runner waits until its `--port` listens; `kill -INT %1` stops it (Ctrl-C), `wait` waits for it to exit
  cleanly. `pip install` lines are checked (each extra they name is in pyproject.toml), not run: the suite runs
  inside the installed package; `mkdocs serve` is checked against mkdocs.yml (the site is built by
  .ci/run, with `mkdocs build --strict`).
- `console`: `$ ` lines are commands as above; the lines after a command are output it must print.
- `python`: executed as `__main__`. A block whose first line is `# path/to/file` is written to that file of the
  project folder instead (a test file, a conftest.py), and some later command of the page must run it.
- `toml`: parsed; with a `# path` first line, written (`pyproject.toml` of the user's project).
- `sql`: run in DuckDB in the project folder (over the Parquet files earlier blocks wrote).
- `text`: output only after `<!-- output -->`: every line must be in what the command before it printed.

A block that needs a real deployment says which fake stands in for it, in a comment before it:
`<!-- fake: http://gpu-node:8000 = vllm-0.32 -->` (a profile label; several pairs separated by `,`). The URL is
rewritten to a fake of that profile, started once for the module. Ports a block listens on (`--port N`,
`127.0.0.1:N`) are moved to free ones, so blocks never collide with each other or anything else.
`<!-- ci -->` marks the README's test command: the suite cannot run itself, so the block is held to `.ci/run`,
which runs exactly that command.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SHELL = {"bash", "sh", "shell", "console"}
RUNNABLE = SHELL | {"python", "toml", "sql", "text"}
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)[ \t]*(?P<lang>[\w+-]*)[^\n]*$")
DIRECTIVE = re.compile(r"<!--\s*(fake|output|ci)\s*:?\s*(.*?)\s*-->", re.S)
FILE_HEADER = re.compile(r"^#\s*([\w./-]+\.(?:py|toml|cfg|ini|txt))\b")
SERVING = {"fake", "record", "replay", "chaos", "serve"}


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    code: str
    fakes: dict[str, str] = field(default_factory=dict)
    output: bool = False
    ci: bool = False  # the README's test command: what .ci/run runs (it cannot run inside the suite it starts)

    def where(self) -> str:
        page = self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page
        return f"{page}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a page, with the directives in the comment just before each."""
    lines = page.read_text().splitlines()
    found, pending, in_comment, i = [], "", False, 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            text = lines[i].strip()
            if text.startswith("<!--") or in_comment:
                pending += "\n" + text
                in_comment = "-->" not in text
            elif text:
                pending = ""
            i += 1
            continue
        indent, fence, start = m["indent"], m["fence"], i
        body = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        block = Block(page, start + 1, (m["lang"] or "").lower(), "\n".join(body) + "\n")
        for kind, value in DIRECTIVE.findall(pending):
            if kind == "fake":
                for pair in value.split(","):
                    url, _, label = pair.partition("=")
                    block.fakes[url.strip()] = " ".join(label.split())
            elif kind == "ci":
                block.ci = True
            else:
                block.output = True
        found.append(block)
        pending = ""
        i += 1
    return found


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def all_blocks() -> list[Block]:
    return [b for p in pages() for b in blocks(p)]


# ---------------------------------------------------------------- running


class Fakes:
    """One fake per profile label, started on first use, for the whole module."""

    def __init__(self):
        self.servers = {}

    def root_url(self, spec: str) -> str:
        """`LABEL [field=value ...]`: a fake of that profile label, FakeConfig fields set as given."""
        if spec not in self.servers:
            from fake_servers.server import FakeConfig, RunningServer
            from harness.wire.profiles import parse_label

            label, *fields = spec.split()
            overrides = {k: yaml.safe_load(v) for k, _, v in (f.partition("=") for f in fields)}
            srv = RunningServer(FakeConfig.for_profile(parse_label(label), **overrides))
            srv.__enter__()
            self.servers[spec] = srv
        return self.servers[spec].root_url

    def close(self):
        for srv in self.servers.values():
            srv.__exit__(None, None, None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Project:
    """The reader's project folder, the jobs running in it and what the last command printed."""
    cwd: Path
    fakes: Fakes
    jobs: list = field(default_factory=list)
    last_output: str = ""
    written_tests: set = field(default_factory=set)
    ran: list = field(default_factory=list)
    ports: dict = field(default_factory=dict)

    def env(self) -> dict:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.cwd), env.get("PYTHONPATH", "")]))
        return env


def rewrite(block: Block, code: str, project: Project) -> str:
    for url, label in block.fakes.items():
        code = code.replace(url, project.fakes.root_url(label))
    fake_ports = {u.rsplit(":", 1)[1] for u in (project.fakes.root_url(lb) for lb in block.fakes.values())}
    ports = set(re.findall(r"--(?:system-|rl-)?port[ =](\d{2,5})\b", code)) | set(re.findall(r"(?:127\.0\.0\.1|localhost):(\d{2,5})", code))
    for port in sorted(ports - fake_ports - {"0"}, key=len, reverse=True):
        new = project.ports.setdefault(port, str(free_port()))  # the same port of a page stays the same
        code = re.sub(rf"(--(?:system-|rl-)?port[ =]|127\.0\.0\.1:|localhost:){port}\b", rf"\g<1>{new}", code)
    return code


def logical_lines(code: str) -> list[str]:
    out, cur = [], ""
    for line in code.splitlines():
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        cur += line
        if cur.strip():
            out.append(cur.strip())
        cur = ""
    return out


def expected_status(line: str) -> int:
    m = re.search(r"#\s*exits?\s+(\d+)\b", line)
    return int(m.group(1)) if m else 0


def run_harness_in_process(args: list[str], project: Project) -> tuple[int, str]:
    from harness import cli

    buf = io.StringIO()
    old = os.getcwd()
    os.chdir(project.cwd)
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            try:
                code = cli.main(args)
            except SystemExit as e:  # argparse errors, --help
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    finally:
        os.chdir(old)
    return int(code or 0), buf.getvalue()


def run_pytest_in_process(args: list[str], project: Project) -> tuple[int, str]:
    """The reader's `python -m pytest`, in this interpreter (the tokenizer and imports are already warm); each
    page's test files are imported by path, so two pages' tests/test_x.py never clash."""
    buf = io.StringIO()
    old = os.getcwd()
    os.chdir(project.cwd)
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            code = pytest.main([*args, "-p", "no:cacheprovider", "--import-mode=importlib"])
    finally:
        os.chdir(old)
    return int(code), buf.getvalue()


def check_pip(words: list[str], where: str) -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for word in words:
        m = re.fullmatch(r"\.?\[([\w,-]+)\]|tito-harness\[([\w,-]+)\]|\.\[([\w,-]+)\]", word.strip("'\""))
        if m:
            for extra in next(g for g in m.groups() if g).split(","):
                assert extra in extras, f"{where}: pip install names extra {extra!r}, not in pyproject.toml"


def split_env(words: list[str]) -> tuple[dict, list[str]]:
    """`A=1 B=2 cmd ...` as bash reads it: the assignments, then the command."""
    env = {}
    if words and words[0] == "env":
        words = words[1:]
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        k, _, v = words[0].partition("=")
        env[k] = v
        words = words[1:]
    return env, words


class InProcessJob:
    """`harness fake ... &` in this interpreter: the fake's app on a thread of its own (no interpreter and tokenizer
    start-up per server), stopped by `kill` as the command's own Ctrl-C stops it. Quacks like a Popen."""

    def __init__(self, args: list[str], extra_env: dict, cwd: Path):
        from harness import cli, serve

        self.pid, self.returncode = None, None
        self.stop, ready = threading.Event(), threading.Event()
        real = serve.serve_forever

        def serve_until_killed(app, host="127.0.0.1", port=0, on_ready=None, **_):
            with serve.AppThread(app, host, port) as running:
                if on_ready:
                    on_ready(running.port)
                ready.set()
                self.stop.wait()

        def run():
            try:
                self.returncode = int(cli.main(args) or 0)
            except BaseException:  # noqa: BLE001 - reported as the job's exit status
                self.returncode = 1
            finally:
                ready.set()

        saved = {k: os.environ.get(k) for k in extra_env}
        os.environ.update(extra_env)
        serve.serve_forever = serve_until_killed
        try:
            self.thread = threading.Thread(target=run, daemon=True)
            self.thread.start()
            ready.wait(120)
        finally:
            serve.serve_forever = real
            for k, v in saved.items():
                os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)

    def poll(self):
        return self.returncode if not self.thread.is_alive() else None

    def send_signal(self, _sig):
        self.stop.set()

    def kill(self):
        self.stop.set()

    def communicate(self, timeout=None):
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise subprocess.TimeoutExpired("harness fake", timeout)
        return "", None

    def wait(self, timeout=None):
        self.communicate(timeout)
        return self.returncode


def start_job(words: list[str], project: Project, where: str) -> None:
    extra, words = split_env(words)
    if words[:2] == ["harness", "fake"]:
        proc = InProcessJob(words[1:], extra, project.cwd)
        project.jobs.append(proc)
        assert proc.poll() is None, f"{where}: {' '.join(words)} exited {proc.returncode}"
        return
    cmd = [sys.executable, "-m", "harness.cli", *words[1:]] if words[0] == "harness" else words
    proc = subprocess.Popen(cmd, cwd=project.cwd, env={**project.env(), **extra}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    project.jobs.append(proc)
    if "--port" in words:
        port = int(words[words.index("--port") + 1])
        deadline = time.monotonic() + 90
        while not listening(port):
            if proc.poll() is not None:
                raise AssertionError(f"{where}: {' '.join(words)} exited {proc.returncode}:\n{proc.stdout.read()}")
            assert time.monotonic() < deadline, f"{where}: {' '.join(words)} never listened on {port}"
            time.sleep(0.05)


def job(words: list[str], project: Project, where: str) -> subprocess.Popen:
    spec = next((w for w in words if w.startswith("%")), "%1")
    n = int(spec[1:])
    assert 1 <= n <= len(project.jobs), f"{where}: no background job {spec}"
    return project.jobs[n - 1]


def wait_job(proc: subprocess.Popen, project: Project, where: str) -> str:
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"{where}: a background job did not stop:\n{out}")
    assert proc.returncode in (0, -signal.SIGINT, -signal.SIGTERM, 130), \
        f"{where}: a background job exited {proc.returncode}:\n{out}"
    project.last_output = out
    return out


def run_command(line: str, project: Project, where: str) -> str:
    status = expected_status(line)
    words = shlex.split(line, comments=True)
    if not words:
        return ""
    if words[-1] == "&":
        command = split_env(words)[1]
        assert command[0] != "harness" or command[1] in SERVING, f"{where}: only servers run in the background"
        start_job(words[:-1], project, where)
        return ""
    if words[0] == "kill":
        sig = signal.SIGINT if "-INT" in words else signal.SIGTERM
        proc = job(words, project, where)
        if proc.poll() is None:
            proc.send_signal(sig)
        return ""
    if words[0] == "wait":
        return wait_job(job(words, project, where), project, where)
    if words[0] == "cd":
        project.cwd = (project.cwd / words[1]).resolve()
        return ""
    if words[:2] == ["pip", "install"] or words[:4] == ["python", "-m", "pip", "install"]:
        check_pip(words, where)
        return ""
    if words[:2] == ["mkdocs", "serve"]:
        assert (ROOT / "mkdocs.yml").exists(), f"{where}: no mkdocs.yml"
        return ""
    plain = not any(c in line.split("#")[0] for c in "|><;")
    if plain and (words[:3] == ["python", "-m", "pytest"] or words[0] == "pytest"):
        project.ran.append(line)
        code, out = run_pytest_in_process(words[words.index("pytest") + 1:], project)
    elif words[0] == "harness" and plain:
        assert words[1] not in SERVING, f"{where}: `{line}` serves until stopped: run it with `&`"
        code, out = run_harness_in_process(words[1:], project)
    else:
        if words[:3] == ["python", "-m", "pytest"] or words[0] == "pytest":
            project.ran.append(line)
        shell_line = line if words[0] != "python" else line.replace("python", sys.executable, 1)
        shell_line = re.sub(r"(^|&&\s*|\|\s*)harness\b", rf"\g<1>{sys.executable} -m harness.cli", shell_line)
        proc = subprocess.run(["bash", "-c", shell_line], cwd=project.cwd, env=project.env(), capture_output=True,
                              text=True, timeout=300)
        code, out = proc.returncode, proc.stdout + proc.stderr
    assert code == status, f"{where}: `{line}` exited {code}, the page says {status}:\n{out[-3000:]}"
    project.last_output = out
    return out


def run_shell(block: Block, project: Project) -> None:
    code = rewrite(block, block.code, project)
    console = block.lang == "console"
    lines = logical_lines(code)
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if console:
            if not line.startswith("$ "):
                continue
            line = line[2:]
        parts = line.split(" && ") if " && " in line and "|" not in line else [line]
        for part in parts:
            out = run_command(part, project, block.where())
        if console:
            want = []
            while i < len(lines) and not lines[i].startswith("$ "):
                want.append(lines[i])
                i += 1
            assert_printed(want, out, block.where())


def assert_printed(want: list[str], out: str, where: str) -> None:
    flat = " ".join(out.split())
    for line in want:
        if line.strip() and line.strip() != "...":
            assert " ".join(line.split()) in flat, f"{where}: the page shows {line!r}; the command printed:\n{out}"


def write_file(block: Block, project: Project, name: str) -> None:
    target = project.cwd / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(rewrite(block, block.code, project))
    if target.name.startswith("test_") and target.suffix == ".py":
        project.written_tests.add(name)


def run_block(block: Block, project: Project) -> None:
    first = block.code.lstrip().splitlines()[0] if block.code.strip() else ""
    header = FILE_HEADER.match(first)
    if block.ci:
        ci = (ROOT / ".ci" / "run").read_text()
        for line in logical_lines(block.code):
            command = line.split("   #")[0].split("  #")[0].strip()
            assert f"# the README's test command: {command}\n" in ci, \
                f"{block.where()}: .ci/run does not run `{command}` (keep its comment and calls in lockstep)"
            for part in command.split(" && "):
                assert part.replace("python -m pip", "pip").replace("pip install -e", "python -m pip install -q -e") \
                    in ci or part in ci, f"{block.where()}: .ci/run has no call `{part}`"
    elif block.lang in SHELL:
        run_shell(block, project)
    elif block.lang == "python" and header:
        write_file(block, project, header.group(1))
    elif block.lang == "python":
        code = rewrite(block, block.code, project)
        old = os.getcwd()
        os.chdir(project.cwd)
        sys.path.insert(0, str(project.cwd))
        try:
            exec(compile(code, block.where(), "exec"), {"__name__": "__main__"})
        finally:
            sys.path.remove(str(project.cwd))
            os.chdir(old)
    elif block.lang == "toml":
        tomllib.loads(block.code)
        if header:
            write_file(block, project, header.group(1))
    elif block.lang == "sql":
        duckdb = pytest.importorskip("duckdb")
        old = os.getcwd()
        os.chdir(project.cwd)
        try:
            rows = duckdb.sql(block.code).fetchall()
        finally:
            os.chdir(old)
        assert rows, f"{block.where()}: the query returned no rows"
    elif block.lang == "text":
        assert block.output, f"{block.where()}: a text block must be an output (<!-- output --> before it)"
        assert_printed(block.code.splitlines(), project.last_output, block.where())
    else:
        raise AssertionError(f"{block.where()}: a ```{block.lang or '(no language)'} block the runner cannot run")


def covers(pytest_line: str, test_file: str) -> bool:
    """Does this pytest command line run the test file (named, in a folder named, or everything)?"""
    words = shlex.split(pytest_line, comments=True)
    words = words[words.index("pytest") + 1:]
    paths = [w for i, w in enumerate(words) if not w.startswith("-") and (i == 0 or words[i - 1] not in ("-p", "-k", "-m"))]
    return not paths or any(test_file == p or test_file.startswith(p.rstrip("/") + "/") or p == "." for p in paths)
