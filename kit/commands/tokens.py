"""`python -m kit tokens FILE --tokenizer DIR`: one conversation as tokens with its loss mask, or the
token statistics of the whole file (kit.tokens.view).

    python -m kit tokens FILE --index 3 --tokenizer runs/interactive/tokenizer          # coloured
    python -m kit tokens FILE --index 3 --tokenizer DIR --table                          # one row per token
    python -m kit tokens FILE --index 3 --tokenizer DIR --regions                        # specials and text runs
    python -m kit tokens FILE --stats --tokenizer DIR                                    # the whole file

Exit status: 0 shown, 1 an unreadable file, tokenizer or record (with --stats: any unreadable line).
"""

from __future__ import annotations

import argparse
import sys

from kit.paths import argument
from kit.records import iter_records
from kit.rules import errors, validate_messages
from kit.tokens.render import RenderError, render_conversation
from kit.tokens.tokenizer import Tokenizer
from kit.tokens.view import (file_stats, format_stats, terminal_legend, terminal_line, terminal_regions,
                             terminal_table)
from kit.commands.exits import fail


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m kit tokens", description="Show a conversation as tokens with its loss mask, or token stats of a file.")
    parser.add_argument("file", type=argument, help="a conversation file (.jsonl)")
    parser.add_argument("--tokenizer", required=True, type=argument, help="tokenizer folder (from `python -m kit tokenizer train`)")
    parser.add_argument("--index", type=int, default=0, help="which conversation: 0-based position among the readable records (default 0)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--table", action="store_true", help="one row per token with its target")
    mode.add_argument("--regions", action="store_true", help="one row per special token or run of text, with its mask")
    mode.add_argument("--color", action="store_true", help="tokens on one line, coloured by mask (default)")
    mode.add_argument("--plain", action="store_true", help="like --color without colour: [supervised] (not supervised)")
    mode.add_argument("--stats", action="store_true", help="token statistics of the whole file")
    parser.add_argument("--max-tokens", type=int, default=None, help="truncate at this many tokens (reported)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    try:
        tokenizer = Tokenizer.load(args.tokenizer)
        bad: list = []
        records = list(iter_records(args.file, errors=bad))
        for err in bad:
            print(f"warning: skipped unreadable line {err}", file=sys.stderr)
        if args.stats:
            print(format_stats(file_stats(tokenizer, records, args.max_tokens)))
            if bad:  # the figures are of a part of the file: say so in the exit status too
                print(f"kit tokens: {len(bad)} unreadable lines left out of these figures (listed above)", file=sys.stderr)
            return 1 if bad else 0
        if not 0 <= args.index < len(records):
            raise ValueError(f"{args.file}: --index {args.index} is out of range (the file has {len(records)} records)")
        record = records[args.index]
        rendered = render_conversation(tokenizer, record, args.max_tokens)
    except (OSError, ValueError) as exc:  # RenderError and RecordError are ValueErrors
        where = ""
        if isinstance(exc, RenderError):  # name the record by position and id (file:line unless it has its own id)
            n = exc.conversation if args.stats else args.index
            where = f"{args.file} record {n} (id {records[n]['id']}): "
            exc = RenderError(exc.message_index, exc.rule, exc.detail)
        return fail("tokens", f"{where}{exc}")

    for problem in errors(validate_messages(record["messages"])):  # renderable is not the same as fit to train on
        print(f"warning: {record['id']}: {problem} (kit validate calls this an error)", file=sys.stderr)
    n_sup = sum(rendered.mask)
    print(f"{record['id']}: {len(rendered.ids)} tokens, {n_sup} supervised" + (f", TRUNCATED: {rendered.n_truncated} tokens dropped" if rendered.truncated else "") + (", NOTHING SUPERVISED" if rendered.all_masked else ""))
    if args.table:
        print(terminal_table(tokenizer, rendered))
    elif args.regions:
        print(terminal_regions(tokenizer, rendered))
    elif args.plain:
        print(terminal_line(tokenizer, rendered, color=False))
    else:
        print(terminal_legend())
        print(terminal_line(tokenizer, rendered, color=True))
    return 0
