"""`python -m kit finetune`: finetune a real chat model on conversation files (kit.training.finetune).

The run holds --out's lock, builds the output beside it and switches it in whole, resumes a matching
checkpoint, and on Ctrl-C saves one and exits 130. Exit status: 0 done, 2 bad input (a file, an option,
a diverged loss, a damaged checkpoint, a locked --out), 1 another failure (a full disk).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kit.arguments import finite_float
from kit.paths import argument
from kit.training.finetune import METHODS, PRESETS, FinetuneError, finetune
from kit.training.loop import Interrupted
from kit.commands.exits import fail


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m kit finetune",
                                     description="Finetune a chat model (default: the embedded SmolLM2-135M-Instruct) on conversation files.")
    parser.add_argument("--data", action="append", required=True, type=argument, metavar="FILE",
                        help="conversation file (.jsonl); repeat for more")
    parser.add_argument("--out", required=True, type=argument,
                        help="output folder (weights, tokenizer, manifest, history, loss.png)")
    parser.add_argument("--base", type=argument,
                        help="base model: a .gguf file or a Hugging Face folder (default: the embedded GGUF)")
    parser.add_argument("--method", choices=METHODS, default="lora")
    parser.add_argument("--steps", type=int, help="optimizer steps (default: from --epochs)")
    parser.add_argument("--epochs", type=finite_float, help="passes over the examples (default: the preset's)")
    parser.add_argument("--lr", type=finite_float, help="peak learning rate (default: the preset's for the method)")
    parser.add_argument("--batch-tokens", type=int, help="padded tokens per batch (default: the preset's)")
    parser.add_argument("--device", default="auto", help="auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N or mps")
    parser.add_argument("--mix", action="append", default=[], metavar="FILE:WEIGHT",
                        help="general conversations making WEIGHT of the examples (repeatable)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu-smoke")
    parser.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default: the preset's)")
    parser.add_argument("--gguf", action="store_true", help="also write model.gguf for `python -m kit serve --gguf`")
    parser.add_argument("--no-resume", action="store_true", help="start clean even if a matching checkpoint exists")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing --out folder that is not a finetune's output")
    return parser.parse_args(argv)


def parse_mix(spec: str) -> tuple[str, float]:
    """"FILE:WEIGHT" -> (FILE, WEIGHT); the last colon splits, so paths may hold colons."""
    path, sep, weight = spec.rpartition(":")
    try:
        value = float(weight)
    except ValueError:
        value = None
    if not sep or not path or value is None:
        raise FinetuneError(f"--mix {spec!r}: expected FILE:WEIGHT, e.g. general.jsonl:0.3")
    return path, value


def main(argv: list[str]) -> int:
    args = parse(argv)

    from kit.locking import LockedError
    from kit.records import RecordError
    from kit.training.base_model import BaseModelError
    from kit.training.checkpoints import CheckpointError
    from kit.training.loop import Diverged

    try:
        mix = [(argument(path), weight) for path, weight in map(parse_mix, args.mix)]
        for path in [*args.data, *(p for p, _ in mix)]:
            if not Path(path).is_file():
                raise FinetuneError(f"{path}: no such file" if not Path(path).exists() else f"{path} is a folder; give a file")
        # the lock of --out is taken inside: a notebook's finetune holds it the same way
        result = finetune(args.data, args.out, base=args.base, method=args.method, steps=args.steps, epochs=args.epochs,
                          lr=args.lr, batch_tokens=args.batch_tokens, device=args.device, mix=mix, seed=args.seed,
                          preset=args.preset, gguf=args.gguf, resume=not args.no_resume,
                          checkpoint_every=args.checkpoint_every, force=args.force)
    except Interrupted as exc:
        return fail("finetune", str(exc), 130)
    except KeyboardInterrupt:
        return fail("finetune", "interrupted before training started; nothing saved", 130)
    except (FinetuneError, Diverged, CheckpointError, BaseModelError, RecordError, LockedError) as exc:
        return fail("finetune", str(exc), 2)
    except (OSError, ValueError) as exc:
        return fail("finetune", str(exc))

    first = result.history[0]["loss"] if result.history else None
    print(f"finetune: {result.steps} steps, loss {first} -> {result.final_loss}, {result.tokens_per_s:.0f} tokens/s, "
          f"{result.train_seconds:.1f} s training; saved to {result.out_dir}" + (f"; GGUF {result.gguf}" if result.gguf else ""))
    return 0
