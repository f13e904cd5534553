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

Not only a whole key is cut out: every run of text made of pieces of a key, 8 characters or longer, in
any case, is. A server that echoes the Authorization header hands the key to code that splits text
into words ("Bearer, sk, test, CANARY123"), lowercases it or quotes a part of it, and each such piece
is as good as the key to a reader who knows its prefix.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
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


@lru_cache(maxsize=256)
def _pieces(secret: str) -> tuple[tuple[str, ...], re.Pattern]:
    """What finds `secret`'s pieces: its aligned 4-character blocks (lowercased), one of which every
    piece of MIN_SECRET_LEN characters holds, so that text holding none costs a few substring searches;
    and a pattern matching, at each position, a window of MIN_SECRET_LEN characters of the secret (a
    longer piece is a chain of overlapping windows)."""
    blocks = tuple(secret[i:i + 4].lower() for i in range(0, len(secret) - 3, 4))
    windows = {secret[i:i + MIN_SECRET_LEN] for i in range(len(secret) - MIN_SECRET_LEN + 1)}
    return blocks, re.compile(f"(?=({'|'.join(re.escape(w) for w in sorted(windows))}))", re.I)


def _cut(text: str, lowered: str, secret: str) -> str:
    """`text` (`lowered` is its lowercase) with every piece of `secret` replaced."""
    blocks, pattern = _pieces(secret)
    if not any(block in lowered for block in blocks):
        return text
    spans: list[list[int]] = []
    for match in pattern.finditer(text):
        start, end = match.start(), match.end(1)
        if spans and start <= spans[-1][1]:
            spans[-1][1] = end
        else:
            spans.append([start, end])
    kept, last = [], 0
    for start, end in spans:
        kept += [text[last:start], REDACTED]
        last = end
    return "".join(kept) + text[last:]


def scrub_text(text: str, secrets: list[str] | None = None) -> str:
    """`text` with every secret value, every piece of one of MIN_SECRET_LEN characters or more (in any
    case), and every URL's credentials replaced."""
    secrets = secret_values() if secrets is None else secrets
    lowered = text.lower() if secrets else text
    for secret in secrets:
        if (cut := _cut(text, lowered, secret)) is not text:
            text, lowered = cut, cut.lower()
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
