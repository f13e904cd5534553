"""Manifests: what a run did, in enough detail to understand and repeat it, and never a secret.

Every writer of a manifest (generation, training, the memory benchmark, the pipeline) goes
through `write_manifest`, which adds the environment and scrubs secrets as a last line of defence.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from kit.paths import atomic_write, project_root

# Environment variables whose values must never be written anywhere.
SECRET_ENV_VARS = ("OPENAI_API_KEY", "OPENROUTER_API_KEY", "KIT_API_KEY", "HF_TOKEN", "ANTHROPIC_API_KEY")
# A key is secret-looking when one of its _/- separated words is one of these ("hf_token", "api-key"),
# so "tiktoken", "tokenizer" and "prompt_tokens" stay readable.
_SECRET_KEY_NAME = re.compile(r"(^|[_-])(api[_-]?key|token|secret|password|authorization)$", re.I)
_TRACKED_PACKAGES = ("kit", "openai", "llama_cpp_python", "tiktoken", "rustbpe", "torch", "papermill", "numpy")


def secret_values() -> list[str]:
    """Secret values currently in the environment (only non-trivial ones, to avoid false hits)."""
    return [v for k in SECRET_ENV_VARS if len(v := os.environ.get(k, "")) >= 8]


def scrub(obj: Any, secrets: list[str] | None = None) -> Any:
    """A copy of obj with secret-looking keys redacted and any secret value cut out of strings."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(obj, dict):
        return {
            k: ("<redacted>" if isinstance(k, str) and _SECRET_KEY_NAME.search(k) and v not in (None, "", 0)
                and not isinstance(v, (int, float, dict, list)) else scrub(v, secrets))
            for k, v in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return [scrub(v, secrets) for v in obj]
    if isinstance(obj, str):
        for s in secrets:
            obj = obj.replace(s, "<redacted>")
        return obj
    return obj


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True,
                             text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=project_root(),
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment_info() -> dict:
    versions = {}
    for name in _TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "git_commit": git_commit(),
    }


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_manifest(path: str | os.PathLike, data: dict, *, with_environment: bool = True) -> Path:
    """Write data (plus environment info) as pretty JSON, atomically, with secrets scrubbed."""
    payload = dict(data)
    if with_environment:
        payload.setdefault("environment", environment_info())
    payload.setdefault("written_at", now_iso())
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(scrub(payload), indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    return Path(path)


def read_manifest(path: str | os.PathLike) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))
