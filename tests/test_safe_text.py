"""The wire layer's safe-text functions hold against any text a cassette could carry."""

import ast
import html.parser
import math

import pytest
from hypothesis import given, settings, strategies as st

from harness.wire.safe_text import html_text, is_clean, known_label, py_literal, terminal

HOSTILE = ["\x1b[31mred\x1b[0m", "\x1b]0;title\x07", "\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "\x9b2J",
           "a\rb", "\u202eevil", "zero\u200bwidth", "\x00nul", '""" + __import__("os").system("x") + """']


@pytest.mark.parametrize("text", HOSTILE)
def test_terminal_leaves_no_escape_or_control(text):
    out = terminal(text)
    assert is_clean(out) and "\x1b" not in out and "\x9b" not in out
    assert all(ord(c) >= 0x20 for c in out)


def test_terminal_shows_what_it_escaped_and_keeps_plain_text():
    assert terminal("\x1b[31mred") == "\\x1b[31mred"
    assert terminal("a\nb\tc") == "a\\x0ab\\x09c"
    assert terminal("a\nb\tc", keep_layout=True) == "a\nb\tc"
    assert terminal("\u202e") == "\\u202e"
    assert terminal("héllo 你好 🎉") == "héllo 你好 🎉"
    assert terminal("x" * 50, limit=10) == "x" * 10 + "… (40 more characters)"
    assert terminal(None) == "None"


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_terminal_and_html_of_any_text(text):
    out = terminal(text)
    assert is_clean(out)
    page = html_text(text)
    assert not any(c in page for c in "<>\"'") and is_clean(page, keep_layout=True)

    class P(html.parser.HTMLParser):
        data = ""

        def handle_starttag(self, tag, attrs):
            raise AssertionError(f"markup from text: {tag}")

        def handle_data(self, d):
            self.data += d

    p = P(convert_charrefs=True)
    p.feed(f"<p>{page}</p>".replace("<p>", "").replace("</p>", ""))
    p.close()
    assert p.data == terminal(text, keep_layout=True)


plain = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                     | st.text(), lambda kids: st.lists(kids) | st.dictionaries(st.text(), kids), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(plain)
def test_py_literal_reads_back_as_the_value_and_holds_no_code(value):
    src = py_literal(value)
    assert ast.literal_eval(src) == value
    tree = ast.parse(f"X = {src}")
    names = [n for n in ast.walk(tree) if isinstance(n, (ast.Call, ast.Attribute, ast.Name))]
    assert [n.id for n in names if isinstance(n, ast.Name)] == ["X"]  # no call, no attribute, no other name


@pytest.mark.parametrize("bad", [math.nan, math.inf, object(), b"bytes", {1, 2}, [print]])
def test_py_literal_refuses_what_is_no_plain_data(bad):
    with pytest.raises(ValueError):
        py_literal(bad)


def test_py_literal_refuses_deep_values():
    deep: list = []
    for _ in range(200):
        deep = [deep]
    with pytest.raises(ValueError, match="deeper"):
        py_literal(deep)


def test_known_label():
    assert known_label("vllm-0.32", {"vllm-0.32", "dynamo-1.6.1"}) == "vllm-0.32"
    with pytest.raises(ValueError, match=r"profile '\\x1b\[2J\\n' is not one of: a, b"):
        known_label("\x1b[2J\n", {"a", "b"}, "profile")
    with pytest.raises(ValueError):
        known_label(["a"], {"a"})
