"""LETTER (Wang et al., CIKM 2024) on the shared generator: its tokenizer trained here, and its authors' own SIDs.

LETTER-TIGER's generator has TIGER's sizes and no user tokens, as the shared
generator's defaults; its optimiser (AdamW 5e-4, 200 epochs, selection by
validation loss) is not taken: every SID method here trains the shared
generator the same way, so that only the SIDs differ. Duplicate SIDs left by
LETTER's own collision rounds go through the Hungarian post-step by default
(it keeps 4 levels, as LETTER's index has), recorded with how many items it moved.
"""

from __future__ import annotations

from bench.sid.pipeline import sid_method

Letter = sid_method("letter", "text", "letter",
                    "LETTER: text + RQ-VAE with collaborative (SASRec 32-d) and diversity losses + T5-style generator",
                    collisions="hungarian")
# the ranking-guided generation loss (LETTER's tau; its released script keeps 1.0, the paper sweeps 0.7 to 1.2)
LetterRank = sid_method("letter-rank", "text", "letter",
                        "LETTER with the ranking-guided generation loss (tau 0.8)",
                        generator={"tau": 0.8}, collisions="hungarian")
LetterNative = sid_method("letter-native", "none", "precomputed",
                          "LETTER's released Beauty SIDs (the letter_native index) + T5-style generator",
                          tokenizer_params={"index": "letter_native"}, collisions="hungarian")
