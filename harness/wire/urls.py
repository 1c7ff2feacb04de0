"""Server URLs: an OpenAI base URL (`.../v1`) and the server's root, where /health, /tokenize and
/inference/v1/generate live."""

from __future__ import annotations


def root_of(url: str) -> str:
    """`http://host:8000/v1/` -> `http://host:8000`; a root stays as it is."""
    url = url.rstrip("/")
    return url[:-3] if url.endswith("/v1") else url
