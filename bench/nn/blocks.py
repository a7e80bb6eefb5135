"""Shared neural building blocks: one Transformer block (and its decoder variant), one sequence encoder,
one item-field embedding, and the selection of the positions a loss counts.

Every sequential model (SASRec, BERT4Rec, S3-Rec, FAMAE, the SID generator's
encoder and decoder) uses these, so a fix or a speed-up lands everywhere at once.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, n_heads: int, allowed: torch.Tensor | None = None,
           causal: bool = False, dropout: float = 0.0) -> torch.Tensor:
    """Multi-head SDPA on packed heads: ``q`` [B, Lq, h*dh], ``k``/``v`` [B, Lk, h*dh] -> [B, Lq, h*dh].

    ``allowed`` is a boolean mask broadcastable to [B, h, Lq, Lk] (True: may attend);
    ``causal`` lets query i see keys up to i instead.
    """
    b, lq, inner = q.shape
    lk, d_head = k.shape[1], inner // n_heads
    out = F.scaled_dot_product_attention(
        q.view(b, lq, n_heads, d_head).transpose(1, 2),
        k.view(b, lk, n_heads, d_head).transpose(1, 2),
        v.view(b, lk, n_heads, d_head).transpose(1, 2),
        attn_mask=allowed, dropout_p=dropout, is_causal=causal,
    )
    return out.transpose(1, 2).reshape(b, lq, inner)


def feed_forward(d_model: int, d_ff: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))


def attention_size(d_model: int, n_heads: int, d_head: int | None) -> int:
    """Attention's inner size ``n_heads * d_head``; ``d_head`` defaults to ``d_model // n_heads``."""
    if d_head is None:
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads}), or give d_head")
        return d_model
    if d_head < 1:
        raise ValueError(f"d_head must be >= 1, found {d_head}")
    return n_heads * d_head


