"""HTTP with bounded retries: 429, 5xx, connection errors and cut streams are retried with
exponential backoff (honouring Retry-After); everything else is raised as a typed error at once."""

from __future__ import annotations

import asyncio
import logging
import random

import httpx
import orjson

from ..wire import sse
from .config import ClientConfig
from .errors import (HTTPStatusError, IncompleteStreamError, MalformedResponseError, TransportError,
                     error_from_response)
from ..wire.routed_experts import split_body

log = logging.getLogger("harness.client")

RETRY_STATUSES = {429, 500, 502, 503, 504}


class HTTP:
    def __init__(self, config: ClientConfig, client: httpx.AsyncClient | None = None):
        self.config = config
        headers = {"content-type": "application/json", **config.headers}
        if config.api_key:
            headers["authorization"] = f"Bearer {config.api_key}"
        self._own = client is None
        self.client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(config.timeout, connect=config.connect_timeout),
            limits=httpx.Limits(max_connections=1024, max_keepalive_connections=256),
            headers=headers)
        if not self._own:
            self.client.headers.update(headers)
        self.requests = 0

    async def aclose(self) -> None:
        if self._own:
            await self.client.aclose()

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), self.config.backoff_max)
            except ValueError:
                pass
        base = min(self.config.backoff * (2 ** attempt), self.config.backoff_max)
        return base * (0.5 + random.random() / 2)

    async def _attempts(self, method: str, url: str, body: dict | None, stream: bool):
        """Run the request with retries; returns the body bytes (or the SSE chunks when streaming)."""
        payload = orjson.dumps(body) if body is not None else None
        attempts = self.config.max_retries + 1
        last: Exception | None = None
        for attempt in range(attempts):
            self.requests += 1
            retry_after = None
            try:
                if stream:
                    return await self._stream_once(url, payload, attempt + 1)
                resp = await self.client.request(method, url, content=payload)
                if resp.status_code < 300:
                    return resp.content
                raise _status_error(resp.status_code, resp.content, resp.headers, attempt + 1)
            except (httpx.TransportError, IncompleteStreamError) as exc:
                last = exc
            except HTTPStatusError as exc:
                if exc.status not in RETRY_STATUSES:
                    raise
                last, retry_after = exc, exc.retry_after
            log.debug("%s %s attempt %d/%d failed: %s", method, url, attempt + 1, attempts, last)
            if attempt + 1 < attempts:
                await asyncio.sleep(self._delay(attempt, retry_after))
        if isinstance(last, (HTTPStatusError, IncompleteStreamError)):
            last.attempts = attempts
            raise last
        raise TransportError(f"{method} {url} failed after {attempts} attempts: {type(last).__name__}: {last}",
                             attempts)

    async def post(self, url: str, body: dict) -> dict:
        """POST JSON, parse the answer (routed-experts blobs cut out first). Sets `_blobs`."""
        content = await self._attempts("POST", url, body, stream=False)
        return parse_json(content)

    async def get(self, url: str) -> dict:
        return parse_json(await self._attempts("GET", url, None, stream=False))

    async def post_stream(self, url: str, body: dict) -> list[dict]:
        return await self._attempts("POST", url, body, stream=True)

    async def _stream_once(self, url: str, payload: bytes, attempt: int) -> list[dict]:
        chunks: list[dict] = []
        async with self.client.stream("POST", url, content=payload) as resp:
            if resp.status_code >= 300:
                raise _status_error(resp.status_code, await resp.aread(), resp.headers, attempt)
            done = False
            try:
                async for line in resp.aiter_lines():
                    data = sse.data_of(line)
                    if data is None:
                        continue
                    if sse.is_done(data):
                        done = True
                        break
                    try:
                        chunks.append(orjson.loads(data))
                    except orjson.JSONDecodeError:
                        raise MalformedResponseError(f"stream chunk is not JSON: {data[:200]!r}") from None
            except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                raise IncompleteStreamError(f"stream from {url} cut after {len(chunks)} chunks: {exc}", attempt) from None
        if not done:
            raise IncompleteStreamError(f"stream from {url} ended after {len(chunks)} chunks without [DONE]", attempt)
        return chunks


def _status_error(status: int, content: bytes, headers, attempt: int) -> HTTPStatusError:
    err = error_from_response(status, content, attempt)
    err.retry_after = headers.get("retry-after")
    return err


def parse_json(content: bytes) -> dict:
    """Parse an answer body; routed-experts blobs are cut out and kept under `_blobs`."""
    try:
        body, blobs = split_body(content)
    except (orjson.JSONDecodeError, ValueError) as exc:
        raise MalformedResponseError(f"answer is not valid JSON ({exc}): {content[:200]!r}") from None
    if not isinstance(body, dict):
        raise MalformedResponseError(f"answer is not a JSON object: {content[:200]!r}")
    if blobs:
        body["_blobs"] = blobs
    return body
