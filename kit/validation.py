"""Is a conversation fit to train on? Every problem, with the message it is in, never an exception.

The generator uses this to decide between keeping an item, re-asking, and rejecting it; the CLI
(`python -m kit validate FILE`) lists every problem of a whole file as `file:line: message[i]: reason`
and exits 1 if any is an error. Checking never stops at the first problem and never raises, whatever
it is given (a model's reply is untrusted data: a string, a number, a dict with no roles...).

Rules (severity error unless noted):
  shape            messages is a list of objects with "role" and "content"
  min_messages     at least two messages
  role             roles are user/assistant only; a system message is allowed first
  starts_with_user the first message after an optional system message is the user's
  alternation      no two user or two assistant messages in a row
  ends_with_assistant  the last message is the assistant's (the thing being taught)
  content          non-empty text; parts ({"type", "text"}) only in assistant messages; an assistant
                   message has at least one letter or digit (small models emit JSON debris like "}, {")
  finish_reason    the reply was not cut off by the token limit ("length")
  ascii            plain ASCII text (warning; the generation prompt asks for it)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from kit.records import decode_line, file_problem

ROLES = ("user", "assistant")
PART_TYPES = ("text", "python", "python_output")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


@dataclass(frozen=True)
class Problem:
    index: int | None  # message index, None for the conversation as a whole
    rule: str
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = f"message[{self.index}]: " if self.index is not None else ""
        tag = " (warning)" if self.severity == "warning" else ""
        return f"{where}{self.message}{tag}"


def _content_problem(content: Any, role: Any) -> str | None:
    """Why this content is not usable text, or None if it is."""
    if isinstance(content, str):
        if not content.strip():
            return "content is empty"
        return _wordless(content) if role == "assistant" else None
    if isinstance(content, list):
        if role != "assistant":
            return f"content parts are only allowed in assistant messages, not {role!r}"
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") not in PART_TYPES or not isinstance(part.get("text"), str):
                return f"content part {j} is not {{'type': one of {'/'.join(PART_TYPES)}, 'text': str}}"
        if not any(part["text"].strip() for part in content):
            return "content parts hold no text"
        return _wordless("".join(part["text"] for part in content))
    return f"content is a {type(content).__name__}, not a string"


def _wordless(text: str) -> str | None:
    if any(ch.isalnum() for ch in text):
        return None
    return f"assistant content has no letter or digit: {text.strip()[:40]!r}"


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _ascii_problem(i: int, content: Any) -> Problem | None:
    match = _NON_ASCII.search(_text(content))
    if match is None:
        return None
    ch = match.group()
    return Problem(i, "ascii", f"non-ASCII character {ch!r} (U+{ord(ch):04X}) at position {match.start()}", "warning")


def validate_messages(messages: Any, finish_reason: Any = None, ascii_rule: bool = True) -> list[Problem]:
    """All problems of one conversation; an empty list means it is fit to train on."""
    problems: list[Problem] = []
    if finish_reason == "length":
        problems.append(Problem(None, "finish_reason", "reply was cut off at the token limit (finish_reason=length)"))
    if not isinstance(messages, list):
        problems.append(Problem(None, "shape", f"messages is a {type(messages).__name__}, not a list"))
        return problems
    if len(messages) < 2:
        problems.append(Problem(None, "min_messages", f"needs at least 2 messages, has {len(messages)}"))

    turns: list[tuple[int, str]] = []  # (index, role) of well-formed user/assistant messages
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            problems.append(Problem(i, "shape", f"is a {type(message).__name__}, not an object"))
            continue
        missing = [k for k in ("role", "content") if k not in message]
        if missing:
            problems.append(Problem(i, "shape", f"lacks {' and '.join(repr(k) for k in missing)}"))
        role = message.get("role")
        if "role" in message:
            if role == "system":
                if i != 0:
                    problems.append(Problem(i, "role", "a system message is only allowed first"))
            elif role in ROLES:
                turns.append((i, role))
            else:
                problems.append(Problem(i, "role", f"role {role!r} is not user or assistant"))
        if "content" in message:
            reason = _content_problem(message["content"], role)
            if reason:
                problems.append(Problem(i, "content", reason))
            elif ascii_rule and (p := _ascii_problem(i, message["content"])):
                problems.append(p)

    if turns:
        first_i, first_role = turns[0]
        if first_role != "user":
            problems.append(Problem(first_i, "starts_with_user", f"the conversation starts with {first_role}, not user"))
        for (_, prev), (i, role) in zip(turns, turns[1:]):
            if role == prev:
                problems.append(Problem(i, "alternation", f"two {role} messages in a row"))
    last = messages[-1] if messages else None
    if isinstance(last, dict) and last.get("role") in ROLES + ("system",) and last.get("role") != "assistant":
        problems.append(Problem(len(messages) - 1, "ends_with_assistant",
                                f"the conversation ends with {last.get('role')}, not assistant"))
    problems.sort(key=lambda p: (-1 if p.index is None else p.index))
    return problems


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


def _line_problems(line: str) -> list[Problem]:
    """Problems of one JSONL line in any of the record formats kit.records reads."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        return [Problem(None, "json", f"invalid JSON: {exc.msg} (column {exc.colno})")]
    if isinstance(obj, list):
        return validate_messages(obj)
    if isinstance(obj, dict) and "messages" in obj:
        meta = obj.get("meta", obj.get("metadata"))
        finish = meta.get("finish_reason") if isinstance(meta, dict) else None
        return validate_messages(obj["messages"], finish_reason=finish)
    return [Problem(None, "shape", "expected a record object with 'messages' or a bare array of messages")]


def validate_file(path: str | Path) -> tuple[int, list[tuple[int, Problem]]]:
    """(number of non-blank lines, [(line number, problem), ...]) for a JSONL file: each line should be
    one conversation, and one that is not is a problem of its line."""
    n, found = 0, []
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            n += 1
            try:
                line = decode_line(raw)
            except ValueError as exc:
                found.append((lineno, Problem(None, "utf8", str(exc))))
                continue
            found += [(lineno, p) for p in _line_problems(line)]
    return n, found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kit validate",
                                     description="List every problem in a conversation file (JSONL).")
    parser.add_argument("file", help="conversation file: kit records, CustomJSON lines or {messages, metadata} lines")
    parser.add_argument("--no-ascii", action="store_true", help="do not warn about non-ASCII text")
    args = parser.parse_args(argv)
    path = Path(args.file)
    if problem := file_problem(path):
        print(f"kit validate: {problem}", file=sys.stderr)
        return 2
    n, found = validate_file(path)
    if args.no_ascii:
        found = [(ln, p) for ln, p in found if p.rule != "ascii"]
    for lineno, problem in found:
        print(f"{path}:{lineno}: {problem}")
    n_err = sum(p.severity == "error" for _, p in found)
    bad_lines = len({ln for ln, p in found if p.severity == "error"})
    print(f"{path}: {n} lines, {bad_lines} with errors, {n_err} errors, {len(found) - n_err} warnings",
          file=sys.stderr)
    return 1 if n_err else 0
