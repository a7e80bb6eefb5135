import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.core.errors import ConfigError
from bench.core.method import FitContext
from bench.data.dataset import RawData, build_dataset
from bench.data.protocol import Protocol, Split
from bench.eval.evaluator import Evaluator
from bench.nn.blocks import Block
from bench.nn.train import TrainConfig, Trainer
from bench.sid.generator import Generator, GeneratorConfig
from bench.sid.trie import SIDTrie, beam_search

TINY = dict(d_model=32, n_enc_layers=1, n_dec_layers=1, n_heads=2, d_head=16, d_ff=64, dropout=0.0,
            batch_size=128, lr=1e-2, warmup_steps=0, schedule="constant", beam=20)

# hand-built trie: 5 items over two levels of 3 codes
HAND_CODES = np.array([[0, 0], [0, 2], [1, 1], [2, 0], [2, 1]])
LEVEL0 = torch.tensor([[0.5, 0.2, 0.3], [0.1, 0.1, 0.8]]).log()  # per user
LEVEL1 = torch.tensor([[0.6, 0.1, 0.3], [0.2, 0.7, 0.1], [0.25, 0.35, 0.4]]).log()  # by level-0 code


def fake_scorer(beam):
    """Fixed log-probs: level 0 by user (row // beam), level 1 by the prefix's level-0 code."""

    def step(prefix):
        if prefix.shape[1] == 0:
            return LEVEL0[torch.arange(len(prefix)) // beam]
        return LEVEL1[prefix[:, 0]]

    return step


def random_codes(n_items, sizes, seed=0):
    """Unique random code tuples [n_items, len(sizes)]."""
    flat = np.random.default_rng(seed).choice(math.prod(sizes), n_items, replace=False)
    return np.stack(np.unravel_index(flat, sizes), axis=1).astype(np.int64)


@pytest.fixture(scope="module")
def planted_split():
    """60 items; each user walks a fixed random permutation, so the next item is a function of the last."""
    rng = np.random.default_rng(0)
    successor = rng.permutation(60)
    sequences = {}
    for user in range(300):
        item, seq = int(rng.integers(60)), []
        for _ in range(int(rng.integers(6, 10))):
            seq.append(str(item))
            item = int(successor[item])
        sequences[f"u{user}"] = seq
    raw = RawData(sequences=sequences, items={}, item_order=[str(i) for i in range(60)])
    return Split(build_dataset("planted", raw, {"fields": []}), Protocol(history_len=5))


def test_constrained_beam_search_with_a_random_scorer_emits_only_distinct_real_items():
    sizes = [8, 8, 8]
    trie = SIDTrie(random_codes(300, sizes), sizes)
    generator = torch.Generator().manual_seed(0)

    def step(prefix):
        return torch.randn(len(prefix), sizes[prefix.shape[1]], generator=generator).log_softmax(-1)

    items, scores = beam_search(step, trie, batch=64, beam=20, n_levels=3)
    assert items.shape == scores.shape == (64, 20)
    assert (items >= 0).all() and (items < 300).all()
    assert all(len(set(row)) == 20 for row in items.tolist())
    assert (scores[:, :-1] >= scores[:, 1:]).all()


def test_beam_search_returns_the_exact_top_items_in_order_and_pads_with_minus_one():
    trie = SIDTrie(HAND_CODES, [3, 3])
    # user 0: 0 (.30), 1 (.15), 2 (.14), 4 (.105), 3 (.075); user 1: 4 (.28), 3 (.20), 2 (.07), 0 (.06), 1 (.03)
    items, scores = beam_search(fake_scorer(7), trie, batch=2, beam=7, n_levels=2)
    assert items.tolist() == [[0, 1, 2, 4, 3, -1, -1], [4, 3, 2, 0, 1, -1, -1]]
    expected = torch.tensor([[0.30, 0.15, 0.14, 0.105, 0.075], [0.28, 0.20, 0.07, 0.06, 0.03]]).log()
    torch.testing.assert_close(scores[:, :5], expected)
    assert torch.isneginf(scores[:, 5:]).all()
    items, _ = beam_search(fake_scorer(3), trie, batch=2, beam=3, n_levels=2)
    assert items.tolist() == [[0, 1, 2], [4, 3, 2]]


def test_unconstrained_beam_search_returns_minus_one_for_tuples_that_are_no_item():
    trie = SIDTrie(HAND_CODES, [3, 3])
    # user 0's tuples by score: (0,0) (0,2) (1,1) (2,2) (2,1) (2,0) (0,1) (1,0) (1,2)
    items, scores = beam_search(fake_scorer(9), trie, batch=2, beam=9, n_levels=2, constrained=False)
    assert items[0].tolist() == [0, 1, 2, -1, 4, 3, -1, -1, -1]
    assert torch.isfinite(scores).all()
    items, _ = beam_search(fake_scorer(4), trie, batch=2, beam=4, n_levels=2, constrained=False)
    assert items[0].tolist() == [0, 1, 2, -1]
    lookup = trie.lookup(torch.tensor([[0, 2], [2, 2], [2, 0], [1, 0]]))
    assert lookup.tolist() == [1, -1, 3, -1]


def test_trie_tables_and_errors():
    trie = SIDTrie(HAND_CODES, [3, 3])
    assert trie.n_nodes == [1, 3]
    assert trie.children[0].tolist() == [[0, 1, 2]]
    assert trie.children[1].tolist() == [[0, -1, 1], [-1, 2, -1], [3, 4, -1]]
    with pytest.raises(ConfigError, match="unique.*collision"):
        SIDTrie(np.array([[0, 1], [1, 1], [0, 1]]), [2, 2])
    with pytest.raises(ConfigError, match=r"level 1 must lie in \[0, 2\)"):
        SIDTrie(np.array([[0, 2]]), [2, 2])


def tiny_generator(split, sizes=(4, 4, 4), **overrides):
    cfg = GeneratorConfig(**{**TINY, **overrides})
    torch.manual_seed(0)
    gen = Generator(cfg).build(split, random_codes(split.n_items, list(sizes)), list(sizes), "cpu")
    gen.model_.eval()
    return gen


@pytest.mark.parametrize("user_tokens", [0, 7])
def test_generator_beams_are_valid_and_their_scores_match_the_teacher_forced_model(planted_split, user_tokens):
    gen = tiny_generator(planted_split, user_tokens=user_tokens)
    hist, _ = planted_split.eval_inputs("test")
    hist, users = torch.from_numpy(hist[:16]), torch.arange(16)
    ranked = gen.rank(hist, users, 10)
    assert ranked.shape == (16, 10) and (ranked >= 0).all()
    assert all(len(set(row)) == 10 for row in ranked.tolist())
    with torch.no_grad():
        items, scores = gen.model_.generate(hist, users, gen.trie_, beam=5)
        for j in range(5):  # a beam's score is the sum of its per-level log-probs under teacher forcing
            logp = gen.model_(hist, users, items[:, j]).log_softmax(-1)
            tokens = gen.model_.item_tokens[items[:, j]]
            torch.testing.assert_close(logp.gather(2, tokens[..., None]).sum((1, 2)), scores[:, j])


def test_decoder_step_does_not_see_future_target_tokens(planted_split):
    model = tiny_generator(planted_split).model_
    hist = torch.from_numpy(planted_split.eval_inputs("test")[0][:4])
    users = torch.arange(4)
    with torch.no_grad():
        memory, allowed = model.encode(hist, users)
        kv = model.memory_kv(memory)
        tokens = torch.tensor([[model.bos, 1, 6]] * 4)  # BOS, level-0 code 1, level-1 code 2
        changed = tokens.clone()
        changed[:, 2] = 5  # level-1 code 1
        a, b = model.decode(tokens, kv, allowed), model.decode(changed, kv, allowed)
    assert torch.equal(a[:, :2], b[:, :2])
    assert not torch.allclose(a[:, 2], b[:, 2])


def test_generator_learns_a_planted_next_item_rule(planted_split):
    ctx = FitContext(device=torch.device("cpu"), seed=0, valid=Evaluator(planted_split, "valid"))
    cfg = GeneratorConfig(**{**TINY, "epochs": 15, "eval_every": 5, "patience": 2})
    gen = Generator(cfg).fit(planted_split, random_codes(planted_split.n_items, [4, 4, 4]), [4, 4, 4], ctx)
    recall = Evaluator(planted_split, "test").evaluate(gen).means["recall@10"]
    assert recall > 0.6  # random ranking: 10 / 60
    assert ctx.extra["generator"]["epochs_run"] == 15
    assert [p["epoch"] for p in ctx.curve if "recall@10" in p] == [4, 9, 14]
    assert ctx.extra["generator_params"] == sum(p.numel() for p in gen.model_.parameters())
    assert ctx.extra["generator_decode"]["trie_nodes_per_level"][0] == 1


def test_block_default_is_unchanged_and_d_head_sets_the_attention_size():
    torch.manual_seed(0)
    block = Block(64, 2, 256, 0.1, 0.1).eval()
    shapes = {name: tuple(p.shape) for name, p in block.named_parameters()}
    assert shapes == {
        "norm1.weight": (64,), "norm1.bias": (64,), "qkv.weight": (192, 64), "qkv.bias": (192,),
        "proj.weight": (64, 64), "proj.bias": (64,), "norm2.weight": (64,), "norm2.bias": (64,),
        "ff.0.weight": (256, 64), "ff.0.bias": (256,), "ff.2.weight": (64, 256), "ff.2.bias": (64,),
    }
    x = torch.randn(3, 7, 64)
    allowed = (torch.rand(3, 1, 7, 7) > 0.3) | torch.eye(7, dtype=torch.bool)
    with torch.no_grad():  # the block's forward before d_head existed
        q, k, v = block.qkv(block.norm1(x)).view(3, 7, 3, 2, 32).unbind(2)
        attn = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                              attn_mask=allowed)
        h = x + block.proj(attn.transpose(1, 2).reshape(3, 7, 64))
        reference = h + block.ff(block.norm2(h))
        assert torch.equal(block(x, allowed), reference)

    wide = Block(32, 6, 64, 0.0, 0.0, d_head=8)
    assert wide.qkv.weight.shape == (144, 32) and wide.proj.weight.shape == (32, 48)
    assert wide(torch.randn(2, 5, 32), torch.ones(2, 1, 5, 5, dtype=torch.bool)).shape == (2, 5, 32)
    with pytest.raises(ValueError, match="divisible"):
        Block(32, 6, 64, 0.0, 0.0)


