import os

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest  # noqa: E402

from harness.tokenizer import load_tokenizer  # noqa: E402

MODEL = "tiny-qwen"
TOOLS = [{"type": "function", "function": {"name": "lookup", "description": "look up",
                                           "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]


@pytest.fixture(scope="session")
def tokenizer():
    return load_tokenizer()


def tool_msg(text: str, i: int = 0) -> dict:
    return {"role": "tool", "tool_call_id": f"call_{i}", "content": text}
pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _fresh_parity_verdicts():
    """Parity verdicts are cached per base URL for a process's lifetime; tests reuse ports across
    servers with other templates, so each test starts with none."""
    from harness.client import client

    client._PARITY_CACHE.clear()
    yield
