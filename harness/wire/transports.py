"""The ways a TITO client sends tokens in, by name: the client's choices and the CLI's, kept as data here so
reading them costs no client import."""

TRANSPORTS = ("vllm_generate", "dynamo_chat", "dynamo_generate")
