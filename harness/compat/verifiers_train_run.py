"""The verifiers 0.4 `TrainClient` scenario, run inside the environment that has verifiers 0.4
(python -m harness.compat.verifiers_train_run BASE_URL MODEL TOKENIZER_DIR [--moe]); prints one JSON
line: {"ok": true} or {"ok": false, "error": "..."}.

verifiers 0.4 cannot share an environment with verifiers 0.3 (the legacy token client's
generation), so `verifiers_train.py` runs this in its own venv. It drives the client as verifiers'
interception server does: a trace, `prepare_turn` per request, `get_response`, `commit`; turn 1 is
rendered; turns 2..4 are bridged from the previous turn's ids where the renderer can
(`renderer.bridge_to_next_turn`), else rendered afresh, and sent to `/inference/v1/generate`; each
later prompt must start with the previous prompt + completion ids.
"""

from __future__ import annotations

import asyncio
import json
import sys


async def scenario(base_url: str, model: str, tokenizer_dir: str, moe: bool) -> None:
    from verifiers.v1 import graph
    from verifiers.v1.clients.train import TrainClient
    from verifiers.v1.configs.client import TrainClientConfig
    from verifiers.v1.dialects import ChatDialect
    from verifiers.v1.trace import AgentInfo, Trace, TraceTask
    from verifiers.v1.types import SamplingConfig, SystemMessage, Tool, ToolMessage, UserMessage

    from .base import CONVERSATION, ScenarioFailed, Wire, check_stitched, check_tokens

    c = CONVERSATION
    tools = [Tool(name=t["function"]["name"], description=t["function"]["description"],
                  parameters=t["function"]["parameters"]) for t in c["tools"]]
    wire = Wire()
    from renderers import DefaultRendererConfig

    # the renderer a verifiers user gets for a model renderers does not know (our Qwen2.5 ChatML template):
    # the default one, with the <tool_call> JSON parser Qwen models use. It renders every turn afresh
    # (it has no bridge); the model-specific renderers need Qwen3's extra special tokens, which the
    # Qwen2.5 vocabulary lacks
    client = TrainClient(TrainClientConfig(base_url=base_url, renderer_model_name=tokenizer_dir,
                                           renderer=DefaultRendererConfig(tool_parser="qwen3")))
    from openai import AsyncOpenAI

    async with wire.client() as http:
        await client.client.close()
        client.client = AsyncOpenAI(base_url=base_url, api_key="unused", http_client=http, max_retries=1)
        trace = Trace(task=TraceTask(type="compat", data={}), agent=AgentInfo(config={}))
        prompt = [SystemMessage(content=c["system"]), UserMessage(content=c["question"])]
        turns = []
        for k in range(4):
            pending = graph.prepare_turn(trace, prompt, tools)
            n_before = len(wire.answers)
            resp = await client.get_response(ChatDialect(), {"model": model}, SamplingConfig(max_tokens=48, seed=5 + k),
                                             turn=pending)
            pending.commit(resp)
            if "/inference/v1/generate" not in wire.paths()[n_before:]:
                raise ScenarioFailed(f"turn {k + 1} did not go to /inference/v1/generate: {wire.paths()[n_before:]}")
            tokens = resp.tokens
            check_tokens(tokens.completion_ids, tokens.completion_logprobs, wire.last("/inference/v1/generate"))
            sent = (wire.last("/inference/v1/generate").get("choices") or [{}])[0].get("routed_experts")
            if moe and sent is not None and tokens.routed_experts is None:
                raise ScenarioFailed(f"turn {k + 1}: the server sent routed experts; the client kept none")
            turns.append((tokens.prompt_ids, tokens.completion_ids))
            calls = resp.message.tool_calls
            env = (UserMessage(content=c["final"]) if k == 2 else
                   ToolMessage(tool_call_id=calls[0].id if calls else f"call_{k}",
                               content=c["tool_results"][k % len(c["tool_results"])]))
            prompt = [*prompt, resp.message, env]
    await client.close()
    check_stitched(turns)


def main(argv: list[str]) -> int:
    base_url, model, tokenizer_dir = argv[:3]
    try:
        asyncio.run(scenario(base_url, model, tokenizer_dir, "--moe" in argv))
    except Exception as exc:  # the client's own first error, one line
        from .base import first_line

        print(json.dumps({"ok": False, "error": first_line(exc)}))
        return 0
    print(json.dumps({"ok": True}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
