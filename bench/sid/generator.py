"""The G-stage shared by every SID method: a T5-style encoder-decoder that generates the next item's SID.

Pipeline: item encoder (E) -> tokenizer (Q, ``codes [n_items, L]``) -> this
generator (G) -> evaluator. ``Generator.fit(split, sid_codes, codebook_sizes,
ctx)`` trains on every prefix of the training sequences; ``Generator.rank``
decodes ranked item lists with a batched beam search, constrained by default
to the SIDs of real items through a prefix trie held as dense tensors.

Token layout (one vocabulary shared by encoder and decoder):

* code ``c`` of level ``l`` is token ``offset_l + c``, ``offset_l = sum(codebook_sizes[:l])``;
* then ``PAD`` (padding items, masked out of attention) and ``BOS`` (the decoder's start);
* then ``user_tokens`` hashed user tokens (``user index mod user_tokens``), if any.

The encoder reads the history's items flattened to their ``L`` tokens each
(``history_len * L`` tokens, most recent last), preceded by the user token;
the decoder reads ``[BOS, c_0, ..., c_{L-2}]`` and at step ``l`` scores only
level ``l``'s codes. "T5-style": pre-norm encoder-decoder with T5/TIGER sizes,
but learned absolute positions instead of T5's relative position bias, and
GELU feed-forwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.core.device import seed_everything
from bench.core.errors import ConfigError
from bench.core.method import FitContext
from bench.data.protocol import Split
from bench.nn.blocks import DecoderBlock, SequenceEncoder
from bench.nn.train import TrainConfig, Trainer
from bench.sid.trie import SIDTrie, beam_search


@dataclass
class GeneratorConfig(TrainConfig):
    """Model sizes are TIGER's (Rajput et al. 2023); optimisation is ours.

    TIGER trained 200k steps of batch 256 at lr 0.01 with an inverse-sqrt
    schedule, too slow for a benchmark; we train fewer, larger AdamW steps
    with warm-up and cosine decay, validating every ``eval_every`` epochs.
    """

    # TIGER's sizes
    d_model: int = 128
    n_enc_layers: int = 4
    n_dec_layers: int = 4
    n_heads: int = 6
    d_head: int = 64  # attention inner size n_heads * d_head = 384 != d_model, as T5
    d_ff: int = 1024
    dropout: float = 0.1
    user_tokens: int = 0  # 0: no user token; TIGER hashes users into 2,000 tokens
    beam: int = 20
    # ours: decode only SIDs of real items (TIGER decoded freely and reported invalid IDs)
    constrained: bool = True
    # ours: optimisation
    epochs: int = 150
    batch_size: int = 1024
    lr: float = 2e-3
    weight_decay: float = 0.01
    schedule: str = "cosine"
    warmup_steps: int = 500
    eval_every: int = 5
    patience: int = 3  # validations, i.e. 15 epochs without improvement


class SIDGenerator(nn.Module):
    """Encoder (shared ``Block``s, bidirectional) over history SID tokens; decoder generates the target SID."""

    def __init__(self, cfg: GeneratorConfig, sid_codes: torch.Tensor, codebook_sizes: Sequence[int],
                 history_len: int):
        super().__init__()
        sizes = [int(s) for s in codebook_sizes]
        self.n_levels = len(sizes)
        self.codebook_sizes = sizes
        self.history_len = history_len
        self.user_tokens = cfg.user_tokens
        starts = [0, *np.cumsum(sizes).tolist()]
        self.level_ranges = list(zip(starts[:-1], starts[1:]))
        n_codes = starts[-1]
        self.pad, self.bos = n_codes, n_codes + 1
        self.user_base = n_codes + 2
        offsets = torch.tensor(starts[:-1], dtype=torch.long)
        item_tokens = torch.cat([torch.as_tensor(sid_codes, dtype=torch.long) + offsets,
                                 torch.full((1, self.n_levels), self.pad, dtype=torch.long)])
        self.register_buffer("offsets", offsets, persistent=False)
        self.register_buffer("item_tokens", item_tokens, persistent=False)  # [n_items + 1, L], pad row -> PAD
        level_of_token = torch.repeat_interleave(torch.arange(self.n_levels), torch.tensor(sizes))
        off_level = level_of_token[None, :] != torch.arange(self.n_levels)[:, None]
        self.register_buffer("off_level", off_level, persistent=False)  # [L, n_codes]: not level l's code

        d = cfg.d_model
        self.tokens = nn.Embedding(self.user_base + cfg.user_tokens, d)
        nn.init.normal_(self.tokens.weight, std=0.02)
        enc_len = (1 if cfg.user_tokens else 0) + history_len * self.n_levels
        self.encoder = SequenceEncoder(d, cfg.n_enc_layers, cfg.n_heads, cfg.d_ff, enc_len, cfg.dropout,
                                       causal=False, init_std=0.02, d_head=cfg.d_head)
        self.dec_pos = nn.Embedding(self.n_levels, d)
        nn.init.normal_(self.dec_pos.weight, std=0.02)
        self.dec_drop = nn.Dropout(cfg.dropout)
        self.decoder = nn.ModuleList(
            DecoderBlock(d, cfg.n_heads, cfg.d_ff, cfg.dropout, cfg.dropout, cfg.d_head)
            for _ in range(cfg.n_dec_layers)
        )
        self.dec_norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, n_codes, bias=False)

    def encode(self, histories: torch.Tensor, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder states [B, S, d] of left-padded item histories [B, H], and the key mask [B, 1, 1, S]."""
        tokens = self.item_tokens[histories].flatten(1)
        if self.user_tokens:
            tokens = torch.cat([(self.user_base + users % self.user_tokens)[:, None], tokens], dim=1)
        is_pad = tokens == self.pad
        memory = self.encoder(self.tokens(tokens), is_pad)
        allowed = ~is_pad
        allowed[:, -1] = True  # the most recent token is a real item; never an all-masked row (NaN)
        return memory, allowed[:, None, None, :]

    def memory_kv(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each decoder layer's cross-attention keys and values, computed once per batch of users."""
        return [block.memory_kv(memory) for block in self.decoder]

    def decode(self, dec_tokens: torch.Tensor, memory_kv: list[tuple[torch.Tensor, torch.Tensor]],
               memory_allowed: torch.Tensor, group: int = 1) -> torch.Tensor:
        """Decoder states [B*group, T, d] of tokens [B*group, T] (``group`` consecutive rows per user)."""
        positions = torch.arange(dec_tokens.shape[1], device=dec_tokens.device)
        x = self.dec_drop(self.tokens(dec_tokens) + self.dec_pos(positions)[None])
        for block, kv in zip(self.decoder, memory_kv):
            x = block(x, kv, memory_allowed, group)
        return self.dec_norm(x)

    def forward(self, histories: torch.Tensor, users: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits [B, L, n_codes] for target items [B]; step l has only level l's codes."""
        memory, allowed = self.encode(histories, users)
        target_tokens = self.item_tokens[targets]
        bos = torch.full_like(target_tokens[:, :1], self.bos)
        hidden = self.decode(torch.cat([bos, target_tokens[:, :-1]], dim=1), self.memory_kv(memory), allowed)
        return self.head(hidden).masked_fill(self.off_level, float("-inf"))

    def loss(self, histories: torch.Tensor, users: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the L target tokens (each a softmax over its level's codes)."""
        logits = self(histories, users, targets)
        labels = self.item_tokens[targets]
        return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten())

    def generate(self, histories: torch.Tensor, users: torch.Tensor, trie: SIDTrie, beam: int,
                 constrained: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Beam search (items [B, beam], scores [B, beam]): one encoder pass, shared by all beams."""
        memory, allowed = self.encode(histories, users)
        memory_kv = self.memory_kv(memory)
        rows = len(histories) * beam
        bos = torch.full((rows, 1), self.bos, dtype=torch.long, device=histories.device)

        def step_logprobs(prefix_codes: torch.Tensor) -> torch.Tensor:
            level = prefix_codes.shape[1]
            tokens = torch.cat([bos, prefix_codes + self.offsets[:level]], dim=1)
            hidden = self.decode(tokens, memory_kv, allowed, group=beam)[:, -1]
            start, end = self.level_ranges[level]
            return F.log_softmax((hidden @ self.head.weight[start:end].T).float(), dim=-1)

        return beam_search(step_logprobs, trie, len(histories), beam, self.n_levels, constrained)


class Generator:
    """The G-stage a SID method holds: ``fit`` on a split and the items' SIDs, then ``rank`` for the Evaluator."""

    def __init__(self, config: GeneratorConfig | None = None):
        self.config = config if config is not None else GeneratorConfig()

    def build(self, split: Split, sid_codes: np.ndarray, codebook_sizes: Sequence[int],
              device: torch.device | str) -> "Generator":
        """Trie and (untrained) model on ``device``; ``fit`` calls this first."""
        sid_codes = np.asarray(sid_codes)
        if sid_codes.ndim != 2 or len(sid_codes) != split.n_items:
            raise ConfigError(f"sid_codes must be [n_items={split.n_items}, n_levels], found {sid_codes.shape}")
        if self.config.beam < 1:
            raise ConfigError(f"beam must be >= 1, found {self.config.beam}")
        self.device_ = torch.device(device)
        self.trie_ = SIDTrie(sid_codes, codebook_sizes, self.device_)  # checks ranges and uniqueness
        self.model_ = SIDGenerator(self.config, torch.from_numpy(sid_codes.astype(np.int64)), codebook_sizes,
                                   split.protocol.history_len).to(self.device_)
        return self

    def fit(self, split: Split, sid_codes: np.ndarray, codebook_sizes: Sequence[int], ctx: FitContext) -> "Generator":
        """Train on every prefix of the training sequences, keeping the best validation checkpoint."""
        seed_everything(ctx.seed)  # the initial weights must not depend on whether earlier stages ran or were cached
        self.build(split, sid_codes, codebook_sizes, ctx.device)
        cfg = self.config
        ctx.extra["generator_params"] = sum(p.numel() for p in self.model_.parameters())
        ctx.extra["generator_decode"] = {
            "beam": cfg.beam, "constrained": cfg.constrained, "levels": self.model_.n_levels,
            "codebook_sizes": self.model_.codebook_sizes, "trie_nodes_per_level": self.trie_.n_nodes,
            "encoder_tokens": self.model_.encoder.pos.num_embeddings,
        }
        histories, targets, users = (torch.from_numpy(a) for a in split.train_examples())
        Trainer(cfg, ctx, "generator").fit(
            self.model_, (histories, users, targets), self.loss, validate=lambda: ctx.valid.evaluate(self).means,
        )
        return self

    def loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        histories, users, targets = batch
        return self.model_.loss(histories, users, targets)

    @torch.no_grad()
    def rank(self, histories: torch.Tensor, users: torch.Tensor, k: int) -> torch.Tensor:
        """Top-``k`` item indices [B, k] by beam search (beam = max(config.beam, k)); -1 where no item."""
        histories, users = histories.to(self.device_), users.to(self.device_)
        beam = max(self.config.beam, k)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device_.type == "cuda"):
            items, _ = self.model_.generate(histories, users, self.trie_, beam, self.config.constrained)
        return items[:, :k]
