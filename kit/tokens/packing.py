"""Packing rendered conversations into fixed-length training rows, and what each way of packing costs.

A row holds `row_len = T + 1` tokens: the model reads the first T and predicts the last T. Every
strategy here is BOS-aligned: a row starts at the start of a conversation, so no training example
begins mid-conversation without its question. They differ in what they do with the space at a row's end:

- `greedy_crop`: conversations in order; the one that does not fit is cropped to fill the row and its
  rest is dropped.
- `best_fit_crop`: from a buffer of upcoming conversations take the largest that still fits, again and
  again; when none fits, crop the shortest to fill the row (nanochat's BOS-aligned best-fit loader).
- `best_fit_pad`: the same best fit, but when none fits the row is padded instead: whole conversations
  only, nothing is dropped. Padding sits at the row's end, so under causal attention it never changes
  what a real token sees, and its targets are ignored (-1) by `batches`.

With every strategy a conversation longer than a row is truncated to the row (counted in
`PackStats.truncated`). Conversations sharing a row attend to each other, as in nanochat; each
starts with <|bos|>, which the model learns to read as "what came before is unrelated".

`compare_strategies` reports, side by side, utilization (real tokens / row slots), padding, cropping,
and how many supervised (mask==1) tokens each strategy loses.
"""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass
from typing import Iterator, Sequence

import numpy as np

STRATEGIES = ("greedy_crop", "best_fit_crop", "best_fit_pad")
IGNORE_INDEX = -1
LOSS_MODES = ("mid", "sft")


@dataclass
class PackStats:
    strategy: str
    row_len: int
    rows: int
    conversations: int
    tokens: int  # tokens in the input conversations
    kept: int  # of those, tokens placed in rows
    padded: int  # padding slots
    cropped: int  # input tokens dropped (cropping and truncation)
    truncated: int  # conversations longer than a row
    supervised: int  # mask==1 tokens in the input
    supervised_lost: int  # of those, tokens dropped

    @property
    def slots(self) -> int:
        return self.rows * self.row_len

    @property
    def utilization(self) -> float:
        return self.kept / self.slots if self.slots else 0.0

    @property
    def padded_fraction(self) -> float:
        return self.padded / self.slots if self.slots else 0.0

    @property
    def cropped_fraction(self) -> float:
        return self.cropped / self.tokens if self.tokens else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "utilization": self.utilization, "padded_fraction": self.padded_fraction,
                "cropped_fraction": self.cropped_fraction}


@dataclass
class Packed:
    ids: np.ndarray  # (rows, row_len) int32
    mask: np.ndarray  # (rows, row_len) int8: 1 where the token is supervised in SFT
    pad: np.ndarray  # (rows, row_len) bool: True on padding
    stats: PackStats

    def __len__(self) -> int:
        return len(self.ids)


