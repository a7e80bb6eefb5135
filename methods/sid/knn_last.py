"""Last-item kNN: no training; items ranked by cosine similarity of their vectors to the user's latest item.

The floor a SID method's generator must clear with the same item vectors: it
reads nothing but the most recent history item and the encoder's vectors
(cached, shared with the SID methods). Its test Recall@10 equals the
encoder's ``vector_recall@10`` proxy, which is this ranking, under either protocol.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.core.method import FitContext, Method
from bench.core.registry import register
from bench.data.protocol import Split
from bench.eval.proxy import last_item_scores
from bench.sid.pipeline import encode_with, encoder_proxies


@dataclass
class KNNConfig:
    encoder: str = "text"  # an encoder name; "text" is the dataset's text encoder
    encoder_options: str = ""  # "key=value;key=value" for the encoder


@register("method", "knn-last")
class LastItemKNN(Method):
    """Rank every item by cosine similarity to the latest history item (the item itself last)."""

    Config = KNNConfig

    def fit(self, split: Split, ctx: FitContext) -> "LastItemKNN":
        with ctx.stage("encode"):
            vectors, encoder = encode_with(self.config.encoder, self.config.encoder_options, split, ctx)
        self.unit_ = F.normalize(torch.as_tensor(vectors, dtype=torch.float32, device=ctx.device), dim=-1)
        ctx.extra["sid"] = {"kind": "vectors", "encoder": encoder}  # no tokenizer: the report does not count it as SID
        ctx.extra["proxy"] = encoder_proxies(encoder)
        return self

    def score(self, histories: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        return last_item_scores(self.unit_, histories[:, -1].to(self.unit_.device))
