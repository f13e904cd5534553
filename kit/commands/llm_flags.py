"""The flags of every command that asks a model (generate, judge, memory, identity), with one meaning.

    --endpoint URL    OpenAI-compatible base URL, repeatable (several servers share the requests); none:
                      OPENAI_BASE_URL / OPENAI_API_KEY / OPENROUTER_API_KEY from the environment or .env,
                      else the embedded model. Keys come only from the environment, never from a flag.
    --model NAME      the model at the endpoint (none: OPENAI_MODEL, else the server's only model)
    --timeout S       seconds one request may take, body included
    --item-timeout S  seconds for all attempts at one request (retries and back-off included)
    --no-cache        ask the server even for replies in the reply cache
    --no-progress     no progress bar

`llm_options(parser, args)` refuses a timeout that is not above 0 (argparse's exit 2) and gives the
keyword arguments every stage takes: endpoint, model, cache, timeout, item_timeout; `parse_args(parser,
argv)` parses a command line and gives both.
"""

from __future__ import annotations

import argparse

from kit.arguments import finite_float
from kit.llm.client import DEFAULT_ITEM_TIMEOUT_S, DEFAULT_TIMEOUT_S


def add_llm_flags(parser: argparse.ArgumentParser, endpoint_group: argparse._ActionsContainer | None = None) -> None:
    """The flags above; `endpoint_group`: where --endpoint goes (a mutually exclusive group of the parser)."""
    (endpoint_group or parser).add_argument(
        "--endpoint", action="append", help="OpenAI-compatible base URL (repeatable); default: OPENAI_BASE_URL / "
        "OPENAI_API_KEY / OPENROUTER_API_KEY, else the embedded model")
    parser.add_argument("--model", help="model name at the endpoint")
    parser.add_argument("--timeout", type=finite_float, default=DEFAULT_TIMEOUT_S,
                        help=f"seconds one request may take, body included (default {DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--item-timeout", type=finite_float, default=DEFAULT_ITEM_TIMEOUT_S,
                        help=f"seconds for all attempts at one request (default {DEFAULT_ITEM_TIMEOUT_S:g})")
    parser.add_argument("--no-cache", action="store_true", help="ask the server even for replies in the reply cache")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def llm_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict:
    """{endpoint, model, cache, timeout, item_timeout} from the parsed flags; a timeout <= 0 is a usage error.
    Several --endpoint values are given as one comma-separated string, which every stage reads alike."""
    for name in ("timeout", "item_timeout"):
        if getattr(args, name) < 1e-3:
            parser.error(f"--{name.replace('_', '-')} must be > 0 seconds, got {getattr(args, name)}")
    return {"endpoint": ",".join(args.endpoint) if args.endpoint else None, "model": args.model,
            "cache": not args.no_cache, "timeout": args.timeout, "item_timeout": args.item_timeout}


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> tuple[argparse.Namespace, dict]:
    """(arguments, `llm_options` of them) for a command line whose parser has the LLM flags."""
    args = parser.parse_args(argv)
    return args, llm_options(parser, args)
