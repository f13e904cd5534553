"""`python -m kit quality FILE`: the report of a conversation file beside the reference data, as a table or
as JSON with --json (kit.quality.report).

Exit codes: 0 reported; 1 reported, but some lines could not be read (each is named); 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kit.arguments import finite_float
from kit.paths import argument, output_problem
from kit.quality.neardup import lsh_index
from kit.quality.report import comparison, default_reference, file_report, format_comparison, format_report, load_targets
from kit.records import file_problem
from kit.rules import load_rules
from kit.tokens.tokenizer import Tokenizer
from kit.commands.exits import fail


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kit quality", description="Is the data as diverse as we asked "
                                     "for, and what did each trainable token cost?")
    parser.add_argument("file", type=argument, help="conversation file (.jsonl)")
    parser.add_argument("--reference", type=argument, help="file to compare with, figure by figure "
                        "(default knowledge/reference/identity.jsonl, the hand-written yardstick)")
    parser.add_argument("--scores", type=argument, help="the judge's scores for FILE (python -m kit judge): score "
                        "distribution and realized coverage")
    parser.add_argument("--rules", type=argument, help="content-rule settings (default knowledge/quality_rules.yaml)")
    parser.add_argument("--tokenizer", type=argument,
                        help="tokenizer directory, for supervised-token counts and cost per token")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--calibration", type=argument, help="the judge's calibration (`kit judge --calibrate` writes "
                        "SCORES.calibration.json): realized coverage is refused below its agreement threshold")
    parser.add_argument("--threshold", type=finite_float, default=0.8, help="Jaccard threshold for near-duplicates (default 0.8)")
    parser.add_argument("--num-perm", type=int, default=128, help="MinHash permutations (default 128)")
    parser.add_argument("--identity-name", default="nanochat", help="the name assistant turns should use")
    parser.add_argument("--targets", help="recipe name, or a JSON/YAML file {dimension: {element: share}}")
    parser.add_argument("--dedup-out", type=argument, help="write the records with near-duplicates removed to this file")
    parser.add_argument("--force", action="store_true", help="replace an existing --dedup-out file")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.dedup_out and (problem := output_problem(args.dedup_out, [args.file, args.reference, args.scores, args.rules],
                                                     force=args.force, option="--dedup-out")):
        return fail("quality", problem, 2)
    for given in (args.file, args.reference, args.scores):
        if given and (problem := file_problem(Path(given))):
            return fail("quality", problem, 2)
    if not 0 < args.threshold <= 1:
        return fail("quality", f"--threshold must be in (0, 1], got {args.threshold}", 2)
    try:
        lsh_index(args.threshold, args.num_perm)
    except ValueError as exc:
        return fail("quality", f"--num-perm: {exc}", 2)
    tokenizer = targets = scores = calibration = None
    try:
        if args.tokenizer:
            tokenizer = Tokenizer.load(args.tokenizer)
        if args.targets:
            targets = load_targets(args.targets)
        if args.scores:
            from kit.quality.judge import load_scores

            scores = load_scores(args.scores)
        if args.calibration:
            calibration = json.loads(Path(args.calibration).read_text(encoding="utf-8"))
        rules = load_rules(args.rules)
    except Exception as exc:  # user input (a path, a recipe name, a settings file): one line, no traceback
        return fail("quality", str(exc), 2)
    reference = Path(args.reference) if args.reference else default_reference()
    if reference is not None and reference.resolve() == Path(args.file).resolve():
        reference = None  # the reference itself: nothing to compare with
    common = dict(tokenizer=tokenizer, threshold=args.threshold, num_perm=args.num_perm,
                  identity_name=args.identity_name, rules=rules)
    try:
        report, _ = file_report(args.file, targets=targets, scores=scores, calibration=calibration,
                                dedup_out=args.dedup_out, **common)
        if reference is not None:
            report["reference"], _ = file_report(reference, **common)
            report["comparison"] = comparison(report, report["reference"])
    except (OSError, UnicodeDecodeError) as exc:  # unreadable file or unwritable --dedup-out
        return fail("quality", str(exc), 2)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        if reference is not None:
            print(f"{args.file} beside the reference {reference}\n")
            print(format_comparison(report["comparison"], (Path(args.file).name, reference.name)) + "\n")
        print(format_report(report))
        if args.dedup_out:
            print(f"\nwrote {report['dedup_out']['kept']} records to {args.dedup_out} ({report['dedup_out']['removed']} near-duplicates removed)")
    read_errors = report["read_errors"] + report.get("reference", {}).get("read_errors", [])
    for e in read_errors:
        print(f"{e['file']}:{e['line']}: {e['reason']}", file=sys.stderr)
    return 1 if read_errors else 0
