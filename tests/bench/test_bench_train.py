"""Benchmark: training speed of the cpu-smoke preset (tokens/s and MFU against a matmul timed in the
same run), one thread against torch's default, the gpu preset when CUDA is there, and the packing
report on the default mixture. Run with `make bench`; it prints figures and asserts only sanity."""

import warnings

import pandas as pd
import pytest
import torch

from kit.tokens.packing import compare_strategies
from kit.training.tasks import default_mixture
from kit.training.midtrain import PRESETS, measure_matmul_flops, midtrain, render_all, train_tokenizer_on


@pytest.fixture(scope="module")
def mixture():
    return default_mixture(seed=0, size=2000)


@pytest.fixture(scope="module")
def tokenizer(mixture):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train_tokenizer_on(mixture, PRESETS["cpu-smoke"].vocab_size)


def test_packing_report_on_default_mixture(mixture, tokenizer):
    sequences = render_all(tokenizer, mixture)
    row_len = PRESETS["cpu-smoke"].sequence_len + 1
    report = pd.DataFrame(compare_strategies(sequences, row_len, pad_id=tokenizer.bos_id, bos_id=tokenizer.bos_id))
    print(f"\npacking {len(sequences)} conversations of the default mixture into rows of {row_len} tokens:")
    print(report.to_string(index=False))
    by = report.set_index("strategy")
    assert by.loc["best_fit_pad", "cropped %"] == 0 and by.loc["best_fit_pad", "supervised lost"] == 0
    assert by.loc["best_fit_crop", "utilization %"] >= by.loc["best_fit_pad", "utilization %"]


@pytest.mark.parametrize("threads", [1, None], ids=["1-thread", "default-threads"])
def test_cpu_smoke_speed(mixture, tokenizer, threads):
    # no peak given: midtrain times a matmul itself, under the same thread setting as the training
    result = midtrain(mixture, tokenizer, preset="cpu-smoke", device="cpu", steps=12, eval_every=1000,
                      sample_tokens=0, cpu_threads=threads, progress=False)
    peak = result.peak_flops
    label = threads or torch.get_num_threads()
    print(f"\ncpu-smoke, {label} thread(s): {result.tokens_per_s:,.0f} tokens/s "
          f"(issue's guide: about 10,000 on an idle 2-core machine), {result.flops_per_token / 1e6:.1f} MFLOP/token, "
          f"MFU {100 * result.mfu:.1f}% of a {peak / 1e9:.1f} GFLOP/s float32 matmul measured in this run")
    assert result.tokens_per_s > 0 and 0 < result.mfu < 1.5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_preset_speed(tokenizer):
    mixture = default_mixture(seed=0, size=20000)
    peak = measure_matmul_flops(torch.device("cuda"), torch.bfloat16, seconds=1.0)
    result = midtrain(mixture, tokenizer, preset="gpu", device="cuda", steps=30, eval_every=1000,
                      sample_tokens=0, peak_flops=peak, progress=False)
    print(f"\ngpu preset on {torch.cuda.get_device_name()}: {result.tokens_per_s:,.0f} tokens/s, "
          f"MFU {100 * result.mfu:.1f}% of a {peak / 1e12:.0f} TFLOP/s bf16 matmul measured in this run")
    assert result.tokens_per_s > 0
