"""Secrets out before anything touches disk: headers, query tokens, and key-looking strings.

Every secret becomes the same stable placeholder, so scrubbed cassettes still diff cleanly and
replay (the replay matcher never looks at headers or the scrubbed query values).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

PLACEHOLDER = "<SCRUBBED>"

SECRET_HEADERS = {
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key", "openai-api-key",
    "x-auth-token", "x-access-token", "x-amz-security-token", "x-goog-api-key", "ocp-apim-subscription-key",
}
_SECRET_HEADER_PARTS = ("token", "secret", "api-key", "apikey", "password", "credential", "session")
# a rollout's session id (verifiers' X-Session-ID, ...) is no credential, but it may be guessable: it is
# kept as a digest, so a capture's requests still group by session and the value never reaches disk
SESSION_ID_HEADERS = {"x-session-id", "session-id", "x-session", "x-rollout-id"}
SECRET_QUERY_KEYS = {"api_key", "apikey", "key", "token", "access_token", "auth", "sig", "signature", "password",
                     "secret", "client_secret", "code"}
# (regex, literal hints: the regex can only match text holding one of them, lower-cased)
BODY_PATTERNS = [
    (r"(?i)bearer\s+[A-Za-z0-9._~+/=-]{8,}", ("bearer",)),
    (r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{16,}", ("sk-",)),
    (r"\bhf_[A-Za-z0-9]{20,}", ("hf_",)),
    (r"\bnvapi-[A-Za-z0-9_-]{20,}", ("nvapi-",)),
    (r"\bgh[pousr]_[A-Za-z0-9]{20,}", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")),
    (r"\bAKIA[0-9A-Z]{16}\b", ("akia",)),
    (r"\bxox[abprs]-[A-Za-z0-9-]{10,}", ("xox",)),
    (r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}", ("eyj",)),  # JWT
    (r"""(?i)(["']?(?:api[_-]?key|secret|password|access[_-]?token|auth[_-]?token)["']?\s*[:=]\s*["']?)([A-Za-z0-9._~+/-]{8,})""",
     ("apikey", "api_key", "api-key", "secret", "password", "accesstoken", "access_token", "access-token", "authtoken",
      "auth_token", "auth-token")),
]


# every literal hint above contains one of these (lower-cased): a body holding none of them is clean,
# and checking 13 short strings is cheaper than checking 30
_SENTINELS = [b"bearer", b"sk-", b"hf_", b"nvapi-", b"gh", b"akia", b"xox", b"eyj", b"api", b"secret", b"password",
              b"access", b"auth"]
_SENTINELS_STR = [x.decode() for x in _SENTINELS]
assert all(any(s.decode() in h for s in _SENTINELS) for _, hs in BODY_PATTERNS for h in hs)
# one pass over the lower-cased text finds any of them (instead of 13 searches)
_SENTINEL_RX = re.compile(b"|".join(re.escape(x) for x in _SENTINELS))
_SENTINEL_RX_STR = re.compile("|".join(re.escape(x) for x in _SENTINELS_STR))


@dataclass
class Scrubber:
    """Scrubs headers, URLs and bodies; `extra_patterns` are more regexes to blank out."""

    extra_patterns: list[str] = field(default_factory=list)
    placeholder: str = PLACEHOLDER

    def __post_init__(self):
        self._patterns = [(re.compile(p), hints) for p, hints in BODY_PATTERNS]
        self._patterns += [(re.compile(p), ()) for p in self.extra_patterns]
        # a body or header set holding none of the sentinels cannot hold a secret (None: an extra pattern
        # has no hints, every pattern runs)
        self._hints_b = None if self.extra_patterns else _SENTINELS
        self._secret_names: dict[str, bool] = {}

    def is_secret_header(self, name: str) -> bool:
        known = self._secret_names.get(name)
        if known is None:
            low = name.lower()
            known = low in SECRET_HEADERS or any(part in low for part in _SECRET_HEADER_PARTS)
            if len(self._secret_names) < 4096:
                self._secret_names[name] = known
        return known

    def headers(self, headers: dict) -> dict:
        """Header dict (values str or list) with secret values replaced."""
        if self._hints_b is not None and not any(map(self.is_secret_header, headers)):
            joined = "\n".join(x for v in headers.values() for x in (v if isinstance(v, list) else (v,)))
            if not _SENTINEL_RX_STR.search(joined.lower()):  # nothing to replace: the same mapping back
                return headers
        out = {}
        for k, v in headers.items():
            if k.lower() in SESSION_ID_HEADERS:
                out[k] = [self.digest(x) for x in v] if isinstance(v, list) else self.digest(v)
            elif self.is_secret_header(k):
                out[k] = [self.placeholder] * len(v) if isinstance(v, list) else self.placeholder
            elif isinstance(v, list):
                out[k] = [self.text(x) for x in v]
            else:
                out[k] = self.text(v)
        return out

    def digest(self, value: str) -> str:
        """A stable stand-in for a value that must not reach disk but still tells requests apart."""
        import hashlib

        return f"<sha256:{hashlib.sha256(value.encode('utf-8', 'replace')).hexdigest()[:16]}>"

    def url(self, url: str) -> str:
        parts = urlsplit(url)
        if not parts.query:
            return url
        pairs = [(k, self.placeholder if k.lower() in SECRET_QUERY_KEYS else self.text(v))
                 for k, v in parse_qsl(parts.query, keep_blank_values=True)]
        return urlunsplit(parts._replace(query=urlencode(pairs, safe="<>")))

    def text(self, text: str) -> str:
        low = text.lower()
        for pattern, hints in self._patterns:
            if hints and not any(h in low for h in hints):
                continue
            if pattern.groups >= 2:
                text = pattern.sub(lambda m: m.group(1) + self.placeholder, text)
            else:
                text = pattern.sub(self.placeholder, text)
        return text

    def body(self, body: bytes) -> bytes:
        """Scrub a body; routed-experts base64 blobs are left alone (a pattern must never corrupt them)."""
        if not body:
            return body
        if self._hints_b is not None and len(body) < 256 * 1024:  # (large bodies: routed experts, skipped below)
            if not _SENTINEL_RX.search(body.lower()):
                return body  # no pattern can match
        from ..wire.routed_experts import find_blobs

        try:
            spans = find_blobs(body) if b'"routed_experts"' in body else []
        except ValueError:
            spans = []
        out, last, changed = [], 0, False
        view = memoryview(body)
        for s, e in [*spans, (len(body), len(body))]:
            part = bytes(view[last:s])
            clean = self._segment(part)
            changed = changed or clean is not part
            out += [clean, view[s:e]]
            last = e
        if not changed:  # (a 4 MB answer is not copied to find it clean)
            return body
        scrubbed = b"".join(out)
        return body if scrubbed == body else scrubbed

    def _segment(self, raw: bytes) -> bytes:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw
        scrubbed = self.text(text)
        return raw if scrubbed == text else scrubbed.encode("utf-8")
