"""Chat-template variants a misconfigured engine might run (the `template_*` faults)."""

from __future__ import annotations

_EDITS = {
    # A default system prompt when the conversation has none (and no tools).
    "template_system_default": (
        "{%- elif system_text is not none -%}",
        "{%- elif system_text is none -%}\n{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' -}}\n"
        "{%- elif system_text is not none -%}",
    ),
    # No newline after the role name of plain (user/system) messages.
    "template_no_newline": (
        "{{- '<|im_start|>' + m.role + '\\n' + text_of(m.content) + '<|im_end|>\\n' -}}",
        "{{- '<|im_start|>' + m.role + text_of(m.content) + '<|im_end|>\\n' -}}",
    ),
    # Tool definitions rendered as bare function objects instead of the full tool entries.
    "template_tools_format": (
        "{%- for tool in tools -%}{{- '\\n' + (tool | tojson) -}}{%- endfor -%}",
        "{%- for tool in tools -%}{{- '\\n' + ((tool.function if tool.function is defined else tool) | tojson) -}}{%- endfor -%}",
    ),
}


def variant(template: str, fault: str) -> str:
    """`template` with the edit named by `fault`; ValueError when the template has no such spot."""
    old, new = _EDITS[fault]
    if old not in template:
        raise ValueError(f"fault {fault} needs the project's ChatML template; this tokenizer's template differs")
    return template.replace(old, new, 1)


def variants(template: str | None) -> dict[str, str]:
    """Every variant that applies to `template` (none when the template is foreign)."""
    out = {}
    for name in _EDITS:
        try:
            out[name] = variant(template or "", name)
        except ValueError:
            pass
    return out
