"""Shared neural building blocks: one Transformer block, one sequence encoder, one item-field embedding.

Every sequential model (SASRec, BERT4Rec, S3-Rec, FAMAE, the SID generator's
encoder) uses these, so a fix or a speed-up lands everywhere at once.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    """Pre-norm Transformer block: self-attention (SDPA) and a GELU feed-forward, with residuals."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float, attn_dropout: float):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.n_heads = n_heads
        self.attn_dropout = attn_dropout
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """``x`` [B, L, d]; ``allowed`` [B, 1, L, L] boolean: query i may attend to key j."""
        b, length, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, length, 3, self.n_heads, d // self.n_heads).unbind(2)
        attn = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=allowed,
            dropout_p=self.attn_dropout if self.training else 0.0,
        )
        x = x + self.drop(self.proj(attn.transpose(1, 2).reshape(b, length, d)))
        return x + self.drop(self.ff(self.norm2(x)))


class SequenceEncoder(nn.Module):
    """A stack of ``Block``s over item vectors plus learned positions; causal or bidirectional."""

    def __init__(self, d_model: int, n_layers: int, n_heads: int, d_ff: int, max_len: int,
                 dropout: float, attn_dropout: float | None = None, causal: bool = True,
                 init_std: float | None = None):
        super().__init__()
        self.causal = causal
        self.pos = nn.Embedding(max_len, d_model)
        if init_std:
            nn.init.normal_(self.pos.weight, std=init_std)
        self.drop = nn.Dropout(dropout)
        attn_dropout = dropout if attn_dropout is None else attn_dropout
        self.blocks = nn.ModuleList(Block(d_model, n_heads, d_ff, dropout, attn_dropout) for _ in range(n_layers))
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
            self.register_buffer(f"field_{f}", torch.as_tensor(np.asarray(fields[f]), dtype=torch.long), persistent=False)
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
