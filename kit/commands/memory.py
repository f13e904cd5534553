"""`python -m kit memory generate|eval`: the memory benchmark from the command line (kit.memory).

    python -m kit memory generate --out processed_synth.json [--fast] [--num_sessions 30 ...] [--force]
    python -m kit memory eval processed_synth.json [--out eval.json] [--endpoint URL --model NAME]
        [--context full|last|bm25:K|recent:K] [--timeout S] [--item-timeout S] [--no-cache] [--force]

Flags keep the seed's names (`--num_sessions`; `--num-sessions` works too). `--fast` is the seed's
quick preset (3 sessions, 10 questions, 5-10 turns, 1-3 scenes); flags given explicitly override it.
An output is checked before anything is read or asked (kit.paths.check_output): eval's `--out` onto its
dataset is refused whatever `--force` says; an existing file that is not this command's output is
replaced only with `--force`. Exit codes: 0 done; 1 failed; 2 bad input; 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from kit import paths
from kit.commands.llm_flags import add_llm_flags, parse_args
from kit.llm.client import LLMError
from kit.llm.local_server import LocalServerError
from kit.locking import LockedError
from kit.memory.dataset import FAST, RECIPES, DatasetError, MemoryConfig, cache_note, generate, is_dataset, summary_lines
from kit.secrets import scrub_text
from kit.commands.exits import fail

_CONFIG_HELP = {
    "num_sessions": "sessions (dated chats) per record", "num_questions": "questions per record",
    "min_turns": "fewest messages per session", "max_turns": "most messages per session",
    "min_scenes": "fewest (scene, sub-scene) pairs per session", "max_scenes": "most pairs per session",
    "num_records": "records (datasets) to generate, concurrently",
    "llm_concurrency": "requests in flight at once", "seed": "seed of every random choice",
    "max_attempts": "candidates per model-written turn (turns) or requests per session (one-call)",
}


def _flag(parser: argparse.ArgumentParser, name: str, **kw) -> None:
    dashed = name.replace("_", "-")
    parser.add_argument(f"--{name}", *([f"--{dashed}"] if dashed != name else []), dest=name, **kw)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kit memory", description="the expense-tracking memory benchmark")
    sub = parser.add_subparsers(dest="command", required=True)
    force = {"action": "store_true", "help": "replace an existing output that is not this command's (never the input)"}

    gen = sub.add_parser("generate", help="generate benchmark records with an LLM")
    gen.add_argument("--out", type=paths.argument, default="processed_synth.json",
                     help="output JSON file (default: %(default)s)")
    defaults = MemoryConfig()
    for f in fields(MemoryConfig):
        if f.name not in ("no_diversify", "recipe"):
            _flag(gen, f.name, type=int, default=None,
                  help=f"{_CONFIG_HELP[f.name]} (default: {getattr(defaults, f.name)}"
                       + (f", --fast: {FAST[f.name]})" if f.name in FAST else ")"))
    gen.add_argument("--recipe", choices=RECIPES, default=None,
                     help="turns: one turn per request (small models); one-call: a whole session per reply (large "
                          "models); auto (default): turns for the embedded model, one-call for an endpoint")
    _flag(gen, "no_diversify", action="store_true", default=None, help="keep templated questions (no rephrasing)")
    gen.add_argument("--fast", action="store_true", help="quick preset: 3 sessions, 10 questions, 5-10 turns, 1-3 scenes")
    gen.add_argument("--force", **force)
    add_llm_flags(gen)

    ev = sub.add_parser("eval", help="score a model on a benchmark file")
    ev.add_argument("dataset", type=paths.argument, help="a file written by `memory generate`")
    ev.add_argument("--out", type=paths.argument, help="result JSON (default: eval.json beside the dataset)")
    _flag(ev, "context_tokens", type=int, default=None,
          help="prompt budget in tokens (default: the embedded server's window, unbounded elsewhere; 0: unbounded)")
    _flag(ev, "llm_concurrency", type=int, default=8, help="requests in flight at once (default: %(default)s)")
    ev.add_argument("--context", default="full",
                    help="what a question is asked with: full (sessions 0..position, cut to fit), last (its "
                         "position's session), bm25:K or recent:K (a retriever's top K sessions); default: full")
    ev.add_argument("--force", **force)
    add_llm_flags(ev)
    return parser


def _generate(args: argparse.Namespace, llm: dict) -> int:
    base = {**FAST} if args.fast else {}  # the preset, overridden by every flag given explicitly
    given = {f.name: getattr(args, f.name) for f in fields(MemoryConfig) if getattr(args, f.name) is not None}
    config = MemoryConfig(**{**base, **given})
    config.check()
    paths.check_output(args.out, force=args.force, ours=is_dataset)
    records = generate(config, args.out, show_progress=not args.no_progress, **llm)
    for i, record in enumerate(records):
        print("\n".join(summary_lines(record, i, len(records))))
    if note := cache_note(records):
        print(note)
    print(f"\n✅ Dataset written to: {args.out}")
    return 0


def _eval(args: argparse.Namespace, llm: dict) -> int:
    from kit.memory.evaluate import accuracy_table, evaluate, is_evaluation, parse_context

    problem = None
    if args.context_tokens is not None and args.context_tokens < 0:
        problem = f"--context_tokens must be 0 (unbounded) or more, got {args.context_tokens}"
    elif args.llm_concurrency < 1:
        problem = f"--llm_concurrency must be at least 1, got {args.llm_concurrency}"
    else:
        try:
            parse_context(args.context)
        except ValueError as exc:
            problem = f"--context: {exc}"
    if problem:
        return fail("memory eval", f"error: {problem}", 2)
    out = args.out or args.dataset.with_name("eval.json")
    paths.check_output(out, [args.dataset], force=args.force, ours=is_evaluation)
    context = "auto" if args.context_tokens is None else (args.context_tokens or None)
    result = evaluate(args.dataset, out=out, context_tokens=context, concurrency=args.llm_concurrency,
                      show_progress=not args.no_progress, context=args.context, **llm)
    print(accuracy_table(result))
    print(f"\n{result['questions_with_context_cut']} questions had their context cut "
          f"(budget {result['context_tokens'] or 'unbounded'} tokens); {result['errors']} errors")
    print(f"✅ Evaluation written to: {out}")
    failed = [i for i in result["items"] if i["error"] is not None]
    if failed:
        print(f"kit memory eval: error: {len(failed)} of {len(result['items'])} questions failed and were not "
              f"scored (first, {failed[0]['qid']}: {failed[0]['error']}); the accuracy above is over the "
              f"{result['overall']['total']} answered questions only", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    parser = _parser()
    args, llm = parse_args(parser, argv)
    try:
        return _generate(args, llm) if args.command == "generate" else _eval(args, llm)
    except DatasetError as exc:  # bad input: the file is not a benchmark
        print(f"kit memory {args.command}: error: {scrub_text(str(exc))}", file=sys.stderr)
        return 2
    except (ValueError, OSError, LLMError, LocalServerError, LockedError) as exc:
        print(f"kit memory {args.command}: error: {scrub_text(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"kit memory {args.command}: interrupted", file=sys.stderr)
        return 130
