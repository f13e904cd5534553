"""Every problem of a conversation file, as `file:line: message[i]: reason` (`python -m kit validate FILE`,
kit.commands.validate).

The rules themselves live in `kit.rules` (below every stage, since the generator, export and the token
views apply them too); this module reads a whole JSONL file in any record format `kit.records` reads,
one conversation per line, and makes a line that is not one (bad JSON, bad UTF-8, absurdly long) a
problem of that line. With `--knowledge FILE` every assistant sentence is also checked against that
knowledge base (kit.truth): each one that is not kept is a problem named by its verdict
(`message[1]: unsupported: "It is only able to work with integers.", ...`).
"""

from __future__ import annotations

import json
from pathlib import Path

from kit.records import LINE_TOO_LONG, decode_line, iter_lines, load_json
from kit.rules import Problem, Rules, validate_messages
from kit.truth import truth_problems


def _line_problems(line: str, rules: Rules | None = None, knowledge: str | None = None) -> list[Problem]:
    """Problems of one JSONL line in any of the record formats kit.records reads; with `knowledge` (a
    knowledge base's text) also every assistant sentence it does not support."""
    try:
        obj = load_json(line)  # bounded: a 5,000-deep `meta` is a problem of its line, not a RecursionError
    except json.JSONDecodeError as exc:
        return [Problem(None, "json", f"invalid JSON: {exc.msg} (column {exc.colno})")]
    except ValueError as exc:
        return [Problem(None, "json", str(exc))]
    if isinstance(obj, list):
        messages, problems = obj, validate_messages(obj, rules=rules)
    elif isinstance(obj, dict) and "messages" in obj:
        meta = obj.get("meta", obj.get("metadata"))
        finish = meta.get("finish_reason") if isinstance(meta, dict) else None
        messages = obj["messages"]
        problems = validate_messages(messages, finish_reason=finish, rules=rules, meta=meta)
    else:
        return [Problem(None, "shape", "expected a record object with 'messages' or a bare array of messages")]
    if knowledge is not None:
        problems += truth_problems(messages, knowledge=knowledge)
        problems.sort(key=lambda p: (-1 if p.index is None else p.index))
    return problems


def validate_file(path: str | Path, rules: Rules | None = None,
                  knowledge: str | None = None) -> tuple[int, list[tuple[int, Problem]]]:
    """(number of non-blank lines, [(line number, problem), ...]) for a JSONL file: each line should be
    one conversation, and one that is not is a problem of its line. `rules`: also the content rules;
    `knowledge` (a knowledge base's text): also the truth check of every assistant sentence."""
    n, found = 0, []
    with open(path, "rb") as fh:
        for lineno, raw in iter_lines(fh):  # a BOM at the start dropped, absurd lines reported
            if raw is None:
                n += 1
                found.append((lineno, Problem(None, "json", LINE_TOO_LONG)))
                continue
            if not raw.strip():
                continue
            n += 1
            try:
                line = decode_line(raw)
            except ValueError as exc:
                found.append((lineno, Problem(None, "utf8", str(exc))))
                continue
            found += [(lineno, p) for p in _line_problems(line, rules, knowledge)]
    return n, found

