"""`harness view`: a conversation turn by turn in the terminal and as one static page, the page checked in
a real browser (Debian's chromium driven by Playwright; no browser download)."""

import re
import shutil
import subprocess
import sys

import pytest

from .conftest import record_drift

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def harness(*args):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def drifted(tmp_path_factory):
    """Two turns on /inference/v1/generate; the second re-tokenizes the first completion's text (drift)."""
    from harness.tokenizer import load_tokenizer

    path = tmp_path_factory.mktemp("view") / "drift.yaml"
    prompt, completion, retok, bridge = record_drift(path, load_tokenizer())
    second = prompt + retok + bridge
    return path, len(prompt), len(completion), len(prompt) + len(retok), len(second), second[len(prompt) + len(retok)]


def test_terminal_view_marks_origins_and_the_first_break(drifted):
    path, n_prompt, n_completion, at, n_second, _ = drifted
    result = harness("view", str(path), "--conversation", "0")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    run = lambda origin, a, b: [line for line in lines if re.match(rf"\s+{origin}\s+{a}\.\.{b}\s", line)]  # noqa: E731
    assert run("rendered", 0, n_prompt) and run("reused", 0, at), result.stdout
    drift = run("drift", at, n_second)
    assert drift and "first break in continuity" in drift[0], result.stdout
    assert "continuity_break" in result.stdout and "▁" <= max(result.stdout) and "logprobs" in result.stdout
    missing = harness("view", str(path), "--conversation", "7")
    assert missing.returncode == 2 and "no conversation 7" in missing.stderr


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (Debian: apt-get install chromium)")
def test_the_page_in_a_real_browser(drifted, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    path, n_prompt, n_completion, at, n_second, now_at = drifted
    page_file = tmp_path / "drift.html"
    result = harness("view", str(path), "--conversation", "0", "--html", str(page_file))
    assert result.returncode == 0, result.stderr
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(page_file.as_uri())
        assert page.locator("section.turn").count() == 2
        first, second = page.locator("#turn-1"), page.locator("#turn-2")
        assert first.locator(".prompt .tok.rendered").count() == n_prompt
        assert first.locator(".completion .tok.comp").count() == n_completion
        assert first.locator(".completion .bar").count() == n_completion  # a logprob bar per completion token
        assert first.locator("svg.spark polyline").count() == 1
        assert second.locator(".prompt .tok.reused").count() == at
        assert second.locator(".prompt .tok.drift").count() == n_second - at
        brk = page.locator("#first-break")
        assert brk.count() == 1 and brk.get_attribute("data-id") == str(now_at)  # where the re-tokenized prompt goes its own way
        brk.scroll_into_view_if_needed()
        assert brk.is_visible()
        assert page.evaluate("getComputedStyle(document.getElementById('first-break')).outlineColor") == "rgb(221, 0, 0)"
        assert "continuity_break" in second.locator(".anomaly").inner_text()
        page.screenshot(path=str(tmp_path / "drift.png"), full_page=True)
        browser.close()
    assert requests == [page_file.as_uri()]  # one static page: nothing else fetched
    assert (tmp_path / "drift.png").stat().st_size > 10_000
