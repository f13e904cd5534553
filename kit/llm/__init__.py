"""Talking to any OpenAI-compatible server: endpoints from the environment, the embedded llama.cpp server,
the async client (retries, adaptive concurrency, deadlines) and its reply cache.
"""
