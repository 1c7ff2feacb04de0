"""Fake vLLM and NVIDIA Dynamo servers (aiohttp) backed by a deterministic fake engine."""
