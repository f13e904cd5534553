"""Fixtures for anything that talks to an LLM: a scripted loopback server, the embedded model, and a
clean environment so no test reads the developer's keys or `.env`, or writes the repo's reply cache."""

from __future__ import annotations

import os

import pytest

from fake_openai import FakeOpenAI, Responder, echo_responder

LLM_ENV_VARS = ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENROUTER_API_KEY", "OPENAI_MODEL", "KIT_MODEL",
                "KIT_SCHEMA_STYLE")


@pytest.fixture(autouse=True)
def _isolated_llm_env(tmp_path_factory, monkeypatch):
    """Every test: its own reply cache, no endpoint or key from the environment, no `.env` read.
    The environment is restored afterwards as a whole: reading a `.env` sets variables that monkeypatch
    never saw, and a leaked OPENAI_BASE_URL would send the nbval kernels (children of pytest) elsewhere."""
    saved = dict(os.environ)
    monkeypatch.setenv("KIT_CACHE_DIR", str(tmp_path_factory.mktemp("llm-cache")))
    monkeypatch.setenv("KIT_NO_DOTENV", "1")
    for name in LLM_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def fake_openai():
    """Factory: `srv = fake_openai(responder)` starts a scripted server (stopped after the test)."""
    servers: list[FakeOpenAI] = []

    def start(responder: Responder = echo_responder) -> FakeOpenAI:
        servers.append(FakeOpenAI(responder).start())
        return servers[-1]

    yield start
    for srv in servers:
        srv.stop()


@pytest.fixture(scope="session")
def embedded_endpoint():
    """An Endpoint to the embedded llama.cpp server (SmolLM2-135M), started once per test session."""
    from kit.llm.local_server import local_server

    with local_server() as endpoint:
        yield endpoint
