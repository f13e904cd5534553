"""kit.tokens.packing: BOS-aligned rows, nothing dropped by best-fit-pad, ignored padding targets, and the
report's figures on a crafted set whose answers are known by hand."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kit.tokens.packing import IGNORE_INDEX, batches, compare_strategies, pack_rows, targets, trained_tokens

BOS, PAD = 0, 99


def conversation(length: int, tag: int, supervised_from: int | None = None) -> tuple[list[int], list[int]]:
    """BOS then `length - 1` tokens tagged with `tag`; mask 1 from `supervised_from` (default: second half)."""
    ids = [BOS] + [tag] * (length - 1)
    start = length // 2 if supervised_from is None else supervised_from
    return ids, [0] * start + [1] * (length - start)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 12), min_size=1, max_size=40), st.integers(2, 12))
def test_best_fit_pad_keeps_every_token_of_fitting_conversations(lengths, row_len):
    sequences = [conversation(n, tag=i + 1) for i, n in enumerate(lengths)]
    packed = pack_rows(sequences, row_len, strategy="best_fit_pad", pad_id=PAD, bos_id=BOS, buffer_size=8)
    assert (packed.ids[:, 0] == BOS).all()  # every row starts at a conversation start
    assert not packed.pad[:, 0].any()
    # padding only at the end of a row
    assert all((np.diff(row.astype(int)) >= 0).all() for row in packed.pad)
    # every conversation that fits appears whole, exactly once, with its mask
    for i, (ids, mask) in enumerate(sequences):
        placed = (packed.ids == i + 1).sum()
        assert placed == min(len(ids), row_len) - 1
    stats = packed.stats
    assert stats.truncated == sum(n > row_len for n in lengths)
    assert stats.cropped == sum(max(0, n - row_len) for n in lengths)
    assert stats.kept + stats.padded == stats.rows * row_len
    assert packed.mask.sum() == sum(sum(m[:row_len]) for _, m in sequences)


def test_crafted_set_report():
    # Row length 10. Conversations of 6, 6, 4, 3, 12 tokens (12 is longer than a row).
    seqs = [conversation(6, 1), conversation(6, 2), conversation(4, 3), conversation(3, 4), conversation(12, 5)]
    report = {row["strategy"]: row for row in compare_strategies(seqs, 10, pad_id=PAD, bos_id=BOS)}
    total = 6 + 6 + 4 + 3 + 12  # 31 tokens
    supervised = 3 + 3 + 2 + 2 + 6  # 16

    # best-fit-pad: [12->10], [6,4], [6,3 +1 pad] -> 3 rows, 29 kept, 1 pad, 2 cropped (the truncation)
    pad = report["best_fit_pad"]
    assert pad["rows"] == 3 and pad["truncated"] == 1
    assert pad["utilization %"] == round(100 * 29 / 30, 2)
    assert pad["padded %"] == round(100 * 1 / 30, 2)
    assert pad["cropped %"] == round(100 * 2 / total, 2)
    assert pad["supervised lost"] == 2  # the 2 truncated tokens were supervised

    # greedy-crop in order: [6, 6->4], [4, 3, 12->3], then nothing left -> 2 rows, 20 kept, 11 cropped
    greedy = report["greedy_crop"]
    assert greedy["rows"] == 2 and greedy["utilization %"] == 100.0 and greedy["padded %"] == 0.0
    assert greedy["cropped %"] == round(100 * 11 / total, 2)
    # lost supervised: conv 2 keeps 4 of 6 (mask 000111 -> loses 2), conv 5 keeps 3 of 12 (loses 6)
    assert greedy["supervised lost"] == 8
    assert greedy["supervised lost %"] == round(100 * 8 / supervised, 2)

    # best-fit-crop: [12->10], [6,4], [6,3] and nothing is left to crop into the last slot: as best-fit-pad
    crop = report["best_fit_crop"]
    assert crop["rows"] == 3 and crop["supervised lost"] == 2


def test_best_fit_crop_crops_the_shortest_when_nothing_fits():
    seqs = [conversation(7, 1), conversation(7, 2), conversation(5, 3)]
    packed = pack_rows(seqs, 10, strategy="best_fit_crop", pad_id=PAD, bos_id=BOS)
    # row 1: 7 fits, then nothing fits in 3 -> crop the shortest (5) to 3; row 2: the other 7 + padding
    assert packed.ids[0].tolist() == [BOS, 1, 1, 1, 1, 1, 1, BOS, 3, 3]
    assert packed.stats.cropped == 2 and packed.stats.padded == 3


def test_padding_targets_are_ignored_and_sft_uses_target_mask():
    seqs = [conversation(4, 1, supervised_from=2), conversation(3, 2, supervised_from=1)]
    packed = pack_rows(seqs, 10, strategy="best_fit_pad", pad_id=PAD, bos_id=BOS)
    # row: [BOS 1 1 1 | BOS 2 2 | pad pad pad], mask [0 0 1 1 | 0 1 1 | 0 0 0]
    assert packed.ids[0].tolist() == [BOS, 1, 1, 1, BOS, 2, 2, PAD, PAD, PAD]
    mid = targets(packed, "mid")[0].tolist()
    sft = targets(packed, "sft")[0].tolist()
    assert mid == [1, 1, 1, BOS, 2, 2, -1, -1, -1]
    # the mask of the *target* decides: positions whose next token has mask 1
    assert sft == [-1, 1, 1, -1, 2, 2, -1, -1, -1]
    assert trained_tokens(packed, "mid") == 6 and trained_tokens(packed, "sft") == 4


def test_batches_shift_by_one_and_cover_every_row():
    seqs = [conversation(n, i + 1) for i, n in enumerate([5, 9, 3, 8, 2, 6, 7])]
    packed = pack_rows(seqs, 10, pad_id=PAD, bos_id=BOS)
    seen = []
    for inputs, tgts in batches(packed, 2, seed=1):
        assert inputs.shape[1] == tgts.shape[1] == 9 and inputs.dtype == np.int64
        seen += [tuple(row) for row in inputs]
        real = tgts != IGNORE_INDEX
        assert (tgts[real] != PAD).all()
    assert sorted(seen) == sorted(tuple(row) for row in packed.ids[:, :-1].astype(np.int64))


def test_rejects_sequences_without_bos():
    with pytest.raises(ValueError, match="sequence 1: must start with BOS"):
        pack_rows([conversation(3, 1), ([5, 5], [0, 1])], 10, pad_id=PAD, bos_id=BOS)
