"""A toy joint SID method: a tokenizer trained in alternation with the generator, its codes pushed mid-training.

The shape ETEGRec needs (METHODS.md): a tokenizer phase and a generator phase per cycle on the phased
``Trainer``, the items' SIDs recomputed after every tokenizer phase, made unique and handed to the
generator with ``set_codes``, and an alignment term reading the generator's encoder states.
"""

import numpy as np
import pytest
import torch
from torch import nn

from bench.core.method import FitContext
from bench.data.dataset import load_dataset
from bench.data.protocol import Protocol, Split
from bench.eval.evaluator import Evaluator
from bench.nn.train import Phase, Trainer
from bench.sid.collisions import with_collision_token
from bench.sid.generator import Generator, GeneratorConfig
from bench.sid.pipeline import SMOKE_GENERATOR
from bench.sid.stages import encode_items

LEVELS, CODES = 2, 16
EXAMPLES = 3072  # of the ~26k training prefixes: 12 steps an epoch keep the test fast on a CPU


class ToyTokenizer(nn.Module):
    """Linear encoder + residual nearest-codeword assignment + linear decoder over fixed item vectors."""

    def __init__(self, item_vectors: np.ndarray, d_model: int, dim: int = 8):
        super().__init__()
        self.register_buffer("item_vectors", torch.as_tensor(item_vectors, dtype=torch.float32))
        self.encoder = nn.Linear(item_vectors.shape[1], dim)
        self.decoder = nn.Linear(dim, item_vectors.shape[1])
        self.codebooks = nn.Parameter(torch.randn(LEVELS, CODES, dim) * 0.1)
        self.align = nn.Linear(d_model, dim)  # the generator's pooled encoder state -> the latent space

    def quantise(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Latents [N, dim], codes [N, LEVELS] and the codebook + commitment loss of ``items``."""
        z = self.encoder(self.item_vectors[items])
        residual, codes, loss = z, [], z.new_zeros(())
        for book in self.codebooks:
            code = torch.cdist(residual.detach(), book).argmin(1)
            chosen = book[code]
            loss = loss + (residual.detach() - chosen).pow(2).mean()  # codebook
            loss = loss + 0.25 * (residual - chosen.detach()).pow(2).mean()  # commitment
            residual = residual - chosen.detach()
            codes.append(code)
        return z, torch.stack(codes, 1), loss

    def loss(self, items: torch.Tensor, pooled_states: torch.Tensor) -> torch.Tensor:
        z, _, vq = self.quantise(items)
        recon = (self.decoder(z) - self.item_vectors[items]).pow(2).mean()
        return recon + vq + 0.1 * (self.align(pooled_states) - z).pow(2).mean()

    @torch.no_grad()
    def codes(self) -> np.ndarray:
        return self.quantise(torch.arange(len(self.item_vectors)))[1].numpy()


def unique_codes(raw: np.ndarray) -> np.ndarray:
    """The collision post-step with the collision token always present (0 where an item's codes are its own)."""
    return with_collision_token(raw, len(raw))[0]


@pytest.fixture(scope="module")
def split():
    return Split(load_dataset("synthetic"), Protocol())


def test_a_toy_joint_method_alternates_phases_refreshes_codes_and_decodes_only_current_sids(split):
    vectors, _ = encode_items("text-tfidf", {"dim": 16}, split, None)
    cfg = GeneratorConfig(**{**SMOKE_GENERATOR, "eval_every": 2, "patience": 10})  # no early stop: both cycles run
    ctx = FitContext(device=torch.device("cpu"), seed=0, valid=Evaluator(split, "valid"))
    torch.manual_seed(0)
    tokenizer = ToyTokenizer(vectors, cfg.d_model)
    initial = unique_codes(tokenizer.codes())
    # the extra level's capacity is fixed at build time: n_items covers any collision group
    gen = Generator(cfg).setup(split, initial, [CODES] * LEVELS + [split.n_items], ctx)
    events, refreshed = [], []

    def tokenizer_loss(batch):
        histories, users, targets = batch
        _, out = gen.model_.loss(histories, users, targets, return_states=True)
        mask = out.encoder_mask[..., None].float()
        pooled = (out.encoder_states * mask).sum(1) / mask.sum(1)
        return tokenizer.loss(targets, pooled)

    def refresh_codes():
        codes = unique_codes(tokenizer.codes())
        gen.set_codes(codes)
        refreshed.append(codes)
        events.append("set_codes")

    def generator_starts():
        events.append("generator")  # on the codes just pushed, in the model and in the trie
        assert np.array_equal(gen.model_.sid_codes().numpy(), refreshed[-1])
        assert torch.equal(gen.trie_.lookup(torch.from_numpy(refreshed[-1])), torch.arange(split.n_items))

    phases = [Phase("tokenizer", tokenizer.parameters, tokenizer_loss, epochs=1, lr=1e-2,
                    on_start=lambda: events.append("tokenizer"), on_end=refresh_codes),
              gen.phase(on_start=generator_starts)]
    joint = nn.ModuleDict({"tokenizer": tokenizer, "generator": gen.model_})  # the best checkpoint holds both
    examples = tuple(t[:EXAMPLES] for t in gen.examples(split))
    Trainer(cfg, ctx, "joint").fit(joint, examples, phases=phases, cycles=2, validate=gen.validation(ctx))

    assert [(p["phase"], p["cycle"], p["epoch"]) for p in ctx.curve] == [
        ("tokenizer", 0, 0), ("generator", 0, 1), ("tokenizer", 1, 2), ("generator", 1, 3)]
    assert ["ndcg@10" in p for p in ctx.curve] == [False, True] * 2  # validated after each cycle
    assert events == ["tokenizer", "set_codes", "generator"] * 2
    # each tokenizer phase moved some items
    assert not np.array_equal(refreshed[0], initial) and not np.array_equal(refreshed[1], refreshed[0])
    facts = ctx.extra["joint"]
    assert {name: v["epochs_run"] for name, v in facts["phases"].items()} == {"tokenizer": 2, "generator": 2}

    # the best checkpoint is restored with the codes it was validated with, and the trie follows them
    current = gen.model_.sid_codes()
    assert np.array_equal(current.numpy(), refreshed[facts["best_cycle"]])
    histories, _ = split.eval_inputs("test")
    histories, users = torch.from_numpy(histories[:64]), torch.arange(64)
    ranked = gen.rank(histories, users, 20)
    assert (ranked >= 0).all()
    assert torch.equal(gen.trie_.lookup(current[ranked.flatten()]), ranked.flatten())
