"""`python -m kit doctor`: the embedded model's llama.cpp build measured against the torch model of the same
GGUF (kit.doctor); prints versions, CPU features and tokens/s, and exits 1 on a wrong or crashing build, so
`make setup`, which runs it last, stops there."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from kit.doctor import REBUILD, EngineError, check_engine, cpu_features, versions
from kit.commands.exits import fail


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m kit doctor",
                                     description="Check the embedded model's llama.cpp build against the torch model "
                                                 "of the same GGUF; print versions, CPU features and tokens/s.")
    parser.add_argument("--gguf", help="model file (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--json", action="store_true", help="print the measurement as JSON")
    args = parser.parse_args(argv)
    print("packages: " + ", ".join(f"{k} {v}" for k, v in versions().items()), flush=True)
    try:
        report = check_engine(args.gguf)
    except (EngineError, OSError, ValueError) as exc:  # BaseModelError is a ValueError
        return fail("doctor", f"FAILED: {exc}; {REBUILD}")
    if args.json:
        print(json.dumps({**asdict(report), "problems": report.problems()}))
    print(f"llama.cpp uses: {cpu_features(report.system_info)}")
    print(f"generation: {report.tokens_per_s:.0f} tokens/s (64 tokens, greedy)")
    problems = report.problems()
    if problems:
        print(f"kit doctor: FAILED: the embedded model computes the wrong numbers: {'; '.join(problems)} "
              f"({report.positions} positions); {REBUILD}", file=sys.stderr)
        return 1
    print(f"kit doctor: ok: {report.summary()} ({report.seconds:.0f} s)")
    return 0
