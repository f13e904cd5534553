"""Conversation records on disk: one JSON object per line.

The kit's own format is `{"id": str, "messages": [...], "meta": {...}}`. Readers also accept
nanochat's CustomJSON lines (a bare JSON array of messages) and the `{"messages", "metadata"}`
lines that nanochat's generator writes with --save-metadata. A line that cannot be read is reported
with its file and line number; nothing is skipped silently.

This module checks only that a line *is* a conversation record (JSON, the right shape). Whether
the conversation is a good one (roles, alternation, empty content) is `kit.rules`'s job.

Hostile input is a problem of its line, never a crash: `load_json` turns nesting deeper than
MAX_DEPTH (a model that loops on `[` until its token limit; `json.loads` itself would raise
RecursionError), a lone surrogate escape (`"\\ud800"`: not a character, it cannot be written back as
UTF-8) and MemoryError into a ValueError, and `iter_lines` reports a line longer than MAX_LINE_BYTES
without holding it in memory. A UTF-8 byte order mark at the start of a file is accepted and dropped
(editors on Windows write one); anywhere else it is ordinary text.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from kit.paths import atomic_write
from kit.secrets import scrub_text, secret_values

MAX_DEPTH = 64  # arrays/objects inside each other; a conversation record needs 4
MAX_LINE_BYTES = 64 * 2**20
LINE_TOO_LONG = f"line longer than {MAX_LINE_BYTES // 2**20} MiB"
BOM = b"\xef\xbb\xbf"
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


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
        if isinstance(message["content"], list):
            # every reader takes a part's text as a string (message_text joins them); a number there is
            # a problem of its line, not a TypeError in whichever command reads the file
            for j, part in enumerate(message["content"]):
                if isinstance(part, dict) and not isinstance(part.get("text", ""), str):
                    raise ValueError(f"message {i} content part {j}: 'text' is not a string "
                                     f"({json.dumps(part['text'])[:40]})")
    return record


def file_problem(path: Path) -> str | None:
    """Why `path` cannot be read as a conversation file ("... no such file", "... is a folder"), or None."""
    if path.is_dir():
        return f"{path}: is a folder; give a conversation file (.jsonl)"
    return None if path.is_file() else f"{path}: no such file"


def load_json(text: str, *, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads with limits: ValueError (never RecursionError or MemoryError) for nesting deeper than
    `max_depth`, a lone surrogate escape, or a value too large to hold."""
    deep = f"nested more than {max_depth} levels deep"
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(deep) from None
    except MemoryError:
        raise ValueError("too large to read into memory") from None
    if text.count("[") + text.count("{") > max_depth and deeper_than(value, max_depth):
        raise ValueError(deep)
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
        raise ValueError("a string holds a lone surrogate escape (\\ud800-\\udfff without its pair): not a character")
    return value


def deeper_than(value: Any, max_depth: int) -> bool:
    """Whether containers nest more than max_depth levels (a loop, not recursion: it must not overflow)."""
    stack = [(value, 1)]
    while stack:
        obj, depth = stack.pop()
        if isinstance(obj, (list, dict)):
            if depth > max_depth:
                return True
            stack.extend((v, depth + 1) for v in (obj.values() if isinstance(obj, dict) else obj))
    return False


def _has_lone_surrogate(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def iter_lines(fh) -> Iterator[tuple[int, bytes | None]]:
    """(line number from 1, raw bytes) for a binary file, a BOM at its start dropped; a line longer than
    MAX_LINE_BYTES comes as None (and is read past in pieces, never held whole)."""
    lineno = 0
    while True:
        raw = fh.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        lineno += 1
        if lineno == 1 and raw.startswith(BOM):
            raw = raw[len(BOM):]
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while (rest := fh.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                pass
            yield lineno, None
            continue
        yield lineno, raw


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
        for lineno, raw in iter_lines(fh):
            if raw is not None and not raw.strip():
                continue
            try:
                if raw is None:
                    raise ValueError(LINE_TOO_LONG)
                obj = load_json(decode_line(raw))
                yield parse_record(obj, default_id=f"{stem}:{lineno}")
            except (json.JSONDecodeError, ValueError) as exc:
                reason = f"invalid JSON: {exc.msg} (column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else str(exc)
                shown = "" if raw is None else raw[:4096].decode("utf-8", "replace").rstrip("\r\n")
                err = RecordError(path, lineno, reason, raw=shown)
                if errors is None:
                    raise err from None
                errors.append(err)


def read_records(path: str | os.PathLike, *, strict: bool = True) -> ReadResult:
    """Read a whole file. strict=True raises on the first bad line; False collects the errors."""
    errors: list[RecordError] | None = None if strict else []
    records = list(iter_records(path, errors=errors))
    return ReadResult(records, errors or [])


def dumps_record(record: dict, secrets: list[str] | None = None) -> str:
    """One line of the kit's format (no trailing newline); non-ASCII kept readable, secrets cut out
    (kit.secrets; `secrets` saves looking them up again for every line of a file)."""
    return scrub_text(json.dumps(
        {"id": record["id"], "messages": record["messages"], "meta": record.get("meta", {})},
        ensure_ascii=False,
    ), secrets)


def write_lines(path: str | os.PathLike, lines: Iterable[str]) -> int:
    """Write one line per string atomically (temp file + rename, synced to disk first): a reader never
    sees half a file. Every JSONL file the kit rewrites goes through here. Returns the line count."""
    n = 0
    with atomic_write(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for line in lines:
            fh.write(line + "\n")
            n += 1
        fh.flush()
        os.fsync(fh.fileno())
    return n


def write_records(path: str | os.PathLike, records: Iterable[dict]) -> int:
    """Write records in the kit's format, atomically; secrets cut out."""
    secrets = secret_values()
    return write_lines(path, (dumps_record(record, secrets) for record in records))


def write_jsonl(path: str | os.PathLike, objs: Iterable[Any]) -> int:
    """Write any JSON objects (journal-derived files: rejects, judge scores), atomically; secrets cut out."""
    secrets = secret_values()
    return write_lines(path, (scrub_text(json.dumps(obj, ensure_ascii=False), secrets) for obj in objs))


def to_customjson_line(record: dict, secrets: list[str] | None = None) -> str:
    """nanochat's CustomJSON line: the bare messages array (secrets cut out)."""
    return scrub_text(json.dumps(record["messages"], ensure_ascii=False), secrets)
