"""The G-stage shared by every SID method: a T5-style encoder-decoder that generates the next item's SID.

Pipeline: item encoder (E) -> tokenizer (Q, ``codes [n_items, L]``) -> this
generator (G) -> evaluator. ``Generator.fit(split, sid_codes, codebook_sizes,
ctx)`` trains on every prefix of the training sequences; ``Generator.rank``
decodes ranked item lists with a batched beam search, constrained by default
to the SIDs of real items through a prefix trie held as dense tensors.

A method that trains its tokenizer with the generator (ETEGRec) uses the
pieces of ``fit`` instead: ``setup`` (build + record), ``examples``, ``phase``
(the generator's ``Phase`` for the phased ``Trainer``) and ``set_codes``,
which replaces the items' SIDs mid-training within the codebook sizes given at
build time and rebuilds the trie, so beam search only returns current SIDs.
``SIDGenerator.forward(..., return_states=True)`` exposes the encoder's and
decoder's states for alignment losses. The codes are part of the model's state
dict, so a restored checkpoint brings back the codes it was trained with (and
``Generator`` rebuilds its trie from them).

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
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.core.device import seed_everything
from bench.core.errors import ConfigError
from bench.core.options import check_numbers
from bench.core.method import FitContext
from bench.data.protocol import Split
from bench.nn.blocks import DecoderBlock, SequenceEncoder
from bench.nn.train import Phase, TrainConfig, Trainer
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
    # LETTER's ranking-guided generation loss divides the logits by tau (1.0: plain cross-entropy)
    tau: float = 1.0
    # ours: decode only SIDs of real items (TIGER decoded freely and reported invalid IDs)
    constrained: bool = True
    # the output layer reuses the code tokens' input embeddings (ETEGRec's per-level tables, tied); False: its own
    tie_embeddings: bool = False
    # ours: optimisation
    epochs: int = 150
    batch_size: int = 1024
    lr: float = 2e-3
    weight_decay: float = 0.01
    schedule: str = "cosine"
    warmup_steps: int = 500
    eval_every: int = 5
    patience: int = 3  # validations, i.e. 15 epochs without improvement

    def __post_init__(self) -> None:
        super().__post_init__()
        check_numbers(vars(self), "", names=("tau",))


class GeneratorOutput(NamedTuple):
    """Teacher-forced logits with the states behind them, for alignment losses (``return_states=True``)."""

    logits: torch.Tensor  # [B, L, n_codes]; step l has only level l's codes (others -inf)
    encoder_states: torch.Tensor  # [B, S, d]: the encoder's last states (after its final norm)
    encoder_mask: torch.Tensor  # [B, S] bool: True where a token is attended (not padding)
    decoder_states: torch.Tensor  # [B, L, d]: the decoder's last states, step l predicts level l


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
        self.tau = float(cfg.tau)
        starts = [0, *np.cumsum(sizes).tolist()]
        self.level_ranges = list(zip(starts[:-1], starts[1:]))
        n_codes = starts[-1]
        self.pad, self.bos = n_codes, n_codes + 1
        self.user_base = n_codes + 2
        self.register_buffer("offsets", torch.tensor(starts[:-1], dtype=torch.long), persistent=False)
        # [n_items + 1, L]: item i's tokens, the pad row all PAD; in the state dict, so a restored checkpoint
        # brings back the codes it was trained with
        item_tokens = torch.full((len(sid_codes) + 1, self.n_levels), self.pad, dtype=torch.long)
        self.register_buffer("item_tokens", item_tokens)
        self.set_codes(sid_codes)
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
        self.head = None if cfg.tie_embeddings else nn.Linear(d, n_codes, bias=False)

    def out_weight(self) -> torch.Tensor:
        """The output layer [n_codes, d]: its own, or the code tokens' embedding rows when tied."""
        return self.tokens.weight[:self.pad] if self.head is None else self.head.weight

    def check_codes(self, sid_codes: torch.Tensor | np.ndarray) -> torch.Tensor:
        """``sid_codes`` [n_items, L] as a long tensor, checked against the capacity fixed at construction.

        The codebook sizes given at construction are the capacity: the vocabulary and the output layer keep
        their size, so the codes of a tokenizer trained with the generator must stay within them.
        """
        codes = torch.as_tensor(np.asarray(sid_codes.cpu()) if isinstance(sid_codes, torch.Tensor) else sid_codes)
        n_items = len(self.item_tokens) - 1
        if codes.shape != (n_items, self.n_levels) or codes.is_floating_point() or codes.is_complex():
            raise ConfigError(f"SID codes must be integers [n_items={n_items}, n_levels={self.n_levels}] (the "
                              f"generator's capacity), found {codes.dtype} {tuple(codes.shape)}; build a new "
                              "generator for another number of items or levels")
        codes = codes.long()
        for level, size in enumerate(self.codebook_sizes):
            column = codes[:, level]
            if n_items and (column.min() < 0 or column.max() >= size):
                raise ConfigError(f"SID codes of level {level} must lie in [0, {size}) (the codebook sizes "
                                  f"{self.codebook_sizes} fixed when the generator was built), found "
                                  f"[{int(column.min())}, {int(column.max())}]; build the generator with larger "
                                  "codebook sizes")
        return codes

    def set_codes(self, sid_codes: torch.Tensor | np.ndarray) -> None:
        """Replace the items' SIDs [n_items, L] in place (unique or not: only ``Generator``'s trie needs that)."""
        self.item_tokens[:-1] = self.check_codes(sid_codes).to(self.item_tokens.device) + self.offsets

    def sid_codes(self) -> torch.Tensor:
        """The items' current SIDs [n_items, L] (level codes, without the token offsets)."""
        return self.item_tokens[:-1] - self.offsets

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

    def forward(self, histories: torch.Tensor, users: torch.Tensor, targets: torch.Tensor,
                return_states: bool = False) -> torch.Tensor | GeneratorOutput:
        """Teacher-forced logits [B, L, n_codes] for target items [B]; step l has only level l's codes.

        With ``return_states``, a ``GeneratorOutput``: the logits with the encoder's last states and padding
        mask and the decoder's states (ETEGRec aligns a pooled encoder state with the target's code).
        """
        memory, allowed = self.encode(histories, users)
        target_tokens = self.item_tokens[targets]
        bos = torch.full_like(target_tokens[:, :1], self.bos)
        hidden = self.decode(torch.cat([bos, target_tokens[:, :-1]], dim=1), self.memory_kv(memory), allowed)
        logits = (hidden @ self.out_weight().T).masked_fill(self.off_level, float("-inf"))
        if return_states:
            return GeneratorOutput(logits, memory, allowed[:, 0, 0, :], hidden)
        return logits

    def loss(self, histories: torch.Tensor, users: torch.Tensor, targets: torch.Tensor,
             return_states: bool = False) -> torch.Tensor | tuple[torch.Tensor, GeneratorOutput]:
        """Mean cross-entropy over the L target tokens (each a softmax over its level's codes), of the logits
        divided by ``tau`` (LETTER's ranking-guided loss; 1.0 leaves them as they are).

        With ``return_states``, ``(loss, GeneratorOutput)``, so an alignment loss reuses the same pass.
        """
        out = self(histories, users, targets, return_states=return_states)
        logits = out.logits if return_states else out
        labels = self.item_tokens[targets]
        scores = logits.flatten(0, 1).float()
        loss = F.cross_entropy(scores if self.tau == 1.0 else scores / self.tau, labels.flatten())
        return (loss, out) if return_states else loss

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
            return F.log_softmax((hidden @ self.out_weight()[start:end].T).float(), dim=-1)

        return beam_search(step_logprobs, trie, len(histories), beam, self.n_levels, constrained)


