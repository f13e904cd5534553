"""`python -m kit judge`: score each conversation with an LLM judge, resumable (kit.quality.judge).

    python -m kit judge FILE --out SCORES [--endpoint URL --model M] [--workers W]
                        [--min-score S --filtered-out FILE] [--calibrate]

Exit codes: 0 done; 1 refused or failed (records unjudged for API errors are retried by the same
command); 2 a usage error; 130 interrupted (the same command resumes).
"""

from __future__ import annotations

import argparse

from kit import paths
from kit.arguments import finite_float
from kit.commands.llm_flags import add_llm_flags, parse_args
from kit.llm.client import FatalAPIError
from kit.locking import LockedError
from kit.quality.judge import AGREEMENT_THRESHOLD, api_failure, calibrate, calibration_path, judge
from kit.commands.exits import fail


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kit judge",
                                     description="Score each conversation with an LLM judge (resumable; see kit/quality/judge.py).")
    parser.add_argument("file", type=paths.argument, help="conversation file (.jsonl)")
    parser.add_argument("--out", required=True, type=paths.argument, help="scores file: one JSON line per record id")
    parser.add_argument("--workers", type=int, default=4, help="requests in flight at once (default 4)")
    parser.add_argument("--min-score", type=finite_float, help="with --filtered-out: keep records whose overall score reaches this")
    parser.add_argument("--filtered-out", type=paths.argument, help="file for the records that reach --min-score")
    parser.add_argument("--force", action="store_true", help="replace an existing --out or --filtered-out that "
                        "the judge did not write")
    parser.add_argument("--calibrate", action="store_true",
                        help="FILE is a labelled set (meta.label good|bad, see calibration_set): print how often the "
                             f"judge agrees with the labels and write SCORES's .calibration.json (threshold: balanced "
                             f"agreement {AGREEMENT_THRESHOLD}; `kit quality --calibration` refuses realized coverage below it)")
    add_llm_flags(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, llm = parse_args(parser, argv)
    if args.calibrate and (args.min_score is not None or args.filtered_out):
        parser.error("--calibrate judges a labelled set: --min-score/--filtered-out do not apply")

    try:  # judge holds the scores file's lock for the whole run
        if args.calibrate:
            result = calibrate(args.file, args.out, workers=args.workers, progress=not args.no_progress, **llm)
        else:
            summary = judge(args.file, args.out, workers=args.workers, min_score=args.min_score,
                            filtered_out=args.filtered_out, progress=not args.no_progress, force=args.force, **llm)
    except (ValueError, OSError, FatalAPIError, LockedError) as exc:  # RecordError is a ValueError
        return fail("judge", str(exc))
    except KeyboardInterrupt:
        return fail("judge", "interrupted; judged records are kept, run the same command again to resume", 130)

    if args.calibrate:
        print(result)
        print(f"written: {paths.display_path(calibration_path(paths.resolve(args.out)))}")
        return 0
    print(summary)
    if failure := api_failure(args.out):
        return fail("judge", failure)
    return 0
