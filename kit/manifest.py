"""Manifests: what a run did, in enough detail to understand and repeat it, and never a secret.

Every writer of a manifest (generation, training, the memory benchmark, the pipeline) goes
through `write_manifest`, which adds the environment and scrubs secrets (kit.secrets) as a last line of
defence.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from kit.paths import atomic_write, project_root
from kit.secrets import scrub

_TRACKED_PACKAGES = ("kit", "openai", "llama_cpp_python", "tiktoken", "rustbpe", "torch", "papermill", "numpy")


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


def package_versions(names) -> dict[str, str]:
    """The installed version of each of `names` (distribution names); one not installed is left out."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def environment_info() -> dict:
    versions = package_versions(_TRACKED_PACKAGES)
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
        # strict JSON: a NaN or infinity (a diverged loss) is written as null, which every reader accepts
        text = json.dumps(_finite(scrub(payload)), indent=2, ensure_ascii=False, default=str, allow_nan=False)
        tmp.write_text(text + "\n", encoding="utf-8")
    return Path(path)


def _finite(value):
    """`value` with every float that is not finite replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def read_manifest(path: str | os.PathLike) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))
