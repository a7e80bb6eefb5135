"""ReSID: FAMAE field embeddings + GAOQ + the generator at ReSID's sizes."""

from __future__ import annotations

from bench.sid.pipeline import sid_method

# ReSID's G-stage sizes (4 + 4 layers, d 128, FFN 512, 4 heads of 32, beam 50); the optimiser is the shared default
RESID_GENERATOR = {"n_heads": 4, "d_head": 32, "d_ff": 512, "beam": 50}


ReSID = sid_method("resid", "famae", "gaoq", "ReSID: FAMAE field embeddings + GAOQ + the generator at ReSID's sizes",
                   generator=RESID_GENERATOR)
