"""A content-addressed cache of LLM replies, so a repeated request is never paid for twice.

The key is the sha256 of everything that determines a reply (model, the servers, messages, sampling
parameters, schema, seed; see LLMClient.cache_key). Entries pass through kit.secrets' scrub like every
file the kit writes (the secrets looked up once per cache: a look-up costs 100 us). Each entry is one small
JSON file written to a temporary name and renamed into place, so several processes can share the folder:
a reader sees a whole entry or none, and two writers of the same key write the same content.

Entries are written by a thread of the cache's own, and not fsynced: creating a file costs ~0.3 ms
and an fsync ~3 ms, which in the event loop were the largest costs of a generation run. The cache only
saves money; what a run has finished is its journal's to keep. An entry waiting for the thread is served
from memory (`get` sees every `put`), and `flush()` waits for the thread (LLMClient's close calls it).
An entry the thread had not written when the process was killed is missing, and after a power cut one
may be empty or cut short; each of those, and an entry edited into something else (a number for its
text), reads as a miss, so the request is asked again.

A write that fails (a full disk, a folder turned read-only) is no reason to stop a run and lose the
replies in flight, paid for already: the cache says so once on stderr, naming its folder and the error,
and caches nothing more in this process (`write_error` keeps the error). Reading goes on.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kit.paths import display_path
from kit.records import load_json
from kit.secrets import scrub_text, secret_values


def cache_key(request: dict[str, Any]) -> str:
    canonical = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _whole(entry: Any) -> bool:
    """Whether an entry holds a reply's fields (kit.llm.reply.Completion's), each of its type: an edit by
    hand or another program may have put a number in its text or "many" in its token counts."""
    return (isinstance(entry, dict) and isinstance(entry.get("text"), str)
            and isinstance(entry.get("finish_reason"), (str, type(None)))
            and isinstance(entry.get("model"), str) and isinstance(entry.get("endpoint"), str)
            and all(type(entry.get(n)) is int and entry[n] >= 0 for n in ("prompt_tokens", "completion_tokens")))


class ResponseCache:
    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self._root = os.fspath(self.folder)
        self._secrets = secret_values()
        self._lock = threading.Lock()
        self._pending: dict[str, str] = {}  # key -> entry text the writer has not written yet
        self._writer: ThreadPoolExecutor | None = None
        self.write_error: Exception | None = None  # the first failed write; none is tried after it

    def _path(self, key: str) -> str:
        return f"{self._root}/{key[:2]}/{key}.json"  # a plain string: a miss costs one failed open

    def get(self, key: str) -> dict | None:
        """The entry under `key`, or None when there is none or it is not whole (`_whole`)."""
        with self._lock:
            text = self._pending.get(key)
        try:
            if text is None:
                with open(self._path(key), encoding="utf-8") as fh:
                    text = fh.read()
            entry = load_json(text)
        except FileNotFoundError:
            return None
        except (ValueError, OSError):  # unreadable entry (disk trouble, hand edit): ask again and overwrite it
            return None
        return entry if _whole(entry) else None

    def put(self, key: str, value: dict) -> None:
        """Queue an entry for the writer thread (nothing, once a write has failed)."""
        if self.write_error is not None:
            return
        text = scrub_text(json.dumps(value, ensure_ascii=False), self._secrets)
        with self._lock:
            self._pending[key] = text
            if self._writer is None:
                self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reply-cache")
        self._writer.submit(self._write, key, text)

    def flush(self) -> None:
        """Wait until every entry put so far is written (or has failed)."""
        if self._writer is not None:
            self._writer.submit(lambda: None).result()  # one thread, in order: after every earlier write

    def _write(self, key: str, text: str) -> None:
        """In the writer thread: a temporary file renamed into place (kit.paths.atomic_write without its
        fsyncs), so a reader in another process sees a whole entry or none."""
        path = self._path(key)
        tmp = f"{os.path.dirname(path)}/.{key}.json.{uuid.uuid4().hex[:12]}.tmp"
        try:
            if self.write_error is None:
                try:
                    f = open(tmp, "w", encoding="utf-8")
                except FileNotFoundError:  # the entry's subfolder is not there yet (the usual case has it)
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    f = open(tmp, "w", encoding="utf-8")
                with f:
                    f.write(text)
                os.replace(tmp, path)
        except (OSError, ValueError) as exc:  # a full disk: no temporary file left, one warning, no more writes
            try:
                os.unlink(tmp)
            except OSError:
                pass
            self._failed(exc)
        finally:
            with self._lock:
                if self._pending.get(key) is text:
                    del self._pending[key]

    def _failed(self, exc: Exception) -> None:
        if self.write_error is not None:
            return
        self.write_error = exc
        why = f"[Errno {exc.errno}] {exc.strerror}" if isinstance(exc, OSError) and exc.errno else str(exc)
        print(scrub_text(f"kit: cannot write the reply cache in {display_path(self.folder)} ({why}); "
                         f"the run goes on without caching further replies", self._secrets),
              file=sys.stderr, flush=True)
