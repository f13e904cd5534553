"""Conversation records on disk: one JSON object per line.

The kit's own format is `{"id": str, "messages": [...], "meta": {...}}`. Readers also accept
nanochat's CustomJSON lines (a bare JSON array of messages) and the `{"messages", "metadata"}`
lines that nanochat's generator writes with --save-metadata. A line that cannot be read is reported
with its file and line number; nothing is skipped silently.

This module checks only that a line *is* a conversation record (JSON, the right shape). Whether
the conversation is a good one (roles, alternation, empty content) is `kit.validation`'s job.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from kit.paths import atomic_write


class RecordError(ValueError):
    """A line that is not a conversation record; says which file and line, and why."""

    def __init__(self, path: str | os.PathLike, lineno: int, reason: str, raw: str = ""):
        self.path, self.lineno, self.reason, self.raw = str(path), lineno, reason, raw
        super().__init__(f"{self.path}:{lineno}: {reason}")


@dataclass
class ReadResult:
    records: list[dict]
    errors: list[RecordError]


def message_text(content: Any) -> str:
    """The plain text of a message's content: a string, or the concatenated text of its parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def parse_record(obj: Any, *, default_id: str) -> dict:
    """Normalise one decoded JSON value to the kit's record format, or raise ValueError."""
    if isinstance(obj, list):
        record = {"id": default_id, "messages": obj, "meta": {"format": "customjson"}}
    elif isinstance(obj, dict):
        if "messages" not in obj:
            raise ValueError("object has no 'messages' key")
        meta = obj.get("meta", obj.get("metadata", {}))
        if not isinstance(meta, dict):
            raise ValueError("'meta' must be an object")
        record = {"id": str(obj.get("id", default_id)), "messages": obj["messages"], "meta": dict(meta)}
    else:
        raise ValueError(f"expected a JSON object or array, got {type(obj).__name__}")
    messages = record["messages"]
    if not isinstance(messages, list):
        raise ValueError("'messages' must be a list")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ValueError(f"message {i} is a {type(message).__name__}, not an object")
        if "role" not in message or "content" not in message:
            raise ValueError(f"message {i} lacks 'role' or 'content'")
    return record


def file_problem(path: Path) -> str | None:
    """Why `path` cannot be read as a conversation file ("... no such file", "... is a folder"), or None."""
    if path.is_dir():
        return f"{path}: is a folder; give a conversation file (.jsonl)"
    return None if path.is_file() else f"{path}: no such file"


def decode_line(raw: bytes) -> str:
    """One line of a file read as bytes, so that a stray non-UTF-8 byte fails only its own line."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not valid UTF-8: byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of the line") from None


def iter_records(path: str | os.PathLike, *, errors: list | None = None) -> Iterator[dict]:
    """Yield records from a JSONL file.

    With `errors=None` the first bad line raises RecordError. With a list, bad lines are appended
    to it as RecordError (raw text kept) and reading goes on, so a caller can reject and report them.
    Blank lines are allowed (trailing newline, hand-edited files).
    """
    path = Path(path)
    stem = path.stem
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(decode_line(raw))
                yield parse_record(obj, default_id=f"{stem}:{lineno}")
            except (json.JSONDecodeError, ValueError) as exc:
                reason = f"invalid JSON: {exc.msg} (column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else str(exc)
                err = RecordError(path, lineno, reason, raw=raw.decode("utf-8", "replace").rstrip("\r\n"))
                if errors is None:
                    raise err from None
                errors.append(err)


def read_records(path: str | os.PathLike, *, strict: bool = True) -> ReadResult:
    """Read a whole file. strict=True raises on the first bad line; False collects the errors."""
    errors: list[RecordError] | None = None if strict else []
    records = list(iter_records(path, errors=errors))
    return ReadResult(records, errors or [])


def dumps_record(record: dict) -> str:
    """One line of the kit's format (no trailing newline); non-ASCII kept readable."""
    return json.dumps(
        {"id": record["id"], "messages": record["messages"], "meta": record.get("meta", {})},
        ensure_ascii=False,
    )


def write_records(path: str | os.PathLike, records: Iterable[dict]) -> int:
    """Write records atomically (temp file + rename): a reader never sees half a file."""
    n = 0
    with atomic_write(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(dumps_record(record) + "\n")
            n += 1
        fh.flush()
        os.fsync(fh.fileno())
    return n


def to_customjson_line(record: dict) -> str:
    """nanochat's CustomJSON line: the bare messages array."""
    return json.dumps(record["messages"], ensure_ascii=False)
