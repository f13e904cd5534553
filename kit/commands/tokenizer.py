"""`python -m kit tokenizer train`: train a BPE tokenizer with nanochat's special tokens
(kit.tokens.tokenizer) on conversation and text files, the knowledge folder included unless told not to.
Exit status: 0 saved, 1 a bad input or output folder.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from kit.paths import argument, folder_problem
from kit.tokens.tokenizer import Tokenizer, default_corpus, texts_from_paths
from kit.commands.exits import fail


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m kit tokenizer", description="Train a BPE tokenizer with nanochat's special tokens.")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train on conversation files (.jsonl) and text files (.txt, .md) or folders")
    train.add_argument("--input", nargs="+", default=[], type=argument, metavar="PATH", help="files or folders (default: the knowledge folder only)")
    train.add_argument("--vocab-size", type=int, default=4096, help="total ids including the 9 specials (default 4096)")
    train.add_argument("--output", required=True, type=argument, help="folder to write tokenizer.json and tokenizer.bpe into")
    train.add_argument("--no-knowledge", action="store_true", help="train on --input only, without the knowledge folder")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    if problem := folder_problem(args.output):
        return fail("tokenizer", f"--output {problem}")
    try:
        texts = texts_from_paths(args.input) if args.no_knowledge else default_corpus(args.input)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tokenizer = Tokenizer.train(texts, args.vocab_size, progress=sys.stderr.isatty())
        for warning in caught:
            print(f"warning: {warning.message}", file=sys.stderr)
        out = tokenizer.save(args.output)
    except (OSError, ValueError) as exc:
        return fail("tokenizer", str(exc))
    print(f"{tokenizer!r} saved to {out}")
    return 0
