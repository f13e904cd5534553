"""`python -m kit validate FILE`: every problem of a conversation file, as `file:line: message[i]: reason`
(kit.quality.validation).

Exit codes: 0 no errors (warnings may be printed); 1 an error in some line; 2 a missing file or bad settings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kit import paths
from kit.quality.validation import validate_file
from kit.records import file_problem
from kit.rules import RULES_FILE, load_rules
from kit.truth import load_knowledge
from kit.commands.exits import fail


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kit validate",
                                     description="List every problem in a conversation file (JSONL).")
    parser.add_argument("file", help="conversation file: kit records, CustomJSON lines or {messages, metadata} lines")
    parser.add_argument("--no-ascii", action="store_true", help="do not warn about non-ASCII text")
    parser.add_argument("--rules", help=f"content-rule settings (default knowledge/{RULES_FILE})")
    parser.add_argument("--structure-only", action="store_true",
                        help="check only the structure (what training's readers require), not the content rules")
    parser.add_argument("--knowledge", type=paths.argument,
                        help="a knowledge base (e.g. knowledge/self_knowledge.md): also report every assistant "
                             "sentence it does not support (kit.truth)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    path = Path(args.file)
    if problem := file_problem(path):
        return fail("validate", problem, 2)
    try:
        rules = None if args.structure_only else load_rules(args.rules)
        knowledge = None if args.knowledge is None else load_knowledge(args.knowledge)
    except (OSError, ValueError) as exc:
        return fail("validate", str(exc), 2)

    n, found = validate_file(path, rules, knowledge)
    if args.no_ascii:
        found = [(ln, p) for ln, p in found if p.rule != "ascii"]
    for lineno, problem in found:
        print(f"{path}:{lineno}: {problem}")
    n_err = sum(p.severity == "error" for _, p in found)
    bad_lines = len({ln for ln, p in found if p.severity == "error"})
    print(f"{path}: {n} lines, {bad_lines} with errors, {n_err} errors, {len(found) - n_err} warnings",
          file=sys.stderr)
    return 1 if n_err else 0
