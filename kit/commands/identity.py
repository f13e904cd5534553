"""`python -m kit identity eval|probes`: what a model says about itself (kit.training.identity).

    python -m kit identity eval [--endpoint URL --model M | --checkpoint DIR | --gguf FILE] [--out FILE]
    python -m kit identity probes

Exit codes: 0 every probe scored; 1 a probe's request failed (the score is over the answered ones) or
the evaluation failed; 2 bad input; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kit import paths
from kit.commands.llm_flags import add_llm_flags, llm_options
from kit.facts import default_data
from kit.llm.client import LLMError
from kit.llm.local_server import LocalServerError
from kit.secrets import scrub_text
from kit.training.identity import MAX_TOKENS, evaluate_identity, format_result, is_result
from kit.commands.exits import fail


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kit identity",
                                     description="identity probes: what a model says about itself")
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("eval", help="ask every probe greedily and score the answers per fact")
    source = ev.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", type=paths.argument,
                        help="a `kit finetune` output folder (or HF folder / GGUF) run in process")
    source.add_argument("--gguf", type=paths.argument,
                        help="a GGUF file (e.g. `kit finetune --gguf`'s model.gguf) served on loopback by llama.cpp")
    add_llm_flags(ev, endpoint_group=source)
    ev.add_argument("--out", type=paths.argument, help="write the result (rows and figures) to this JSON file")
    ev.add_argument("--force", action="store_true", help="replace an existing --out file that is not a result of this command")
    ev.add_argument("--json", action="store_true", help="print the result as JSON instead of tables")
    ev.add_argument("--knowledge", action="store_true",
                    help="give the model the knowledge base as its system prompt (a reference row)")
    ev.add_argument("--limit", type=int, help="ask only N probes, spread over the kinds")
    ev.add_argument("--max-tokens", type=int, default=MAX_TOKENS, help="answer length limit (default: %(default)s)")
    sub.add_parser("probes", help="list the probes and the facts each checks")
    return parser


def _probes() -> int:
    data = default_data()
    for p in data.probes:
        turns = f" (after {len(p.history) // 2} earlier exchange(s))" if p.history else ""
        print(f"{p.id:<16} {p.kind:<12} {'+'.join(p.checks):<20} {p.question}{turns}")
    print(f"{len(data.probes)} probes; facts: {', '.join(data.facts)}; "
          f"{len(data.foreign)} foreign identities ({paths.display_path(data.folder)})")
    return 0


def _input_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with eval's options, found before any model is loaded or asked, or None."""
    for flag, value in (("checkpoint", args.checkpoint), ("gguf", args.gguf)):
        if value is not None and not Path(value).exists():
            return f"{flag} not found: {value}"
    if args.limit is not None and args.limit < 1:
        return f"--limit must be at least 1, got {args.limit}"
    if args.out is not None:
        model_files = [args.gguf, args.checkpoint] + ([*Path(args.checkpoint).iterdir()]
                                                      if args.checkpoint and Path(args.checkpoint).is_dir() else [])
        return paths.output_problem(args.out, model_files, force=args.force, ours=is_result)
    return None


def main(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "probes":
        return _probes()
    llm = llm_options(parser, args)
    if args.model and (args.checkpoint or args.gguf):
        parser.error("--model goes with --endpoint, not with --checkpoint or --gguf")
    if problem := _input_problem(args):
        return fail("identity eval", problem, 2)
    try:
        result = evaluate_identity(checkpoint=args.checkpoint, gguf=args.gguf, knowledge=args.knowledge,
                                   max_tokens=args.max_tokens, out=args.out, limit=args.limit,
                                   show_progress=not args.no_progress, **llm)
    except (ValueError, OSError, LLMError, LocalServerError) as exc:
        return fail("identity eval", f"error: {exc}")
    except KeyboardInterrupt:
        return fail("identity eval", "interrupted", 130)

    # the answers and the endpoint come from a server and a command line: scrubbed like every file
    shown = json.dumps(result.as_dict(), indent=1, ensure_ascii=False) if args.json else format_result(result)
    print(scrub_text(shown))
    if args.out:
        print(f"written: {args.out}", file=sys.stderr)
    if result.not_scored:
        first = next(r for r in result.rows if r["error"])
        print(f"kit identity eval: error: {result.not_scored} of {len(result.rows)} probes were not scored: the request "
              f"failed (first, {first['probe']}: {first['error']}); the score is over the {result.scored} answered "
              f"probes only", file=sys.stderr)
        return 1
    return 0
