"""TITO harness: a tokens-in/tokens-out client, fake vLLM/Dynamo servers, and record/replay."""

__version__ = "0.1.0"
