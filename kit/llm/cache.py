"""A content-addressed cache of LLM replies, so a repeated request is never paid for twice.

The key is the sha256 of everything that determines a reply (model, the servers, messages, sampling
parameters, schema, seed; see LLMClient.cache_key). Entries pass through kit.secrets' scrub like every
file the kit writes. Each entry is one small JSON file written to a temporary name and renamed into place,
so several processes can share the folder: a reader sees a whole entry or none, and two writers of the
same key write the same content.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from kit.paths import atomic_write
from kit.records import load_json
from kit.secrets import scrub_text


def cache_key(request: dict[str, Any]) -> str:
    canonical = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseCache:
    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        try:
            return load_json(self._path(key).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError:  # unreadable entry (disk trouble, hand edit): ask again and overwrite it
            return None

    def put(self, key: str, value: dict) -> None:
        with atomic_write(self._path(key)) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.write(scrub_text(json.dumps(value, ensure_ascii=False)))