def run_trainer(cfg, scores):
    """Train a toy model, validating with successive ``scores``; return the validated epochs and the context."""
    model = nn.Linear(1, 1)
    ctx = FitContext(device=torch.device("cpu"), seed=0, valid=None)
    calls = iter(scores)
    Trainer(cfg, ctx, "toy").fit(model, (torch.zeros(8, 1),), lambda b: model(b[0]).pow(2).mean(),
                                 validate=lambda: {"ndcg@10": next(calls)}, select="ndcg@10")
    return [p["epoch"] for p in ctx.curve if "ndcg@10" in p], ctx


def test_trainer_validates_every_n_epochs_and_counts_patience_in_validations():
    base = TrainConfig(batch_size=8, patience=10)
    epochs, ctx = run_trainer(dataclasses.replace(base, epochs=7, eval_every=3), [1.0, 2.0, 3.0])
    assert epochs == [2, 5, 6] and ctx.extra["toy"]["best_epoch"] == 6
    epochs, ctx = run_trainer(dataclasses.replace(base, epochs=20, eval_every=3, patience=2), [1.0, 0.5, 0.4])
    assert epochs == [2, 5, 8] and ctx.extra["toy"] == {**ctx.extra["toy"], "epochs_run": 9, "best_epoch": 2}
    epochs, _ = run_trainer(dataclasses.replace(base, epochs=3), [1.0, 2.0, 3.0])
    assert epochs == [0, 1, 2]
    with pytest.raises(ConfigError, match="eval_every"):
        Trainer(dataclasses.replace(base, eval_every=0), ctx)
