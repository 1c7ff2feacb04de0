"""verifiers' legacy token client (`OpenAIChatCompletionsTokenClient`, verifiers 0.3.x): messages-in
first turn, then `/v1/chat/completions/tokens` with prompts it stitches from the engine's earlier
ids and bridge tokens from the server's `/tokenize`, as verifiers' multi-turn environments drive it."""

from __future__ import annotations

from .base import CONVERSATION, Adapter, ScenarioFailed, Target, Wire, check_stitched, check_tokens


class VerifiersToken(Adapter):
    name = "verifiers-token"
    package = "verifiers"


    def applies(self, target: Target) -> str | None:
        if target.server != "vllm":
            return "verifiers' token client needs /tokenize and /v1/chat/completions/tokens (vLLM-style servers)"
        if not target.serves("chat_tokens"):
            return "verifiers' token client needs /v1/chat/completions/tokens (prime-rl's server), which this lacks"
        return None

    async def run(self, target: Target) -> None:
        from openai import AsyncOpenAI
        from verifiers.legacy.clients.openai_chat_completions_token_client import OpenAIChatCompletionsTokenClient
        from verifiers.legacy.types import SystemMessage, Tool, ToolMessage, TrajectoryStep, UserMessage
        from verifiers.legacy.utils.response_utils import parse_response_message, parse_response_tokens

        c = CONVERSATION
        tools = [Tool(name=t["function"]["name"], description=t["function"]["description"],
                      parameters=t["function"]["parameters"]) for t in c["tools"]]
        wire = Wire()
        async with wire.client() as http:
            client = OpenAIChatCompletionsTokenClient(AsyncOpenAI(base_url=target.base_url, api_key="unused",
                                                                  http_client=http, max_retries=1))
            state = {"trajectory": [], "model": target.model, "trajectory_id": "compat"}
            prompt = [SystemMessage(content=c["system"]), UserMessage(content=c["question"])]
            turns = []
            for k in range(4):
                n_before = len(wire.answers)
                resp = await client.get_response(prompt=prompt, model=target.model, tools=tools, state=state,
                                                 sampling_args={"max_tokens": 48, "seed": 5 + k})
                completion = await parse_response_message(resp)
                tokens = await parse_response_tokens(resp)
                if tokens is None:
                    raise ScenarioFailed(f"turn {k + 1}: the client parsed no tokens from the answer")
                route = "/v1/chat/completions" if k == 0 else "/v1/chat/completions/tokens"
                if route not in [p for p, _, _ in wire.answers[n_before:]]:
                    raise ScenarioFailed(f"turn {k + 1} did not go to {route}: {wire.paths()[n_before:]}")
                check_tokens(tokens["completion_ids"], tokens["completion_logprobs"], wire.last(route))
                if target.moe and k and target.profile is not None and "chat_tokens" in target.profile.experts_routes \
                        and tokens.get("routed_experts") is None:
                    raise ScenarioFailed(f"turn {k + 1}: the server sent routed experts; the client kept none")
                turns.append((tokens["prompt_ids"], tokens["completion_ids"]))
                state["trajectory"].append(TrajectoryStep(
                    prompt=prompt, completion=completion, response=resp, tokens=tokens, reward=None, advantage=None,
                    is_truncated=bool(tokens.get("is_truncated")), trajectory_id="compat", extras={}))
                calls = getattr(completion[-1], "tool_calls", None) if completion else None
                call_id = calls[0].id if calls else f"call_{k}"
                env = (UserMessage(content=c["final"]) if k == 2 else
                       ToolMessage(tool_call_id=call_id, content=c["tool_results"][k % len(c["tool_results"])]))
                prompt = [*prompt, *completion, env]
        check_stitched(turns)


ADAPTERS = [VerifiersToken()]
