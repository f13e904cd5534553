"""`python -m kit midtrain`: pack a task mixture and train a small GPT on it (kit.training.midtrain).

The run holds --out's lock (rank 0 under torchrun), resumes a matching checkpoint there, and on Ctrl-C
saves one and exits 130. Exit status: 0 done, 1 bad input or a failure, 2 an --out that would
overwrite an input.
"""

from __future__ import annotations

import argparse
import sys

from kit.arguments import finite_float
from kit.paths import argument, clashing_input, folder_problem
from kit.tokens.packing import LOSS_MODES
from kit.training.loop import Interrupted
from kit.training.midtrain import OUTPUT_NAMES, PRESETS, is_main_process, midtrain, train_tokenizer_on
from kit.commands.exits import fail


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m kit midtrain",
                                     description="Pack a task mixture and train a small GPT on it (CPU or GPU).")
    parser.add_argument("--data", nargs="*", default=[], type=argument, metavar="PATH",
                        help="identity conversation files (.jsonl, kit or CustomJSON lines)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu-smoke")
    parser.add_argument("--steps", type=int, help="optimizer steps (default: the preset's)")
    parser.add_argument("--loss-mode", choices=LOSS_MODES, default="mid")
    parser.add_argument("--device", default="auto", help="auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N or mps")
    parser.add_argument("--out", required=True, type=argument, help="folder for the checkpoint, history, tokenizer, manifest")
    parser.add_argument("--tokenizer", type=argument, help="a tokenizer folder (default: train one on the mixture)")
    parser.add_argument("--vocab-size", type=int, help="vocabulary of a tokenizer trained here (default: the preset's)")
    parser.add_argument("--size", type=int, default=1000, help="built-in task conversations (default 1000)")
    parser.add_argument("--identity-epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peak-flops", type=finite_float, help="device peak FLOP/s for MFU (default: a timed matmul)")
    parser.add_argument("--sample-tokens", type=int, default=64, help="tokens per sampled reply (0: no samples)")
    parser.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default: the preset's; 0: at the end only)")
    parser.add_argument("--no-resume", action="store_true",
                        help="start from step 0 even when --out holds a checkpoint of the same run")
    parser.add_argument("--force", action="store_true",
                        help="write into an --out folder whose checkpoint, history or manifest another program made")
    for name in ("smoltalk", "mmlu", "gsm8k", "memory"):
        parser.add_argument(f"--{name}", type=argument, metavar="PATH",
                            help=f"add the {name} set (a file or folder in its published format)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    if problem := folder_problem(args.out):
        return fail("midtrain", f"--out {problem}")
    inputs = [*args.data, args.tokenizer, args.smoltalk, args.mmlu, args.gsm8k, args.memory]
    for name in OUTPUT_NAMES:  # what midtrain writes in --out; an input there would be overwritten
        if clash := clashing_input(args.out / name, inputs):
            print(f"kit midtrain: --out {args.out} would overwrite the input {clash} ({name}); choose another folder",
                  file=sys.stderr)
            return 2

    from kit.locking import LockedError
    from kit.records import RecordError
    from kit.tokens.tokenizer import Tokenizer
    from kit.training.datasets import DatasetError
    from kit.training.tasks import default_mixture

    try:
        mixture = default_mixture(args.data, seed=args.seed, size=args.size, identity_epochs=args.identity_epochs,
                                  smoltalk=args.smoltalk, mmlu=args.mmlu, gsm8k=args.gsm8k, memory=args.memory)
        if is_main_process():
            print(f"mixture: {mixture.counts()}", flush=True)
        vocab_size = args.vocab_size or PRESETS[args.preset].vocab_size
        tokenizer = Tokenizer.load(args.tokenizer) if args.tokenizer else train_tokenizer_on(mixture, vocab_size)
        overrides = {"loss_mode": args.loss_mode, "seed": args.seed}
        for name in ("steps", "checkpoint_every"):
            if getattr(args, name) is not None:
                overrides[name] = getattr(args, name)
        # the lock of --out is taken inside (by rank 0): a notebook's run holds it the same way
        result = midtrain(mixture, tokenizer, preset=args.preset, out_dir=args.out, device=args.device,
                          peak_flops=args.peak_flops, sample_tokens=args.sample_tokens, resume=not args.no_resume,
                          force=args.force,
                          manifest_extra={"argv": argv, "tokenizer": args.tokenizer or "trained on the mixture"},
                          **overrides)
    except (OSError, ValueError, RecordError, DatasetError, LockedError) as exc:
        return fail("midtrain", str(exc))
    except Interrupted as exc:
        saved = f"the checkpoint of step {exc.step} is in {args.out}; run the same command again to resume" \
            if exc.step else "nothing trained yet"
        return fail("midtrain", f"interrupted; {saved}", 130)
    except KeyboardInterrupt:
        return fail("midtrain", "interrupted before training started", 130)

    if not is_main_process():
        return 0
    for sample in result.samples_after:
        print(f"> {sample['prompt']}\n{sample['reply']}\n")
    print(f"val loss {result.val_loss}, bpb {result.val_bpb}; saved to {args.out}")
    return 0
