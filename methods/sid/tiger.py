"""TIGER: text embedding + RQ-VAE (3 x 256) + the shared T5-style generator."""

from __future__ import annotations

from bench.sid.pipeline import sid_method

Tiger = sid_method("tiger", "text", "rqvae", "TIGER: text embedding + RQ-VAE (3 x 256) + T5-style generator")
