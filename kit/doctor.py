"""`python -m kit doctor` (kit.commands.doctor): is the embedded model computing what the model computes, on this machine?

llama.cpp is compiled on the machine that installs it, and a build can be wrong without failing:
one made for an AVX-512/AMX Xeon with llama.cpp's default `GGML_NATIVE` agreed with the model on 22%
of next tokens, and every notebook then taught from noise. So the engine is checked against the
reference the kit already has: the torch model of the same GGUF (`kit.training.base_model.load_base`,
weights dequantized). Both read the same token ids of a few fixed chat conversations; at each
position we compare the most likely next token (top-1 agreement) and the mean negative
log-likelihood of the token that comes next (NLL, nats). Both use the same 4-bit weights; a sound build
differs from torch only where llama.cpp rounds its activations to 8 bits for the quantized products
and sums in another order, a few hundredths of a nat; a broken one is far off on both.

The engine runs in a child process: a build that crashes (signal 11) is a finding, not a dead doctor.
It is the same compiled library the server loads (`llama_cpp`), asked for logits at every position
in one pass, then for one chat completion through `create_chat_completion` (the call that crashed
the broken build) to measure tokens per second.

`make setup` runs this last and stops when it fails; the README says how to rebuild. This module knows
nothing of generation or training beyond loading the two models.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from kit.llm.local_server import default_gguf, default_threads, exit_text
from kit.manifest import package_versions

# Measured on a portable build (the Makefile's flags) of llama-cpp-python 0.3.16 on an AMD EPYC with
# AVX-512: 97.7% agreement, NLL 0.01 nats from torch's. The broken native build on the Xeon: 21.5%
# and +3.06 nats. The limits sit far from both, so a sound build on any CPU passes with room.
MIN_AGREEMENT = 0.90
MAX_NLL_GAP = 0.25
REBUILD = ("rebuild it portably: rm -rf ~/.cache/kit/wheels .venv && make setup "
           "(flags: LLAMA_CMAKE_ARGS in the Makefile; README, 'The embedded model's build')")
PACKAGES = ("llama_cpp_python", "torch", "transformers", "gguf", "numpy", "tiktoken", "aiohttp")

# Fixed conversations, whole (the answer's tokens are scored too). Written by the kit's authors.
PROBE_CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France, and what river runs through it?"},
     {"role": "assistant", "content": "The capital of France is Paris. The Seine runs through the city."}],
    [{"role": "user", "content": "Write one sentence about why the sky looks blue."},
     {"role": "assistant", "content": "Sunlight scatters off the air, and blue light scatters the most, "
                                      "so the sky looks blue to us."}],
    [{"role": "user", "content": "Add 17 and 25, then tell me if the result is even."},
     {"role": "assistant", "content": "17 + 25 = 42, and 42 is even because it divides by 2."}],
]


@dataclass
class EngineReport:
    agreement: float
    positions: int
    nll_engine: float
    nll_torch: float
    tokens_per_s: float
    system_info: str
    seconds: float

    @property
    def nll_gap(self) -> float:
        return self.nll_engine - self.nll_torch

    def problems(self) -> list[str]:
        found = []
        if not self.agreement >= MIN_AGREEMENT:
            found.append(f"top-1 agreement {self.agreement:.1%} < {MIN_AGREEMENT:.0%}")
        if not abs(self.nll_gap) <= MAX_NLL_GAP:
            found.append(f"NLL {self.nll_engine:.2f} vs torch {self.nll_torch:.2f} nats "
                         f"(gap {self.nll_gap:+.2f} > {MAX_NLL_GAP})")
        return found

    def summary(self) -> str:
        return (f"llama.cpp vs torch on {self.positions} positions: top-1 agreement {self.agreement:.1%} "
                f"(limit {MIN_AGREEMENT:.0%}), NLL {self.nll_engine:.2f} vs {self.nll_torch:.2f} nats "
                f"(gap limit {MAX_NLL_GAP})")


class EngineError(RuntimeError):
    """The engine could not be measured: it crashed or said something we cannot read."""


def _engine_child(gguf: str, threads: int) -> None:
    """Runs in the child: llama.cpp's log-softmax at every position of each id list read from stdin,
    then one greedy chat completion; prints one JSON line."""
    import llama_cpp
    import numpy as np

    prompts = json.loads(sys.stdin.read())
    llm = llama_cpp.Llama(gguf, n_ctx=512, logits_all=True, n_threads=threads, n_threads_batch=threads,
                          verbose=False, seed=0)
    top1, nll = [], []
    for ids in prompts:
        llm.reset()
        llm.eval(ids)
        scores = np.asarray(llm.scores[:len(ids)], dtype=np.float64)
        logp = scores - np.logaddexp.reduce(scores, axis=1, keepdims=True)
        top1.append(logp[:-1].argmax(axis=1).tolist())
        nll.append((-logp[np.arange(len(ids) - 1), ids[1:]]).tolist())
    del llm
    chat = llama_cpp.Llama(gguf, n_ctx=512, n_threads=threads, n_threads_batch=threads, verbose=False, seed=0)
    started = time.perf_counter()
    out = chat.create_chat_completion([{"role": "user", "content": "Tell me a short story about a lighthouse."}],
                                      max_tokens=64, temperature=0.0)
    elapsed = time.perf_counter() - started
    print(json.dumps({"top1": top1, "nll": nll, "completion_tokens": out["usage"]["completion_tokens"],
                      "seconds": elapsed, "system_info": llama_cpp.llama_print_system_info().decode()}))


def _run_engine(gguf: Path, prompts: list[list[int]], threads: int, timeout: float = 300.0) -> dict:
    command = [sys.executable, "-c", "import sys; from kit.doctor import _engine_child; "
               "_engine_child(sys.argv[1], int(sys.argv[2]))", str(gguf), str(threads)]
    try:
        done = subprocess.run(command, input=json.dumps(prompts), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise EngineError(f"the llama.cpp engine did not finish {len(prompts)} short prompts in {timeout:g} s") from None
    if done.returncode != 0:
        raise EngineError(f"the llama.cpp engine {exit_text(done.returncode)}; its output ends: "
                          f"{' '.join(done.stderr.split()[-40:]) or '(nothing)'}")
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise EngineError(f"the llama.cpp engine printed no result: {done.stdout[-300:]!r}") from None


def check_engine(gguf: str | Path | None = None, threads: int | None = None) -> EngineReport:
    """Measure the llama.cpp build against torch on PROBE_CONVERSATIONS. Raises EngineError if the
    engine crashes; the verdict is `report.problems()`."""
    import torch

    from kit.training.base_model import chat_messages, load_base

    started = time.perf_counter()
    path = Path(gguf) if gguf else default_gguf()
    model, tok = load_base(path)
    prompts = [tok.render_conversation(chat_messages(c)).ids for c in PROBE_CONVERSATIONS]
    engine = _run_engine(path, prompts, threads or default_threads())
    agree = total = 0
    nll_engine = nll_torch = 0.0
    with torch.no_grad():
        for ids, top1, nll in zip(prompts, engine["top1"], engine["nll"]):
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1].double(), dim=-1)
            agree += sum(int(a == b) for a, b in zip(logp.argmax(dim=-1).tolist(), top1))
            nll_torch += float(-logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].sum())
            nll_engine += sum(nll)
            total += len(ids) - 1
    tokens_per_s = engine["completion_tokens"] / engine["seconds"] if engine["seconds"] > 0 else math.nan
    return EngineReport(agree / total, total, nll_engine / total, nll_torch / total, tokens_per_s,
                        engine["system_info"].strip(), time.perf_counter() - started)


def cpu_features(system_info: str) -> str:
    """The instruction sets llama.cpp says it uses ('AVX2 = 1' and the like), as one short list."""
    on = [part.split("=")[0].split(":")[-1].strip() for part in system_info.split("|") if part.strip().endswith("= 1")]
    return ", ".join(on) or system_info or "(not reported)"


def versions() -> dict[str, str]:
    installed = package_versions(PACKAGES)
    return {name: installed.get(name, "not installed") for name in PACKAGES}
