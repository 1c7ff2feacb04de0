"""Every code block of the README and the docs runs, in order, page by page, in a fresh project folder, against
the fakes and the shipped cassettes (how each kind of block runs: tests/docs_runner.py). A doc that drifts from the
code fails here; the generated reference is held to cover everything it is generated from."""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys

import pytest

from .docs_runner import DOCS, RUNNABLE, ROOT, Fakes, Project, all_blocks, blocks, covers, pages, run_block


@pytest.fixture(scope="module")
def fakes():
    f = Fakes()
    yield f
    f.close()


PAGES = [p for p in pages() if blocks(p)]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_block_of_the_page_runs(page, fakes, tmp_path, monkeypatch):
    project = Project(tmp_path, fakes)
    monkeypatch.chdir(tmp_path)  # in-process servers resolve the page's relative paths from its folder too
    # a reader of the README or the docs has the shipped cassettes at cassettes/ (a checkout's, or the package's)
    (tmp_path / "cassettes").symlink_to(ROOT / "cassettes")
    try:
        for block in blocks(page):
            run_block(block, project)
    finally:
        for proc in project.jobs:
            if proc.poll() is None:
                if proc.pid is None:
                    proc.kill()
                else:
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    not_run = [t for t in project.written_tests if not any(covers(line, t) for line in project.ran)]
    assert not not_run, f"{page}: the page writes {not_run} but never runs them"


def test_every_block_is_one_the_runner_understands():
    found = all_blocks()
    assert len(found) > 10
    bad = [b.where() + f" ({b.lang or 'no language'})" for b in found if b.lang not in RUNNABLE]
    assert not bad, f"blocks no test runs: {bad}"


DRIFTED = {
    "output": "```console\n$ harness faults\nno_such_fault\n```\n",
    "exit code": "```bash\nharness audit cassettes/captures/vllm-0.32-cpu/capture.yaml\n```\n",
    "unrun test": "```python\n# tests/test_never_run.py\ndef test_x():\n    pass\n```\n",
    "python": "```python\nfrom harness.client import NoSuchThing\n```\n",
    "language": "```rust\nfn main() {}\n```\n",
}


@pytest.mark.parametrize("drift", DRIFTED, ids=list(DRIFTED))
def test_a_page_that_drifted_from_the_code_fails(drift, fakes, tmp_path):
    """The runner is not a formality: a wrong output, exit code, import, language or a test file the page never
    runs each fail it."""
    page = tmp_path / "page.md"
    page.write_text(DRIFTED[drift])
    project = Project(tmp_path / "project", fakes)
    project.cwd.mkdir()
    (project.cwd / "cassettes").symlink_to(ROOT / "cassettes")
    with pytest.raises((AssertionError, ImportError)):
        for block in blocks(page):
            run_block(block, project)
        assert not project.written_tests, "written, never run"


def test_the_fake_directive_is_read():
    page = ROOT / "README.md"
    stood_in = [b for p in pages() for b in blocks(p) if b.fakes]
    assert stood_in, "no block is marked as needing a deployment: the directive parser reads nothing"
    assert all(url.startswith("http") and label for b in stood_in for url, label in b.fakes.items())
    assert page.exists()


if __name__ == "__main__":  # the count of examples the suite runs
    counts = {}
    for b in all_blocks():
        counts[b.lang] = counts.get(b.lang, 0) + 1
    print(sum(counts.values()), "blocks:", counts)


def test_the_reference_covers_every_command_profile_fault_and_kind():
    """Generated, so complete by construction; this holds the generator to it, and the site's navigation to its
    pages (a page missing from the nav would be built but never found)."""
    sys.path.insert(0, str(ROOT))
    try:
        from scripts import docs_reference as ref
    finally:
        sys.path.remove(str(ROOT))
    from harness.captures.kinds import KINDS
    from harness.client.stitching import REASONS
    from harness.pytest_plugin import pytest_configure  # noqa: F401 - the markers come from it
    from harness.wire.faults import CATALOGUE
    from harness.wire.profiles import PROFILES, labels

    pages = ref.pages()
    cli = pages["reference/cli.md"]
    commands = ref.command_names()
    assert ["rl-step"] in commands and ["cassette", "extract"] in commands
    for path in commands:
        assert f"`harness {' '.join(path)}`" in cli, path
    todo = [ref.parser()]
    while todo:  # every option of every command, nested ones too
        parser = todo.pop()
        todo += [sub for _, sub, _ in ref.subcommands(parser)]
        for action in parser._actions:
            if not isinstance(action, argparse._HelpAction):
                assert all(f"`{option}`" in cli for option in action.option_strings), (parser.prog, action.dest)
    assert all(f"`{label}`" in pages["reference/profiles.md"] for label in [*PROFILES, *labels()])
    assert all(f"`{name}`" in pages["reference/faults.md"] for name in CATALOGUE)
    assert all(f"`{name}`" in pages["reference/stitching.md"] for name in [*REASONS, *KINDS])
    for fixture in ("fake_vllm", "fake_dynamo", "fake_vllm_server", "cassette_server", "fake_profile"):
        assert f"`{fixture}`" in pages["reference/pytest-plugin.md"]
    assert "`@pytest.mark.fake_fault(" in pages["reference/pytest-plugin.md"]
    nav = (ROOT / "mkdocs.yml").read_text()
    assert all(f" {path}\n" in nav for path in pages), "a generated page is missing from mkdocs.yml's nav"
    listed = re.findall(r":\s+([\w/.-]+\.md)\n", nav)
    missing = [p for p in listed if p not in pages and not (DOCS / p).exists()]
    assert not missing, f"mkdocs.yml's nav names pages that do not exist: {missing}"
