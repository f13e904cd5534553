"""A small GPT for the midtraining smoke run, in the style of nanochat's model, small enough to read.

Choices, and why:

- **Rotary position embeddings (RoPE)** on queries and keys instead of a learned position table:
  no parameters, and relative positions are what matters when several conversations share a row.
- **RMSNorm without learned gains** (pre-norm, plus one before the head): the cheapest normalisation that
  trains stably; nanochat drops the gains too. Queries and keys are also normalised (QK-norm), which keeps
  attention logits bounded at the high learning rates a tiny model wants.
- **Causal attention through `F.scaled_dot_product_attention`**: PyTorch picks the fastest kernel for the
  device (flash attention on recent GPUs, a fused kernel on CPU).
- **Untied input and output embeddings**: reading a token and predicting the next one are different
  jobs, so each gets its own table (as in nanochat); at this size the second table costs little.
- **ReLU² MLP** (4x wide): one cheap elementwise op instead of GELU's, with sparse activations; nanochat
  and the modded-nanoGPT speedruns use it.
- **No biases**, zero-initialised output projections (each block starts as the identity, so depth does not
  disturb the first steps).

The loss uses `ignore_index=-1`: padding, and in SFT mode every unsupervised target, carries -1 (see
`kit.tokens.packing.targets`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    vocab_size: int = 4096
    sequence_len: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128

    def to_dict(self) -> dict:
        return asdict(self)


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.size(-1),))


def rotary_tables(seq_len: int, head_dim: int, base: float = 10000.0, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, each (1, 1, seq_len, head_dim // 2)."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim))
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32, device=device), inv_freq)
    return angles.cos()[None, None], angles.sin()[None, None]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (first half, second half) of each head's channels by position-dependent angles."""
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).type_as(x)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=False)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: list | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)
        q, k = rms_norm(apply_rotary(q, cos, sin)), rms_norm(apply_rotary(k, cos, sin))
        if cache is not None:  # generation: this layer's keys and values of the tokens before, then these
            if cache:
                k, v = torch.cat((cache[0], k), dim=2), torch.cat((cache[1], v), dim=2)
            cache[:] = [k, v]
        # new queries after cached keys see all of them: causal only among the T new tokens, which
        # generation reads either all at once on an empty cache or one at a time
        y = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.up = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.down = nn.Linear(4 * config.n_embd, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.relu(self.up(x)).square())


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.attn = CausalSelfAttention(config)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: list | None = None) -> torch.Tensor:
        x = x + self.attn(rms_norm(x), cos, sin, cache)
        return x + self.mlp(rms_norm(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        if config.n_embd % config.n_head or (config.n_embd // config.n_head) % 2:
            raise ValueError(f"n_embd {config.n_embd} must split into {config.n_head} heads of even size")
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        cos, sin = rotary_tables(config.sequence_len, config.n_embd // config.n_head)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        nn.init.normal_(self.wte.weight, std=1.0)
        nn.init.normal_(self.lm_head.weight, std=0.001)
        for block in self.blocks:
            for linear in (block.attn.qkv, block.mlp.up):
                bound = math.sqrt(3.0) / math.sqrt(linear.in_features)
                nn.init.uniform_(linear.weight, -bound, bound)
            nn.init.zeros_(block.attn.proj.weight)
            nn.init.zeros_(block.mlp.down.weight)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                reduction: str = "mean") -> torch.Tensor:
        """Logits (B, T, vocab) without targets; with targets the cross-entropy over targets != -1
        (`reduction="sum"` gives the summed loss, for bits per byte)."""
        T = idx.size(1)
        if T > self.config.sequence_len:
            raise ValueError(f"sequence of {T} tokens is longer than the model's {self.config.sequence_len}")
        cos, sin = self.cos[:, :, :T], self.sin[:, :, :T]
        x = rms_norm(self.wte(idx))
        for block in self.blocks:
            x = block(x, cos, sin)
        logits = self.lm_head(rms_norm(x)).float()
        if targets is None:
            return logits
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1,
                               reduction=reduction)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def estimate_flops_per_token(self) -> float:
        """Training FLOPs per token: 6 per weight of every matmul (forward 2, backward 4) plus attention
        scores and values (12 · layers · width · T, counted as in the PaLM paper); the embedding lookup
        is not a matmul and is left out."""
        c = self.config
        matmul_params = self.num_params() - self.wte.weight.numel()
        return 6.0 * matmul_params + 12.0 * c.n_layer * c.n_embd * c.sequence_len

    @torch.no_grad()
    def generate(self, ids: list[int], max_new_tokens: int, *, temperature: float = 1.0, top_k: int | None = None,
                 stop_ids: Iterable[int] = (), generator: torch.Generator | None = None):
        """Yield sampled token ids one at a time after the prompt `ids`, stopping after a token in
        `stop_ids`. temperature 0 is greedy. Keys and values are cached (a KV cache) until the context
        outgrows the model's sequence length; from there each token reads the last sequence_len afresh."""
        device = self.wte.weight.device
        stop = set(stop_ids)
        context = list(ids)
        caches: list[list] = [[] for _ in self.blocks]
        fresh = context  # the tokens the caches do not hold yet
        for _ in range(max_new_tokens):
            if len(context) <= self.config.sequence_len:
                logits = self._last_logits(torch.tensor([fresh], dtype=torch.long, device=device),
                                           len(context) - len(fresh), caches)
            else:  # past the rotary tables: read the last sequence_len tokens afresh, as before the cache
                window = torch.tensor([context[-self.config.sequence_len:]], dtype=torch.long, device=device)
                logits = self(window)[0, -1]
            if temperature == 0:
                token = int(logits.argmax())
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = F.softmax(logits, dim=-1)
                token = int(torch.multinomial(probs.cpu(), 1, generator=generator))
            context.append(token)
            fresh = [token]
            yield token
            if token in stop:
                return

    def _last_logits(self, idx: torch.Tensor, start: int, caches: list[list]) -> torch.Tensor:
        """The next-token logits after `idx`, which follows `start` tokens already in `caches` (one per
        block, filled here): each generated token costs one position, not the whole context again."""
        T = idx.size(1)
        cos, sin = self.cos[:, :, start:start + T], self.sin[:, :, start:start + T]
        x = rms_norm(self.wte(idx))
        for block, cache in zip(self.blocks, caches):
            x = block(x, cos, sin, cache)
        return self.lm_head(rms_norm(x[:, -1])).float()[0]
