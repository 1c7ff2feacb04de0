"""Write a tiny random Qwen2 model (about 20 M parameters) into a tokenizer directory.

Run with a Python that has torch and transformers (the real-server venv):
    python scripts/build_tiny_model.py DIR [--config-only] [--seed N]
DIR must already hold the tokenizer (`harness tokenizer build DIR`). The first embedding
coordinate is biased so that <|im_end|> is sampled about one token in three: completions then
end with the stop token and multi-turn TITO can be exercised on a real engine.
Never commit the result; rebuild it.
"""

import argparse
import sys

from transformers import Qwen2Config

IM_END = 151645

p = argparse.ArgumentParser()
p.add_argument("dir")
p.add_argument("--config-only", action="store_true", help="config.json only (enough for the Dynamo mocker)")
p.add_argument("--seed", type=int, default=0, help="another seed gives other weights (a second policy to update to)")
args = p.parse_args()

config = Qwen2Config(
    vocab_size=151936,
    hidden_size=128,
    num_attention_heads=2,
    num_key_value_heads=1,
    num_hidden_layers=2,
    intermediate_size=256,
    tie_word_embeddings=True,
    max_position_embeddings=4096,
    bos_token_id=151643,
    eos_token_id=IM_END,
    torch_dtype="float32",
)
if args.config_only:
    config.save_pretrained(args.dir)
    sys.exit(0)

import torch
from transformers import Qwen2ForCausalLM

torch.manual_seed(args.seed)
model = Qwen2ForCausalLM(config)
with torch.no_grad():
    emb = model.get_input_embeddings().weight
    emb[:, 0] = 10.0
    emb[IM_END, 0] = 11.0
model.save_pretrained(args.dir, safe_serialization=True)
print(f"tiny model written to {args.dir}")
