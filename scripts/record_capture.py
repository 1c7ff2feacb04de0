"""Record a production-like capture from a real server: several clients' rollouts at once, interleaved.

    python scripts/record_capture.py --upstream http://127.0.0.1:8011 --model tiny-qwen \
        --out cassettes/captures/vllm-0.32-cpu/capture.yaml [--rollouts 4] [--other 4] [--server "vLLM 0.32 (CPU)"]

Starts `harness record` in front of the server, then runs at the same time:
- `--rollouts` concurrent `harness rollout` processes (our client: vllm_generate, or --transport);
- `--other` conversations of another client: the OpenAI SDK, messages-in, multi-turn, asking for the
  engine's ids (`return_token_ids`) and never handing them back (silent MITO, as many clients do);
- one tokens-in client as prime-rl's orchestrator is (`/inference/v1/generate`, where the server has
  it): a group of rollouts sharing one prompt, one of which re-tokenizes its first answer's text
  (retokenization drift), to show `continuity_break`.
Then stops the recorder (the cassette is whole) and prints `harness audit`.
"""

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from harness.serve import wait_port

HARNESS = [sys.executable, "-m", "harness.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def openai_client(base_url: str, model: str, k: int, turns: int, extra: dict) -> None:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key="none", max_retries=2)
    messages = [{"role": "user", "content": f"Conversation {k}: name a city on a river."}]
    for t in range(turns):
        r = await client.chat.completions.create(model=model, messages=messages, max_completion_tokens=24, seed=k * 7 + t,
                                                 logprobs=True, extra_body=extra)
        messages += [{"role": "assistant", "content": r.choices[0].message.content or ""},
                     {"role": "user", "content": "And another one?"}]
    await client.close()


async def tokens_in_group(root: str, model: str, group: int, turns: int) -> None:
    import httpx

    from harness.tokenizer import load_tokenizer

    tok = load_tokenizer()
    enc = lambda text: tok.encode(text, add_special_tokens=False)  # noqa: E731
    first = enc("<|im_start|>user\nName three prime numbers.<|im_end|>\n<|im_start|>assistant\n")
    bridge = enc("\n<|im_start|>user\nGo on.<|im_end|>\n<|im_start|>assistant\n")
    stop = tok.convert_tokens_to_ids("<|im_end|>")
    async with httpx.AsyncClient(timeout=300) as http:
        async def one(r: int) -> None:
            prompt, answers = list(first), []
            for t in range(turns):
                body = {"model": model, "token_ids": prompt,
                        "sampling_params": {"max_tokens": 16, "seed": 100 * r + t, "temperature": 1.0, "logprobs": 1}}
                resp = await http.post(f"{root}/inference/v1/generate", json=body)
                if resp.status_code != 200:
                    return
                out = resp.json()["choices"][0]["token_ids"]
                answers.append(out)
                if r == 0 and t == 0 and out and out[-1] != stop:
                    out = out + [stop]  # make the drift visible: the answer ends where the text does
                if r == 0 and t == 1:  # drift: the first answer comes back as its text, re-tokenized
                    text = tok.decode(answers[0], skip_special_tokens=True)
                    prompt = first + enc(text) + prompt[len(first) + len(answers[0]):]
                prompt = prompt + out + bridge

        await asyncio.gather(*(one(r) for r in range(group)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--model", default="tiny-qwen")
    ap.add_argument("--out", required=True)
    ap.add_argument("--rollouts", type=int, default=4)
    ap.add_argument("--other", type=int, default=4)
    ap.add_argument("--group", type=int, default=4, help="tokens-in rollouts sharing one prompt (0: none)")
    ap.add_argument("--turns", type=int, default=3)
    ap.add_argument("--transport", default="vllm_generate")
    ap.add_argument("--server", default=None, help="provenance: what the upstream is")
    ap.add_argument("--ids-body", default='{"return_token_ids": true}',
                    help="JSON the OpenAI SDK client adds to ask for the engine's ids (Dynamo: "
                         "'{\"nvext\": {\"extra_fields\": [\"completion_token_ids\"]}}')")
    a = ap.parse_args()
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    rec = subprocess.Popen([*HARNESS, "record", "--upstream", a.upstream, "--cassette", str(out), "--port", str(port),
                            "--mode", "all", "--quiet", "--scenario",
                            f"{a.rollouts} harness rollouts ({a.transport}), {a.other} OpenAI SDK conversations, "
                            f"a group of {a.group} tokens-in rollouts (one drifting), concurrent",
                            *(["--hardware", a.server] if a.server else [])])
    try:
        wait_port(port)
        base = f"http://127.0.0.1:{port}/v1"
        t0 = time.time()
        ours = [subprocess.Popen([*HARNESS, "rollout", "--base-url", base, "--model", a.model, "--transport",
                                  a.transport, "--turns", str(a.turns), "--max-tokens", "24", "--seed", str(k)],
                                 stdout=subprocess.DEVNULL) for k in range(a.rollouts)]

        async def others():
            import json

            jobs = [openai_client(base, a.model, k, a.turns, json.loads(a.ids_body)) for k in range(a.other)]
            if a.group:
                jobs.append(tokens_in_group(f"http://127.0.0.1:{port}", a.model, a.group, a.turns))
            await asyncio.gather(*jobs)

        asyncio.run(others())
        codes = [p.wait() for p in ours]
        print(f"traffic done in {time.time() - t0:.0f} s; our rollouts exited {codes}")
    finally:
        rec.send_signal(signal.SIGINT)
        rec.wait(120)
    os.execv(sys.executable, [*HARNESS, "audit", str(out)])


if __name__ == "__main__":
    sys.exit(main())