class Block(nn.Module):
    """Pre-norm Transformer block: self-attention (SDPA) and a GELU feed-forward, with residuals.

    ``d_head`` sets the per-head size when the attention's inner size ``n_heads * d_head``
    should differ from ``d_model`` (T5/TIGER: 6 heads of 64 with d_model 128). ``cross``
    adds the cross-attention layers of ``DecoderBlock`` (created between the two, so
    a seed gives the same weights as always).
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float, attn_dropout: float,
                 d_head: int | None = None, cross: bool = False):
        super().__init__()
        self.inner = attention_size(d_model, n_heads, d_head)
        self.n_heads = n_heads
        self.attn_dropout = attn_dropout
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * self.inner)
        self.proj = nn.Linear(self.inner, d_model)
        if cross:
            self.norm_cross = nn.LayerNorm(d_model)
            self.cross_q = nn.Linear(d_model, self.inner)
            self.cross_kv = nn.Linear(d_model, 2 * self.inner)
            self.cross_proj = nn.Linear(self.inner, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = feed_forward(d_model, d_ff)
        self.drop = nn.Dropout(dropout)

    def _dropout(self) -> float:
        return self.attn_dropout if self.training else 0.0

    def _self_attend(self, x: torch.Tensor, allowed: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        q, k, v = self.qkv(self.norm1(x)).split(self.inner, dim=-1)
        return x + self.drop(self.proj(attend(q, k, v, self.n_heads, allowed, causal=causal, dropout=self._dropout())))

    def _feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.ff(self.norm2(x)))

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """``x`` [B, L, d]; ``allowed`` [B, 1, L, L] boolean: query i may attend to key j."""
        return self._feed_forward(self._self_attend(x, allowed))


class DecoderBlock(Block):
    """Pre-norm decoder block: causal self-attention, cross-attention to encoder states, GELU feed-forward.

    Cross-attention reads ``group`` consecutive decoder rows per encoder row, so
    beam search can decode ``beam`` hypotheses per user against one copy of the
    encoder states (the beams' queries are simply stacked along the query axis).
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float, attn_dropout: float,
                 d_head: int | None = None):
        super().__init__(d_model, n_heads, d_ff, dropout, attn_dropout, d_head, cross=True)

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-attention keys and values [B, S, inner] of encoder states ``memory`` [B, S, d]."""
        k, v = self.cross_kv(memory).split(self.inner, dim=-1)
        return k, v

    def forward(self, x: torch.Tensor, memory_kv: tuple[torch.Tensor, torch.Tensor],
                memory_allowed: torch.Tensor, group: int = 1) -> torch.Tensor:
        """``x`` [B*group, T, d]; ``memory_kv`` from ``memory_kv`` ([B, S, inner] each);
        ``memory_allowed`` [B, 1, 1, S] boolean (False: padding)."""
        n, t, _ = x.shape
        x = self._self_attend(x, causal=True)
        q = self.cross_q(self.norm_cross(x)).reshape(n // group, group * t, self.inner)
        attn = attend(q, *memory_kv, self.n_heads, memory_allowed, dropout=self._dropout())
        x = x + self.drop(self.cross_proj(attn.reshape(n, t, self.inner)))
        return self._feed_forward(x)


class SequenceEncoder(nn.Module):
    """A stack of ``Block``s over item vectors plus learned positions; causal or bidirectional."""

    def __init__(self, d_model: int, n_layers: int, n_heads: int, d_ff: int, max_len: int,
                 dropout: float, attn_dropout: float | None = None, causal: bool = True,
                 init_std: float | None = None, d_head: int | None = None):
        super().__init__()
        self.causal = causal
        self.pos = nn.Embedding(max_len, d_model)
        if init_std:
            nn.init.normal_(self.pos.weight, std=init_std)
        self.drop = nn.Dropout(dropout)
        attn_dropout = dropout if attn_dropout is None else attn_dropout
        self.blocks = nn.ModuleList(
            Block(d_model, n_heads, d_ff, dropout, attn_dropout, d_head) for _ in range(n_layers)
        )
        self.norm = nn.LayerNorm(d_model)

    def attention_mask(self, is_pad: torch.Tensor) -> torch.Tensor:
        """[B, 1, L, L]: no attention to padding (or to the future if causal); a position always sees itself."""
        length = is_pad.shape[1]
        allowed = ~is_pad[:, None, None, :]
        if self.causal:
            allowed = allowed & torch.ones(length, length, dtype=torch.bool, device=is_pad.device).tril()
        return allowed | torch.eye(length, dtype=torch.bool, device=is_pad.device)

    def forward(self, item_vectors: torch.Tensor, is_pad: torch.Tensor) -> torch.Tensor:
        """``item_vectors`` [B, L, d] (right-aligned), ``is_pad`` [B, L] -> hidden states [B, L, d]."""
        length = item_vectors.shape[1]
        positions = torch.arange(length, device=item_vectors.device)
        x = self.drop(item_vectors + self.pos(positions)[None])
        allowed = self.attention_mask(is_pad)
        for block in self.blocks:
            x = block(x, allowed)
        return self.norm(x)


class ItemEmbedding(nn.Module):
    """Item vectors as the sum of an ID embedding and embeddings of the item's structured fields.

    With no fields this is a plain ID embedding. Row ``n_items`` is padding and
    rows after it are special tokens (e.g. a mask), all ID-only.
    """

    def __init__(self, n_items: int, d_model: int, n_special: int = 1,
                 fields: dict[str, np.ndarray] | None = None, bags: dict[str, np.ndarray] | None = None,
                 vocab_sizes: dict[str, int] | None = None, use_id: bool = True, init_std: float | None = None):
        super().__init__()
        self.n_items = n_items
        self.use_id = use_id
        self.ids = nn.Embedding(n_items + n_special, d_model)
        init_std = init_std or d_model ** -0.5
        nn.init.normal_(self.ids.weight, std=init_std)
        self.field_names = sorted(fields or {})
        self.bag_names = sorted(bags or {})
        vocab_sizes = vocab_sizes or {}
        self.field_tables = nn.ModuleDict(
            {f: nn.Embedding(vocab_sizes[f] + 1, d_model) for f in self.field_names + self.bag_names}
        )
        for table in self.field_tables.values():
            nn.init.normal_(table.weight, std=init_std)
        for f in self.field_names:
            self.register_buffer(f"field_{f}", torch.as_tensor(np.asarray(fields[f]), dtype=torch.long),
                                 persistent=False)
        for f in self.bag_names:
            self.register_buffer(f"bag_{f}", torch.as_tensor(np.asarray(bags[f]), dtype=torch.long), persistent=False)

    def table(self) -> torch.Tensor:
        """All rows [n_items + n_special, d]: fused item vectors, then ID-only special rows."""
        weight = self.ids.weight
        if not self.field_names and not self.bag_names:
            return weight
        items = weight[: self.n_items] if self.use_id else torch.zeros_like(weight[: self.n_items])
        for f in self.field_names:
            items = items + self.field_tables[f](getattr(self, f"field_{f}"))
        for f in self.bag_names:
            codes = getattr(self, f"bag_{f}")
            present = (codes > 0).float()
            summed = (self.field_tables[f](codes) * present[..., None]).sum(1)
            items = items + summed / present.sum(1, keepdim=True).clamp(min=1)
        return torch.cat([items, weight[self.n_items:]])

    def forward(self, item_ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(item_ids, self.table())


def scaled(x: torch.Tensor) -> torch.Tensor:
    """Multiply input embeddings by sqrt(d), as SASRec and the Transformer do."""
    return x * math.sqrt(x.shape[-1])


# whether torch.compile is tracing the caller: torch.compiler.is_compiling since torch 2.3, dynamo's own before
_is_compiling = getattr(torch.compiler, "is_compiling", None) or torch._dynamo.is_compiling

IGNORE = -100  # the label of a position that takes no part in a loss (F.cross_entropy's default ignore_index)


def counted(keep: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each of ``tensors`` [B, L, ...] at the positions where ``keep`` [B, L] is true, as rows [N, ...], then
    ``keep`` itself as [N]: what a loss over positions scores.

    Eager, only the kept positions (boolean indexing: the fewest rows to score). While ``torch.compile``
    traces (``run --compile``), every position, so that no shape depends on the data: the step is one graph,
    which ``reduce-overhead`` replays as one CUDA graph instead of recording one per count of positions. The
    caller leaves the other rows out (``IGNORE`` labels, or ``masked_mean`` with the returned ``keep``), so
    both give the same loss.
    """
    if _is_compiling():
        return (*(t.flatten(0, 1) for t in tensors), keep.flatten())
    return (*(t[keep] for t in tensors), keep[keep])


def masked_mean(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``keep`` is true; zero (with a gradient path) when nothing is kept."""
    keep = keep.to(values.dtype)
    return (values * keep).sum() / keep.sum().clamp(min=1)
