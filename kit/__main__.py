"""Command line entry point: `python -m kit <command> ...`.

Each command lives in the module that owns its concern; this file only dispatches, so adding a
command never means editing another module's code.
"""

from __future__ import annotations

import importlib
import os
import sys

# command -> (module, one-line help). Each module exposes `main(argv: list[str]) -> int`.
COMMANDS = {
    "serve": ("kit.commands.serve", "serve a local GGUF (default: the embedded SmolLM2-135M) as an OpenAI-compatible API"),
    "generate": ("kit.commands.generate", "generate synthetic conversations in bulk (resumable)"),
    "export": ("kit.commands.export", "convert a conversation file to nanochat CustomJSON lines or parquet"),
    "validate": ("kit.commands.validate", "check a conversation file and list every problem"),
    "quality": ("kit.commands.quality", "coverage, diversity, content rules, near-duplicates and cost, beside the reference data"),
    "judge": ("kit.commands.judge", "score each conversation with an LLM judge (resumable; any endpoint)"),
    "tokenizer": ("kit.commands.tokenizer", "train a BPE tokenizer with nanochat's special tokens"),
    "tokens": ("kit.commands.tokens", "show one conversation as tokens with its loss mask"),
    "midtrain": ("kit.commands.midtrain", "pack a task mixture and train a small GPT on CPU or GPU"),
    "finetune": ("kit.commands.finetune", "finetune a real chat model (default: the embedded SmolLM2-135M) on conversation files"),
    "memory": ("kit.commands.memory", "generate and evaluate the expense-tracking memory benchmark"),
    "identity": ("kit.commands.identity", "ask the held-out identity probes and score what a model says about itself"),
    "doctor": ("kit.commands.doctor", "check the embedded model's llama.cpp build against torch; versions, CPU features, tokens/s"),
    "run": ("kit.commands.run", "execute the notebooks in order with papermill into runs/<run-id>/"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: python -m kit <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`python -m kit <command> --help` shows a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"kit: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    try:
        return int(module.main(rest) or 0)
    except BrokenPipeError:  # e.g. `python -m kit run --list | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 0


if __name__ == "__main__":
    sys.exit(main())
