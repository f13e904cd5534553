"""Which OpenAI-compatible server(s) to talk to, decided from arguments, the environment and `.env`.

Precedence, first match wins:
  1. explicit URL(s) passed by the caller (`--endpoint`; several, comma-separated, are used round-robin),
  2. `OPENAI_BASE_URL` (+ `OPENAI_API_KEY`), or `OPENAI_API_KEY` alone: OpenAI's API,
  3. `OPENROUTER_API_KEY` alone: OpenRouter's API,
  4. nothing: `[]`, meaning "start the embedded local model" (see kit.llm.local_server).
The model comes from the argument, else `OPENAI_MODEL`, else `KIT_MODEL`; left empty, the client asks
the server (`GET /models`) and uses its only model. `.env` is skipped when KIT_NO_DOTENV is set (the
tests set it, so a developer's own keys are never used by a test run). Keys are read from the environment only and never
shown: an Endpoint's repr and str leave the key out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from dotenv import load_dotenv

from kit.paths import project_root
from kit.secrets import scrub_url

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
OPENROUTER_BASE_URL = "https://openrouter.ai/api/v1"
SCHEMA_STYLES = ("openai", "llamacpp", "auto")
# Servers that need no key (vLLM, llama.cpp) still get one: the openai client refuses an empty key.
NO_KEY = "no-key"


@dataclass(frozen=True)
class Endpoint:
    """One OpenAI-compatible server and the model to ask there.

    schema_style: how the server takes a JSON schema for structured output:
    "openai" -> response_format={"type": "json_schema", "json_schema": {...}} (OpenAI, OpenRouter, vLLM);
    "llamacpp" -> response_format={"type": "json_object", "schema": ...} (llama-cpp-python's server);
    "auto" -> not known yet: `kit.llm.client.discover` asks the server's /models (llama-cpp-python
    says owned_by "llamacpp") and picks one of the two; requests are sent openai-style until then.
    """

    base_url: str
    model: str
    api_key: str = field(default=NO_KEY, repr=False, compare=False)
    schema_style: str = "openai"
    # What the reply cache calls this server. None: its URL. A server the kit starts itself listens on a
    # new port each time; naming it by its model file lets a re-run reuse the replies it already paid for.
    cache_name: str | None = field(default=None, compare=False)
    # For a server the kit started itself: `gone(wait)` says why it has stopped (its exit and last log
    # line), None while it runs. The client asks it so a dead engine stops a run instead of being retried.
    gone: Callable[[float], str | None] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.schema_style not in SCHEMA_STYLES:
            raise ValueError(f"schema_style must be one of {SCHEMA_STYLES}, got {self.schema_style!r}")
        object.__setattr__(self, "base_url", check_url(self.base_url).rstrip("/"))

    def __str__(self) -> str:
        return f"{self.model or '<model from server>'} @ {scrub_url(self.base_url)}"


def check_url(url: str) -> str:
    """`url` if it is an http(s) URL with a host, else ValueError at once (not 25 s of retries later)."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError:
        host, parts = None, None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise ValueError(f"endpoint {scrub_url(url)!r} is not an http(s) URL; give one like "
                         f"http://127.0.0.1:8080/v1 or https://api.openai.com/v1")
    if "@" in parts.netloc:  # the key goes as a bearer token, which HTTP clients refuse to combine with these
        raise ValueError(f"endpoint {scrub_url(url)!r} has credentials in it; give the URL without them and "
                         f"the key in OPENAI_API_KEY (environment or .env)")
    return url.strip()


def load_env_file() -> None:
    """Read `.env` from the working directory and the project root; variables already set win."""
    if os.environ.get("KIT_NO_DOTENV"):
        return
    for folder in dict.fromkeys([Path.cwd(), project_root()]):
        env_file = folder / ".env"
        if env_file.is_file():
            load_dotenv(env_file, override=False)


def endpoints_from_env(endpoint: str | list[str] | None = None, model: str | None = None,
                       schema_style: str | None = None) -> list[Endpoint]:
    """The endpoints to use, or [] for the embedded model. See the module docstring for the precedence."""
    load_env_file()
    env = os.environ
    model = model or env.get("OPENAI_MODEL") or env.get("KIT_MODEL") or ""
    style = schema_style or env.get("KIT_SCHEMA_STYLE") or "auto"
    urls = _split_urls(endpoint)
    if urls:
        return [Endpoint(url, model, _key_for(url), style) for url in urls]
    if env.get("OPENAI_BASE_URL"):
        return [Endpoint(url, model, _key_for(url), style) for url in _split_urls(env["OPENAI_BASE_URL"])]
    if env.get("OPENAI_API_KEY"):
        return [Endpoint(OPENAI_DEFAULT_BASE_URL, model, env["OPENAI_API_KEY"], style)]
    if env.get("OPENROUTER_API_KEY"):
        return [Endpoint(OPENROUTER_BASE_URL, model, env["OPENROUTER_API_KEY"], style)]
    return []


def _split_urls(endpoint: str | list[str] | None) -> list[str]:
    if not endpoint:
        return []
    parts = endpoint.split(",") if isinstance(endpoint, str) else endpoint
    return [p.strip() for p in parts if p and p.strip()]


def _key_for(url: str) -> str:
    """OpenRouter URLs take OPENROUTER_API_KEY when it is set; everything else OPENAI_API_KEY."""
    if "openrouter.ai" in url and os.environ.get("OPENROUTER_API_KEY"):
        return os.environ["OPENROUTER_API_KEY"]
    return os.environ.get("OPENAI_API_KEY") or NO_KEY
