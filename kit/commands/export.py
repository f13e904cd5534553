"""`python -m kit export`: a conversation file as nanochat CustomJSON lines or parquet (kit.generation.export).

    python -m kit export runs/x/data/conversations.jsonl --format customjson --output identity_conversations.jsonl

Exit codes: 0 written; 1 unreadable lines, invalid conversations (without --skip-invalid) or a failed
write, and nothing written; 2 a refused output or a missing input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kit.generation.export import FORMATS, invalid_problems, to_customjson, to_parquet
from kit.paths import argument, display_path, output_problem
from kit.records import file_problem, read_records
from kit.commands.exits import fail


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kit export",
                                     description="Convert a conversation file to CustomJSON lines or parquet.")
    parser.add_argument("input", type=argument, help="conversation file (JSONL in any format kit.records reads)")
    parser.add_argument("--format", choices=FORMATS, required=True)
    parser.add_argument("--output", required=True, type=argument, help="file to write")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="leave out conversations `kit validate` calls errors (counted) instead of refusing")
    parser.add_argument("--force", action="store_true", help="replace an existing --output file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    source = Path(args.input)
    for problem in (output_problem(args.output, [source], force=args.force, option="--output"), file_problem(source)):
        if problem:
            return fail("export", problem, 2)

    result = read_records(source, strict=False)
    if result.errors:
        for err in result.errors:
            print(f"kit export: {err}", file=sys.stderr)
        return fail("export", f"{len(result.errors)} unreadable lines; nothing written")
    invalid = [(record, problems) for record in result.records
               if (problems := invalid_problems(record, text_only=args.format == "parquet"))]
    if invalid and not args.skip_invalid:
        for record, problems in invalid:
            print(f"kit export: {source}: record {record['id']}: {problems[0]}"
                  + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""), file=sys.stderr)
        print(f"kit export: {len(invalid)} invalid conversations (see `python -m kit validate {source}`); "
              f"nothing written; --skip-invalid leaves them out", file=sys.stderr)
        return 1
    skipped = {id(record) for record, _ in invalid}
    records = [r for r in result.records if id(r) not in skipped]

    writer = to_customjson if args.format == "customjson" else to_parquet
    try:
        n = writer(records, args.output)
    except (OSError, ValueError) as exc:
        return fail("export", str(exc))
    print(f"wrote {n} conversations to {display_path(args.output)} ({args.format})"
          + (f"; left out {len(invalid)} invalid ones (--skip-invalid)" if invalid else ""))
    return 0
