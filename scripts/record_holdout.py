"""Record a holdout capture: a small httpx TITO client that is not ours (it stitches with its own tokenizer,
some rollouts with planted bugs) runs groups of rollouts through `harness record` in front of a fake vLLM, and a
ground-truth file says, per rollout, which requests it sent and what the audit must find.

    python scripts/record_holdout.py cassettes/captures/holdout/httpx-vllm-0.32
    python scripts/record_holdout.py cassettes/captures/holdout/httpx-real-vllm-0.32 http://127.0.0.1:8011

writes DIR/capture.yaml and DIR/truth.json (per rollout: the digests of its request bodies, its group, the
anomaly kinds and causes it planted). tests/test_capture_holdout.py scores the audit against it. The fake
answers no sample with the stop token alone (--empty-rate 0): two rollouts of a group whose answers are all empty
send byte-identical ids, which no reader of the traffic can tell apart.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

SYSTEM = "You are a careful calculator. Answer in one short sentence."
QUESTIONS = ["What is 17 times 3?", "Which is larger, 2 to the 10th or 10 cubed?"]
FOLLOW = ["Are you sure?", "Say it again in words."]
# the bug each rollout of a group carries, and what the audit must find on its stitched turns
PLANTS = {
    "healthy": [],
    "newline": [("bridge_mismatch", "whitespace or newline in the template")] * 2,
    "special": [("bridge_mismatch", "special tokens tokenized as text")] * 2,
    "edited": [],  # messages-in throughout; turn 3 edits turn 2's question: history_edited, no anomaly
}
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
ENCODE = threading.Lock()


def digest(body: bytes) -> str:
    return hashlib.blake2b(body, digest_size=12).hexdigest()


class Rollout:
    """One rollout of the client: three turns, stitched unless it falls back to messages-in."""

    def __init__(self, base: str, tok, question: str, plant: str, seed: int):
        self.base, self.tok, self.question, self.plant, self.seed = base, tok, question, plant, seed
        self.sent: list[str] = []

    def post(self, http, path, body) -> dict:
        raw = json.dumps(body).encode()
        self.sent.append(digest(raw))
        r = http.post(self.base + path, content=raw, headers={"content-type": "application/json"})
        r.raise_for_status()
        return r.json()

    def bridge(self, text: str, closed: bool) -> list[int]:
        head = "" if closed else IM_END
        rendered = f"{head}\n{IM_START}user\n{text}{IM_END}\n{IM_START}assistant\n"
        if self.plant == "newline":  # its local template puts a blank line after the assistant header
            rendered = rendered[:-1] + "\n\n"
        with ENCODE:  # the fast tokenizer's split_special_tokens is state shared across threads
            return list(self.tok.encode(rendered, add_special_tokens=False,
                                        split_special_tokens=self.plant == "special"))

    def run(self, http) -> None:
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": self.question}]
        stitch = self.plant != "edited"
        first = self.post(http, "/v1/chat/completions", {"model": "tiny-qwen", "messages": messages, "seed": self.seed,
                                                         "temperature": 1.0, "max_tokens": 24,
                                                         "return_token_ids": stitch})
        choice = first["choices"][0]
        messages.append({"role": "assistant", "content": choice["message"]["content"] or ""})
        if not stitch:
            for k, text in enumerate(FOLLOW):
                if k == 1:  # the client rewrites its earlier question, then asks on: its history is edited
                    messages[3] = {"role": "user", "content": FOLLOW[0] + " Check it."}
                messages.append({"role": "user", "content": text})
                a = self.post(http, "/v1/chat/completions", {"model": "tiny-qwen", "messages": messages,
                                                             "seed": self.seed, "temperature": 1.0, "max_tokens": 24})
                messages.append({"role": "assistant", "content": a["choices"][0]["message"]["content"] or ""})
            return
        head = list(first["prompt_token_ids"]) + list(choice["token_ids"])
        for text in FOLLOW:
            eos = self.tok.convert_tokens_to_ids(IM_END)
            prompt = head + self.bridge(text, bool(head) and head[-1] == eos)
            a = self.post(http, "/inference/v1/generate", {"model": "tiny-qwen", "token_ids": prompt,
                                                           "sampling_params": {"max_tokens": 24, "seed": self.seed,
                                                                               "temperature": 1.0}})
            head = prompt + list(a["choices"][0]["token_ids"])


def wait_port(proc, marker: str) -> int:
    line = proc.stdout.readline()
    while marker not in line:
        if proc.poll() is not None:
            raise SystemExit(f"not started: {proc.stderr.read()}")
        line = proc.stdout.readline()
    return int(line.split(marker)[1].split("/")[0])


def main(out: str, upstream: str | None = None) -> None:
    from harness.tokenizer import load_tokenizer

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    cassette = out_dir / "capture.yaml"
    cassette.unlink(missing_ok=True)
    tok = load_tokenizer()
    fake = None if upstream else subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "fake", "vllm", "--port", "0", "--empty-rate", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        upstream = upstream or f"http://127.0.0.1:{wait_port(fake, 'http://127.0.0.1:')}"
        rec = subprocess.Popen([sys.executable, "-m", "harness.cli", "record", "--upstream", upstream,
                                "--cassette", str(cassette), "--port", "0", "--quiet", "--profile", "vllm-0.32"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            port = wait_port(rec, "send traffic to http://127.0.0.1:")
            rollouts = [Rollout(f"http://127.0.0.1:{port}", tok, q, plant, 10 * g + k)
                        for g, q in enumerate(QUESTIONS) for k, plant in enumerate(PLANTS)]
            with httpx.Client(timeout=60) as http:
                threads = [threading.Thread(target=r.run, args=(http,)) for r in rollouts]
                for t in threads:
                    t.start()
                    time.sleep(0.01)
                for t in threads:
                    t.join()
        finally:
            rec.send_signal(2)
            rec.wait(30)
    finally:
        if fake is not None:
            fake.terminate()
            fake.wait(30)
    truth = [{"question": r.question, "group": QUESTIONS.index(r.question), "plant": r.plant, "requests": r.sent,
              "anomalies": [{"turn": t + 2, "kind": k, "cause": c} for t, (k, c) in enumerate(PLANTS[r.plant])]}
             for r in rollouts]
    (out_dir / "truth.json").write_text(json.dumps({"client": "scripts/record_holdout.py (httpx)",
                                                    "rollouts": truth}, indent=1))
    print(f"{len(rollouts)} rollouts into {cassette}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)  # OUT [UPSTREAM: a real vLLM instead of a fake]
