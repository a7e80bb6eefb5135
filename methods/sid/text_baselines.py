"""Text-vector SID baselines on the shared generator: residual and hierarchical k-means, LSH, random and published indexes."""

from __future__ import annotations

from bench.sid.pipeline import sid_method

RQKMeansT5 = sid_method("rqkmeans-t5", "text", "rqkmeans", "Text embedding + residual k-means + T5-style generator")


HKMeansT5 = sid_method("hkmeans-t5", "text", "hkmeans", "Text embedding + hierarchical k-means + T5-style generator")


LSHT5 = sid_method("lsh-t5", "text", "lsh", "Text embedding + random-hyperplane LSH + T5-style generator")


RandomT5 = sid_method("random-t5", "none", "random", "Random unique IDs + T5-style generator (TIGER's ablation floor)")


PrecomputedT5 = sid_method("precomputed-t5", "none", "precomputed",
                           "SIDs from an index file (tok_index / tok_path) + T5-style generator",
                           tokenizer_params={"index": "rqvae_native"})
