"""kit.training.model: causal, ignores -1 targets, counts FLOPs, samples until a stop token."""

import pytest
import torch
import torch.nn.functional as F

from kit.training.model import GPT, GPTConfig

TINY = GPTConfig(vocab_size=50, sequence_len=16, n_layer=2, n_head=2, n_embd=32)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: threads cost more than they save
    yield
    torch.set_num_threads(before)


def trained_enough_to_differ(model: GPT) -> GPT:
    # zero-initialised projections make a fresh model's blocks the identity; perturb so attention matters
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model


def test_logits_shape_and_causality():
    model = trained_enough_to_differ(GPT(TINY)).eval()
    idx = torch.randint(0, 50, (2, 16))
    logits = model(idx)
    assert logits.shape == (2, 16, 50)
    changed = idx.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % 50  # change the future only
    assert torch.allclose(model(changed)[:, :10], logits[:, :10], atol=1e-5)
    assert not torch.allclose(model(changed)[:, 10:], logits[:, 10:], atol=1e-5)


def test_loss_ignores_minus_one_targets():
    model = trained_enough_to_differ(GPT(TINY))
    idx = torch.randint(0, 50, (2, 16))
    targets = torch.randint(0, 50, (2, 16))
    targets[0, :5] = -1
    targets[1, 12:] = -1
    logits = model(idx)
    keep = targets != -1
    by_hand = F.cross_entropy(logits[keep], targets[keep])
    assert torch.allclose(model(idx, targets), by_hand, atol=1e-6)
    assert torch.allclose(model(idx, targets, reduction="sum"), by_hand * keep.sum(), rtol=1e-5)


def test_flops_per_token_counts_matmuls_and_attention():
    model = GPT(TINY)
    matmul_weights = model.num_params() - 50 * 32
    assert model.estimate_flops_per_token() == 6 * matmul_weights + 12 * 2 * 32 * 16


def test_generate_is_greedy_deterministic_and_stops():
    model = trained_enough_to_differ(GPT(TINY)).eval()
    first = list(model.generate([1, 2, 3], 20, temperature=0))
    assert first == list(model.generate([1, 2, 3], 20, temperature=0)) and len(first) == 20
    stopped = list(model.generate([1, 2, 3], 20, temperature=0, stop_ids={first[4]}))
    assert stopped == first[:first.index(first[4]) + 1]
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert list(model.generate([1], 30, temperature=1.0, top_k=5, generator=g1)) == \
        list(model.generate([1], 30, temperature=1.0, top_k=5, generator=g2))


def test_rejects_sequences_longer_than_the_model():
    model = GPT(TINY)
    try:
        model(torch.zeros(1, 17, dtype=torch.long))
    except ValueError as exc:
        assert "longer than the model's 16" in str(exc)
    else:
        raise AssertionError("expected ValueError")


def test_the_kv_cache_generates_what_reading_the_whole_context_each_step_does():
    """Greedy tokens with the cache equal those of a model that reads its last sequence_len tokens afresh at
    every step, before and after the context outgrows the sequence length (where the cache stops)."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=512, sequence_len=64, n_layer=2, n_head=2, n_embd=32)).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)  # untrained weights would make every step the same argmax

    def afresh(ids, steps):
        context = list(ids)
        with torch.no_grad():
            for _ in range(steps):
                context.append(int(model(torch.tensor([context[-64:]]))[0, -1].argmax()))
        return context[len(ids):]

    for length in (1, 10, 40, 63):
        ids = torch.randint(0, 512, (length,)).tolist()
        assert list(model.generate(ids, 40, temperature=0)) == afresh(ids, 40), length
