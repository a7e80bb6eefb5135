"""TIGER: text embedding + RQ-VAE (3 x 256) + the shared T5-style generator."""

from __future__ import annotations

from bench.sid.pipeline import sid_method

Tiger = sid_method("tiger", "text", "rqvae", "TIGER: text embedding + RQ-VAE (3 x 256) + T5-style generator")
# the unified model's hybrid distances (Lin et al.) on TIGER's RQ-VAE: the same idea on the generative path
TigerHybrid = sid_method("tiger-hybrid", "text", "rqvae",
                         "TIGER with the unified model's hybrid quantiser distances (cosine, cosine, l2)",
                         tokenizer_params={"distance": "cosine,cosine,l2"})
