"""Fields of vLLM's answers that the RL state writes: `weight_versions` on choices (vLLM 0.33+) and a loaded LoRA
adapter's card in /v1/models."""

from __future__ import annotations

from harness.wire.profiles import Profile

from .control import Control
from .engine import Generation


def weight_versions(profile: Profile, control: Control, gen: Generation, body: dict, route: str,
                    covers: bool = True) -> dict:
    """`weight_versions` of a choice on the routes that carry it (vLLM 0.33+): the spans of versions over its
    tokens when the request asks `return_weight_versions` (and this chunk covers them), else null."""
    if route not in profile.weight_versions_routes:
        return {}
    if not (covers and body.get("return_weight_versions")):
        return {"weight_versions": None}
    spans = gen.versions or ((control.version or "default", 0, len(gen.token_ids)),)
    return {"weight_versions": [{"version": v, "start": a, "end": b} for v, a, b in spans]}


def lora_card(name: str, path: str, created: int, base_model: str) -> dict:
    """A loaded LoRA adapter as vLLM's /v1/models lists it (recorded: parent is the base model)."""
    return {"id": name, "object": "model", "created": created, "owned_by": "vllm", "root": path,
            "parent": base_model, "max_model_len": None,
            "permission": [{"id": f"modelperm-{created:x}", "object": "model_permission", "created": created,
                            "allow_create_engine": False, "allow_sampling": True, "allow_logprobs": True,
                            "allow_search_indices": False, "allow_view": True, "allow_fine_tuning": False,
                            "organization": "*", "group": None, "is_blocking": False}]}
