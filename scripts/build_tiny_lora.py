"""Write a random LoRA adapter (rank 8 on q_proj and v_proj) for the tiny Qwen2 model, for recording how a real
server loads, serves and unloads adapters. Run with a Python that has torch and safetensors (the real-server venv):
    python scripts/build_tiny_lora.py DIR [--seed N]
Never commit the result; rebuild it.
"""

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

p = argparse.ArgumentParser()
p.add_argument("dir")
p.add_argument("--seed", type=int, default=5)
args = p.parse_args()
out = Path(args.dir)
out.mkdir(parents=True, exist_ok=True)
(out / "adapter_config.json").write_text(json.dumps({
    "base_model_name_or_path": "tiny-qwen", "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 8, "lora_alpha": 16,
    "lora_dropout": 0.0, "target_modules": ["q_proj", "v_proj"], "bias": "none", "fan_in_fan_out": False,
    "inference_mode": True}))
torch.manual_seed(args.seed)
tensors = {}
for layer in range(2):  # hidden 128; q_proj 128 -> 128, v_proj 128 -> 64 (one KV head of 64)
    for module, width in (("q_proj", 128), ("v_proj", 64)):
        prefix = f"base_model.model.model.layers.{layer}.self_attn.{module}"
        tensors[prefix + ".lora_A.weight"] = torch.randn(8, 128) * 0.5
        tensors[prefix + ".lora_B.weight"] = torch.randn(width, 8) * 0.5
save_file(tensors, str(out / "adapter_model.safetensors"))
print(f"LoRA adapter written to {out}")