class Generator:
    """The G-stage a SID method holds: ``fit`` on a split and the items' SIDs, then ``rank`` for the Evaluator."""

    def __init__(self, config: GeneratorConfig | None = None):
        self.config = config if config is not None else GeneratorConfig()

    def build(self, split: Split, sid_codes: np.ndarray, codebook_sizes: Sequence[int],
              device: torch.device | str) -> "Generator":
        """Trie and (untrained) model on ``device``; ``codebook_sizes`` is the capacity ``set_codes`` keeps."""
        sid_codes = np.asarray(sid_codes)
        if sid_codes.ndim != 2 or len(sid_codes) != split.n_items:
            raise ConfigError(f"sid_codes must be [n_items={split.n_items}, n_levels], found {sid_codes.shape}")
        if self.config.beam < 1:
            raise ConfigError(f"beam must be >= 1, found {self.config.beam}")
        self.device_ = torch.device(device)
        self.trie_ = SIDTrie(sid_codes, codebook_sizes, self.device_)  # checks ranges and uniqueness
        self.model_ = SIDGenerator(self.config, torch.from_numpy(sid_codes.astype(np.int64)), codebook_sizes,
                                   split.protocol.history_len).to(self.device_)
        # a loaded state dict (the Trainer's best checkpoint) may hold other codes: the trie follows them
        self.model_.register_load_state_dict_post_hook(self._codes_loaded)
        return self

    def setup(self, split: Split, sid_codes: np.ndarray, codebook_sizes: Sequence[int],
              ctx: FitContext) -> "Generator":
        """What ``fit`` does before training: a seeded ``build`` on ``ctx.device`` and the record's facts."""
        seed_everything(ctx.seed)  # the initial weights must not depend on whether earlier stages ran or were cached
        self.build(split, sid_codes, codebook_sizes, ctx.device)
        self.record(ctx)
        return self

    def record(self, ctx: FitContext) -> None:
        """The generator's size and decoding facts in ``ctx.extra`` (again after joint training: the trie changed)."""
        cfg = self.config
        ctx.extra["generator_params"] = sum(p.numel() for p in self.model_.parameters())
        ctx.extra["generator_decode"] = {
            "beam": cfg.beam, "constrained": cfg.constrained, "levels": self.model_.n_levels,
            "codebook_sizes": self.model_.codebook_sizes, "trie_nodes_per_level": self.trie_.n_nodes,
            "encoder_tokens": self.model_.encoder.pos.num_embeddings,
        }

    @staticmethod
    def examples(split: Split) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The training examples in ``loss``'s batch layout: (histories, users, targets), every training prefix."""
        histories, targets, users = (torch.from_numpy(a) for a in split.train_examples())
        return histories, users, targets

    def fit(self, split: Split, sid_codes: np.ndarray, codebook_sizes: Sequence[int], ctx: FitContext) -> "Generator":
        """Train on every prefix of the training sequences, keeping the best validation checkpoint."""
        self.setup(split, sid_codes, codebook_sizes, ctx)
        Trainer(self.config, ctx, "generator").fit(
            self.model_, self.examples(split), self.loss, validate=self.validation(ctx),
        )
        return self

    def validation(self, ctx: FitContext) -> Callable[[], dict[str, float]]:
        """The Trainer's ``validate``: this generator's validation metrics (beam search over the current trie)."""
        return lambda: ctx.valid.evaluate(self).means

    def loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The generator's loss on a batch of ``examples``; the ``loss_fn`` of ``fit`` and of ``phase``."""
        histories, users, targets = batch
        return self.model_.loss(histories, users, targets)

    def phase(self, name: str = "generator", epochs: int = 1, **options: Any) -> Phase:
        """The generator's ``Phase`` for a phased ``Trainer``: ``loss`` over the model's own parameters.

        ``options`` are ``Phase``'s (lr, weight_decay, schedule, warmup_steps, grad_clip, on_start, on_end).
        """
        return Phase(name, self.model_.parameters, self.loss, epochs, **options)

    def set_codes(self, sid_codes: np.ndarray | torch.Tensor) -> "Generator":
        """Replace the items' SIDs mid-training (e.g. after a tokenizer epoch): the model's codes and the trie.

        The codes must fit the codebook sizes given to ``build`` and be unique per item (run the collision
        post-step first); nothing changes when they do not.
        """
        codes = self.model_.check_codes(sid_codes)
        trie = SIDTrie(codes.numpy(), self.model_.codebook_sizes, self.device_)  # checks uniqueness
        self.model_.set_codes(codes)
        self.trie_ = trie
        return self

    def _codes_loaded(self, model: nn.Module, incompatible_keys: Any) -> None:
        """``load_state_dict``'s post-hook: rebuild the trie from the codes just loaded."""
        self.trie_ = SIDTrie(model.sid_codes(), model.codebook_sizes, self.device_)

    @torch.no_grad()
    def rank(self, histories: torch.Tensor, users: torch.Tensor, k: int) -> torch.Tensor:
        """Top-``k`` item indices [B, k] by beam search (beam = max(config.beam, k)); -1 where no item."""
        histories, users = histories.to(self.device_), users.to(self.device_)
        beam = max(self.config.beam, k)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device_.type == "cuda"):
            items, _ = self.model_.generate(histories, users, self.trie_, beam, self.config.constrained)
        return items[:, :k]
