"""Secrets never leave the process: one scrub for everything the kit writes or prints.

A key can reach a file by routes nobody planned: a gateway that echoes the key in its error message
puts it into the reject reason, the journal, the memory dataset's problems, stderr and a pipeline's
failure message. So the kit does not trust each writer to remember; every writer (records, journal,
rejects, reply cache, memory datasets, manifests, executed notebooks, error lines) passes its text
through `scrub_text` (or `scrub` for a JSON-ready object).

What counts as a secret:
- the value of every environment variable named OPENAI_API_KEY, OPENROUTER_API_KEY or ending in
  `_API_KEY`, `_TOKEN`, `_SECRET` or `_PASSWORD`, and the same names in `.env` (cwd and project root),
  whether or not they were loaded into the environment; values shorter than 8 characters are left
  alone (they would blank out ordinary words);
- the credentials part of a URL: `https://user:pass@host/...` becomes `https://***@host/...`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

REDACTED = "<redacted>"
MIN_SECRET_LEN = 8
_SECRET_VAR = re.compile(r"(^|_)(API_KEY|TOKEN|SECRET|PASSWORD)$", re.I)
# A key is secret-looking when one of its _/- separated words is one of these ("hf_token", "api-key"),
# so "tiktoken", "tokenizer" and "prompt_tokens" stay readable.
_SECRET_KEY_NAME = re.compile(r"(^|[_-])(api[_-]?key|token|secret|password|authorization)$", re.I)
_URL_CREDENTIALS = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@:'\"]*(?::[^/\s@'\"]*)?@")
_dotenv_cache: dict[Path, tuple[float, dict[str, str]]] = {}


def is_secret_var(name: str) -> bool:
    return bool(_SECRET_VAR.search(name))


def _dotenv_values() -> dict[str, str]:
    """Secret-named values of `.env` in the working directory and the project root (cached by mtime)."""
    from dotenv import dotenv_values

    from kit.paths import project_root

    found: dict[str, str] = {}
    for folder in dict.fromkeys([Path.cwd(), project_root()]):
        path = folder / ".env"
        try:
            mtime = path.stat().st_mtime
        except OSError:
            continue
        cached = _dotenv_cache.get(path)
        if cached is None or cached[0] != mtime:
            values = {k: v for k, v in dotenv_values(path).items() if v and is_secret_var(k)}
            _dotenv_cache[path] = cached = (mtime, values)
        found.update(cached[1])
    return found


def secret_values() -> list[str]:
    """Secret values in the environment and `.env`, longest first (so a key that contains another is
    cut out whole)."""
    values = {v for k, v in os.environ.items() if is_secret_var(k) and len(v) >= MIN_SECRET_LEN}
    values |= {v for v in _dotenv_values().values() if len(v) >= MIN_SECRET_LEN}
    return sorted(values, key=len, reverse=True)


def scrub_text(text: str, secrets: list[str] | None = None) -> str:
    """`text` with every secret value and every URL's credentials replaced."""
    for secret in secret_values() if secrets is None else secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return _URL_CREDENTIALS.sub(r"\1***@", text) if "@" in text else text


def scrub_url(url: str) -> str:
    """A URL as it may be shown or written: credentials cut out, secrets in the query too."""
    return scrub_text(url)


def scrub(obj: Any, secrets: list[str] | None = None) -> Any:
    """A copy of a JSON-ready object with secret-looking keys redacted and secrets cut out of strings."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(obj, dict):
        return {
            k: (REDACTED if isinstance(k, str) and _SECRET_KEY_NAME.search(k) and v not in (None, "", 0)
                and not isinstance(v, (int, float, dict, list)) else scrub(v, secrets))
            for k, v in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return [scrub(v, secrets) for v in obj]
    if isinstance(obj, str):
        return scrub_text(obj, secrets)
    return obj
