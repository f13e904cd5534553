"""`python -m kit generate`: identity conversations in bulk, resumable (kit.generation.generate).

    python -m kit generate --num 100 --workers 8 --output runs/x/data/conversations.jsonl

Exit codes: 0 done; 1 refused or failed (a message says why; items that failed with API errors are
retried by the same command); 2 a usage error; 130 interrupted (the same command resumes).
"""

from __future__ import annotations

import argparse
import sys

from kit import paths
from kit.arguments import finite_float
from kit.commands.llm_flags import add_llm_flags, parse_args
from kit.generation.distill import DEFAULT_CANDIDATES, DEFAULT_TURN_TOKENS, OPENERS
from kit.generation.generate import DEFAULT_MAX_TOKENS, DEFAULT_OUTPUT, generate
from kit.generation.sampling import RECIPES
from kit.llm.client import FatalAPIError
from kit.locking import LockedError
from kit.commands.exits import fail


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kit generate",
                                     description="Generate identity conversations in bulk (resumable; see kit/generation/generate.py).")
    parser.add_argument("--num", type=int, required=True, help="conversations to ask for")
    parser.add_argument("--workers", type=int, default=8, help="requests in flight at once (default 8)")
    parser.add_argument("--output", type=paths.argument, default=str(paths.resolve(DEFAULT_OUTPUT)),
                        help=f"JSONL output, taken from the working directory (default {DEFAULT_OUTPUT} in the project)")
    parser.add_argument("--append", action="store_true", help="add --num new indices after the existing ones")
    parser.add_argument("--fresh", action="store_true",
                        help="delete earlier output, journal and rejects first (only files this command wrote)")
    parser.add_argument("--force", action="store_true",
                        help="replace files beside the output that this command did not write for it (with --fresh: "
                             "delete them)")
    parser.add_argument("--save-metadata", action=argparse.BooleanOptionalAction, default=True,
                        help="keep sampled elements, model, usage in each record's meta (default on)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recipe", choices=RECIPES, default="v2",
                        help="v2: the model writes whole conversations (capable models); distill: the kit plans "
                             "them and the model answers one verified turn at a time (small models)")
    parser.add_argument("--candidates", type=int, default=DEFAULT_CANDIDATES,
                        help=f"distill: answers sampled per turn, the best passing one kept (default {DEFAULT_CANDIDATES})")
    parser.add_argument("--opener", choices=OPENERS, default="planned",
                        help="distill: 'planned' opens each answer with a sentence stating its fact, which the "
                             "model continues (needs a server that continues a final assistant message: the "
                             "embedded one, llama.cpp, vLLM); 'sampled' leaves the whole answer to the model")
    parser.add_argument("--reasks", type=int, default=1, help="times a failing item is asked again (default 1)")
    parser.add_argument("--temperature", type=finite_float, help="sampling temperature (default 1.0; distill 0.8)")
    parser.add_argument("--max-tokens", type=int,
                        help=f"tokens per reply (default {DEFAULT_MAX_TOKENS}; distill {DEFAULT_TURN_TOKENS} per answer)")
    parser.add_argument("--price-in", type=finite_float, help="dollars per million prompt tokens")
    parser.add_argument("--price-out", type=finite_float, help="dollars per million completion tokens")
    add_llm_flags(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, llm = parse_args(parser, argv)
    for name, least in (("num", 1), ("workers", 1), ("reasks", 0), ("max_tokens", 1), ("temperature", 0),
                        ("candidates", 1)):
        if getattr(args, name) is not None and getattr(args, name) < least:
            parser.error(f"--{name.replace('_', '-')} must be >= {least}, got {getattr(args, name)}")
    if (args.price_in is None) != (args.price_out is None):
        parser.error("give both --price-in and --price-out, or neither")
    prices = (args.price_in, args.price_out) if args.price_in is not None else None

    try:  # generate holds the output's lock for the whole run
        summary = generate(args.num, args.output, workers=args.workers, seed=args.seed, recipe=args.recipe,
                           append=args.append, fresh=args.fresh, save_metadata=args.save_metadata,
                           reasks=args.reasks, temperature=args.temperature, max_tokens=args.max_tokens,
                           prices=prices, progress=not args.no_progress, candidates=args.candidates,
                           opener=args.opener, force=args.force, **llm)
    except (ValueError, OSError, FatalAPIError, LockedError) as exc:  # OSError: a full disk, names the file
        return fail("generate", str(exc))
    except KeyboardInterrupt:
        print("kit generate: interrupted; finished items are kept, run the same command again to resume",
              file=sys.stderr)
        return 130

    print(summary)
    if note := summary.cache_note():
        print(note)
    if failure := summary.api_failure():
        return fail("generate", failure)
    return 0