def pack_rows(sequences: Sequence[tuple[Sequence[int], Sequence[int]]], row_len: int, *,
              strategy: str = "best_fit_pad", pad_id: int, bos_id: int, buffer_size: int = 1000) -> Packed:
    """Pack (ids, mask) pairs into rows of `row_len` tokens; every row starts with a conversation's BOS.

    `buffer_size` is how many upcoming conversations best fit chooses from: larger packs tighter but
    moves conversations further from their place in the (shuffled) stream.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if row_len < 2:
        raise ValueError(f"row_len must be at least 2, got {row_len}")
    for i, (ids, mask) in enumerate(sequences):
        if len(ids) != len(mask):
            raise ValueError(f"sequence {i}: {len(ids)} ids but {len(mask)} mask values")
        if not len(ids) or ids[0] != bos_id:
            raise ValueError(f"sequence {i}: must start with BOS (id {bos_id}); render conversations first")

    lengths = [min(len(ids), row_len) for ids, _ in sequences]
    if strategy == "greedy_crop":
        layout = _greedy(lengths, row_len)
    else:
        layout = _best_fit(lengths, row_len, crop=strategy == "best_fit_crop", buffer_size=buffer_size)

    rows = len(layout)
    ids_out = np.full((rows, row_len), pad_id, dtype=np.int32)
    mask_out = np.zeros((rows, row_len), dtype=np.int8)
    pad_out = np.ones((rows, row_len), dtype=bool)
    kept_per_seq = [0] * len(sequences)
    supervised_kept = 0
    for r, row in enumerate(layout):
        at = 0
        for seq, take in row:
            ids, mask = sequences[seq]
            ids_out[r, at:at + take] = ids[:take]
            mask_out[r, at:at + take] = mask[:take]
            pad_out[r, at:at + take] = False
            kept_per_seq[seq] += take
            supervised_kept += sum(mask[:take])
            at += take

    tokens = sum(len(ids) for ids, _ in sequences)
    supervised = sum(sum(mask) for _, mask in sequences)
    kept = sum(kept_per_seq)
    stats = PackStats(
        strategy=strategy, row_len=row_len, rows=rows, conversations=len(sequences), tokens=tokens, kept=kept,
        padded=int(pad_out.sum()), cropped=tokens - kept, truncated=sum(len(ids) > row_len for ids, _ in sequences),
        supervised=supervised, supervised_lost=supervised - supervised_kept,
    )
    return Packed(ids_out, mask_out, pad_out, stats)


def _greedy(lengths: list[int], row_len: int) -> list[list[tuple[int, int]]]:
    rows: list[list[tuple[int, int]]] = []
    row, space = [], row_len
    for seq, length in enumerate(lengths):
        take = min(length, space)
        row.append((seq, take))
        space -= take
        if space == 0:
            rows.append(row)
            row, space = [], row_len
    if row:
        rows.append(row)
    return rows


def _best_fit(lengths: list[int], row_len: int, *, crop: bool, buffer_size: int) -> list[list[tuple[int, int]]]:
    # The buffer is kept sorted by (length, -arrival): "the largest that fits, earliest first" is one bisect.
    buffer: list[tuple[int, int]] = []
    upcoming = iter(enumerate(lengths))
    rows: list[list[tuple[int, int]]] = []
    while True:
        while len(buffer) < buffer_size and (item := next(upcoming, None)) is not None:
            seq, length = item
            bisect.insort(buffer, (length, -seq))
        if not buffer:
            return rows
        row, space = [], row_len
        while buffer:
            j = bisect.bisect_right(buffer, (space, 1)) - 1
            if j < 0:
                break
            length, neg_seq = buffer.pop(j)
            row.append((-neg_seq, length))
            space -= length
        if crop and space and buffer:
            _, neg_seq = buffer.pop(0)
            row.append((-neg_seq, space))
        rows.append(row)


def compare_strategies(sequences: Sequence[tuple[Sequence[int], Sequence[int]]], row_len: int, *,
                       pad_id: int, bos_id: int, buffer_size: int = 1000) -> list[dict]:
    """One row per strategy: rows, utilization %, padded %, cropped %, truncated, supervised tokens lost."""
    report = []
    for strategy in STRATEGIES:
        s = pack_rows(sequences, row_len, strategy=strategy, pad_id=pad_id, bos_id=bos_id,
                      buffer_size=buffer_size).stats
        report.append({
            "strategy": strategy,
            "rows": s.rows,
            "utilization %": round(100 * s.utilization, 2),
            "padded %": round(100 * s.padded_fraction, 2),
            "cropped %": round(100 * s.cropped_fraction, 2),
            "truncated": s.truncated,
            "supervised lost": s.supervised_lost,
            "supervised lost %": round(100 * s.supervised_lost / s.supervised, 2) if s.supervised else 0.0,
        })
    return report


def targets(packed: Packed, loss_mode: str = "mid") -> np.ndarray:
    """Next-token targets (rows, row_len - 1) int64, -1 where no loss is taken.

    `mid` trains on every real token (nanochat midtraining: the whole stream, user turns and tool
    outputs included); `sft` only where the *target* token is supervised (mask[:, 1:] == 1). Padding
    targets are ignored in both.
    """
    if loss_mode not in LOSS_MODES:
        raise ValueError(f"unknown loss mode {loss_mode!r}; choose 'mid' or 'sft'")
    out = packed.ids[:, 1:].astype(np.int64)
    ignore = packed.pad[:, 1:].copy()
    if loss_mode == "sft":
        ignore |= packed.mask[:, 1:] == 0
    out[ignore] = IGNORE_INDEX
    return out


def trained_tokens(packed: Packed, loss_mode: str) -> int:
    """How many targets the loss is taken on in this loss mode."""
    return int((targets(packed, loss_mode) != IGNORE_INDEX).sum())


def batches(packed: Packed, batch_size: int, *, loss_mode: str = "mid", seed: int | None = None,
            drop_last: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One pass over the rows as (inputs, targets), int64 arrays of shape (batch, row_len - 1).

    With a seed the rows come in a seeded random order; without, in packing order.
    """
    inputs_all = packed.ids[:, :-1].astype(np.int64)
    targets_all = targets(packed, loss_mode)
    order = np.arange(len(packed))
    if seed is not None:
        order = np.random.default_rng(seed).permutation(len(packed))
    stop = len(order) - (len(order) % batch_size if drop_last else 0)
    for start in range(0, stop, batch_size):
        index = order[start:start + batch_size]
        yield inputs_all[index], targets_all[index]
