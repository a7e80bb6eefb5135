"""Last-item kNN: no training; items ranked by cosine similarity of their vectors to the user's latest item.

The floor a SID method's generator must clear with the same item vectors: it
reads nothing but the most recent history item and the encoder's vectors
(cached, shared with the SID methods). Its test Recall@10 equals the
encoder's ``vector_recall@10`` proxy, which is this ranking (unless the
protocol excludes history items, which the proxy does not).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench import registry
from bench.method import FitContext, Method
from bench.protocol import Split
from bench.registry import register
from bench.sid import encode_items
from methods.sid import encoder_proxies, parse_options, resolve_encoder


@dataclass
class KNNConfig:
    encoder: str = "text"  # an encoder name; "text" is the dataset's text encoder
    encoder_options: str = ""  # "key=value;key=value" for the encoder


@register("method", "knn-last")
class LastItemKNN(Method):
    """Rank every item by cosine similarity to the latest history item (the item itself last)."""

    Config = KNNConfig

    def fit(self, split: Split, ctx: FitContext) -> "LastItemKNN":
        name = resolve_encoder(self.config.encoder, split.dataset.name)
        params = parse_options(self.config.encoder_options, registry.get("encoder", name), f"encoder {name}")
        with ctx.stage("encode"):
            vectors, encoded = encode_items(name, params, split, ctx)
        self.unit_ = F.normalize(torch.as_tensor(vectors, dtype=torch.float32, device=ctx.device), dim=-1)
        ctx.extra["sid"] = {"encoder": {"name": name, "params": params,
                                        **{k: encoded[k] for k in ("fit_seconds", "dim", "device", "cache_key",
                                                                   "cache_hit") if k in encoded}}}
        ctx.extra["proxy"] = encoder_proxies(encoded)
        ctx.curve.append({"epoch": 0, **ctx.valid.evaluate(self).means})
        return self

    def score(self, histories: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        last = histories[:, -1].to(self.unit_.device)  # the most recent item is always a real one
        scores = self.unit_[last] @ self.unit_.T
        scores[torch.arange(len(last), device=scores.device), last] = -torch.inf
        return scores
