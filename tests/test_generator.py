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


def test_min_epochs_makes_a_fixed_length_run_whose_cosine_schedule_decays_to_zero_and_keeps_the_best():
    """Issue 19's fixed-length schedule: no early stop before min_epochs; the best validated epoch is restored."""
    from bench.nn.train import lr_factor

    scores = [3.0, 2.0, 1.0, 0.5, 0.4, 0.3]  # the first validation is the best: patience 1 would stop at once
    cfg = TrainConfig(batch_size=8, epochs=6, patience=1, min_epochs=6, schedule="cosine")
    epochs, ctx = run_trainer(cfg, scores)
    assert epochs == [0, 1, 2, 3, 4, 5] and ctx.extra["toy"]["best_epoch"] == 0
    _, ctx = run_trainer(dataclasses.replace(cfg, min_epochs=0), scores)
    assert ctx.extra["toy"]["epochs_run"] == 2  # without it, early stopping ends the run after one stale validation
    steps = 6  # one step an epoch here: the schedule reaches its floor at the run's last step
    assert lr_factor(steps - 1, steps, 0, "cosine") < 0.07 and lr_factor(steps, steps, 0, "cosine") == 0.0
    with pytest.raises(ConfigError, match="min_epochs"):
        TrainConfig(min_epochs=-1)


# --- the phased trainer ---------------------------------------------------------------------------------------


def old_trainer_loop(cfg, model, examples, loss_fn, validate, select):
    """The one-loss training loop as it was before phases existed (CPU), the reference for bit-identity."""
    from bench.core.device import seed_everything

    def lr_factor(step, total):
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "cosine":
            progress = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    seed_everything(0)
    n = len(examples[0])
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=False)
    steps = math.ceil(n / cfg.batch_size)
    total = steps * cfg.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total))
    best, best_state, stale, losses = -math.inf, None, 0, []
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(n)
        total_loss = torch.zeros(())
        for i in range(steps):
            loss = loss_fn(tuple(t[order[i * cfg.batch_size:(i + 1) * cfg.batch_size]] for t in examples))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            total_loss += loss.detach()
        losses.append(round(float(total_loss) / steps, 5))
        model.eval()
        with torch.no_grad():
            score = validate()[select]
        if score > best:
            best, best_state, stale = score, {k: v.clone() for k, v in model.state_dict().items()}, 0
        else:
            stale += 1
        if stale >= cfg.patience:
            break
    model.load_state_dict(best_state)
    return losses


def toy_mlp():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))


def test_one_phase_trainer_trains_exactly_as_before_and_equals_an_explicit_single_phase():
    """Same RNG draws (dropout, shuffles), same optimiser and schedule: bit-identical weights and losses."""
    from bench.nn.train import Phase

    cfg = TrainConfig(epochs=6, batch_size=24, lr=3e-2, weight_decay=0.01, schedule="cosine", warmup_steps=5,
                      patience=2, grad_clip=0.5)
    x = torch.randn(100, 4, generator=torch.Generator().manual_seed(2))
    y = x.sum(1, keepdim=True)
    probe = torch.randn(20, 4, generator=torch.Generator().manual_seed(3))

    def run(how):
        model = toy_mlp()
        loss_fn = lambda b: (model(b[0]) - b[1]).pow(2).mean()  # noqa: E731
        validate = lambda: {"score": -float(model(probe).pow(2).mean())}  # noqa: E731
        if how == "old":
            return model, old_trainer_loop(cfg, model, (x, y), loss_fn, validate, "score"), None
        ctx = FitContext(device=torch.device("cpu"), seed=0, valid=None)
        phases = {"phases": [Phase("train", None, loss_fn, cfg.epochs)]} if how == "phase" else {"loss_fn": loss_fn}
        Trainer(cfg, ctx, "train").fit(model, (x, y), validate=validate, select="score", **phases)
        return model, [p["loss"] for p in ctx.curve], ctx

    old, old_losses, _ = run("old")
    for how in ("loss_fn", "phase"):
        model, losses, ctx = run(how)
        assert losses == old_losses, how
        for a, b in zip(old.state_dict().values(), model.state_dict().values()):
            assert torch.equal(a, b), how
    _, _, ctx = run("loss_fn")  # the one-loss record has no phase fields, as before
    assert set(ctx.curve[0]) == {"stage", "epoch", "loss", "train_seconds", "score"}
    assert set(ctx.extra["train"]) == {"epochs_run", "best_epoch", "best_valid_score", "seconds_per_epoch",
                                       "steps_per_epoch", "examples"}


def test_phased_trainer_steps_only_each_phases_parameters_with_one_optimiser_per_phase(monkeypatch):
    from bench.nn.train import Phase

    model = nn.ModuleDict({"a": nn.Linear(3, 1), "b": nn.Linear(3, 1)})
    model.b.bias.requires_grad_(False)  # frozen by the caller: stays frozen, and phase b trains around it
    x = torch.randn(16, 3, generator=torch.Generator().manual_seed(0))
    optimisers, log, changed = [], [], []
    real_adamw = torch.optim.AdamW
    monkeypatch.setattr(torch.optim, "AdamW",
                        lambda *a, **k: optimisers.append(real_adamw(*a, **k)) or optimisers[-1])
    snapshot = {}

    def loss_fn(name, other):
        def loss(batch):
            log.append((name, model[name].weight.requires_grad, model[other].weight.requires_grad))
            return (model.a(batch[0]) * model.b(batch[0])).pow(2).mean() + model[name](batch[0]).mean()
        return loss

    def start(name):
        snapshot.update({k: v.clone() for k, v in model.state_dict().items()})

    def end(name):
        changed.append((name, sorted(k for k, v in model.state_dict().items() if not torch.equal(v, snapshot[k]))))
        assert model.a.weight.grad is None or name == "a"  # no gradient was computed for the frozen module
        assert model.b.weight.grad is None or name == "b"
        model.zero_grad(set_to_none=True)

    phases = [Phase("a", model.a.parameters(), loss_fn("a", "b"), epochs=2, lr=0.1,
                    on_start=lambda: start("a"), on_end=lambda: end("a")),
              Phase("b", lambda: model.b.parameters(), loss_fn("b", "a"), epochs=1, lr=0.05, schedule="cosine",
                    on_start=lambda: start("b"), on_end=lambda: end("b"))]
    ctx = FitContext(device=torch.device("cpu"), seed=0, valid=None)
    Trainer(TrainConfig(batch_size=8), ctx, "toy").fit(model, (x,), phases=phases, cycles=2)

    assert [(p["phase"], p["cycle"], p["epoch"]) for p in ctx.curve] == [
        ("a", 0, 0), ("a", 0, 1), ("b", 0, 2), ("a", 1, 3), ("a", 1, 4), ("b", 1, 5)]
    assert changed == [("a", ["a.bias", "a.weight"]), ("b", ["b.weight"])] * 2
    assert set(log) == {("a", True, False), ("b", True, False)}  # the other phase's module was frozen
    assert model.a.weight.requires_grad and model.b.weight.requires_grad and not model.b.bias.requires_grad
    assert len(optimisers) == 2  # one per phase, kept across cycles: phase a took 2 steps x 2 epochs x 2 cycles
    assert optimisers[0].param_groups[0]["lr"] == 0.1
    assert [optimisers[i].state[model[n].weight]["step"].item() for i, n in enumerate("ab")] == [8, 4]
    assert optimisers[1].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # cosine over b's 4 steps
    facts = ctx.extra["toy"]
    assert facts["epochs_run"] == 6 and facts["cycles"] == facts["cycles_run"] == 2
    assert {k: (v["epochs_run"], v["parameters"]) for k, v in facts["phases"].items()} == {"a": (4, 4), "b": (2, 4)}


def test_a_phase_schedule_can_span_more_steps_than_it_takes():
    """``schedule_steps`` sizes the cosine for more steps than the phase runs (ETEGRec's generator schedule
    spans every epoch of the alternation): after its 4 of 8 steps the learning rate is half its peak."""
    from bench.nn.train import Phase, lr_factor

    model = nn.Linear(2, 1)
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    seen = []
    real_adamw = torch.optim.AdamW

    def adamw(*args, **kwargs):
        seen.append(real_adamw(*args, **kwargs))
        return seen[-1]

    ctx = FitContext(device=torch.device("cpu"), seed=0, valid=None)
    phase = Phase("a", None, lambda b: model(b[0]).pow(2).mean(), epochs=2, lr=0.1, schedule="cosine",
                  warmup_steps=1, schedule_steps=8)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.optim, "AdamW", adamw)
        Trainer(TrainConfig(batch_size=4), ctx, "toy").fit(model, (x,), phases=[phase])
    assert seen[0].param_groups[0]["lr"] == pytest.approx(0.1 * lr_factor(4, 8, 1, "cosine"))
    assert seen[0].param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 3 / 7)))
    assert ctx.extra["toy"]["phases"]["a"]["schedule_steps"] == 8
    assert ctx.extra["toy"]["phases"]["a"]["warmup_steps"] == 1
    with pytest.raises(ConfigError, match="schedule_steps must be >= 1"):
        Trainer(TrainConfig(batch_size=4), ctx, "toy").fit(
            model, (x,), phases=[Phase("a", None, lambda b: model(b[0]).sum(), schedule_steps=0)])


def test_a_phase_takes_parameter_groups_with_their_own_learning_rates():
    """Two modules trained in one phase at two learning rates (ETEGRec without alternation)."""
    from bench.nn.train import Phase

    model = nn.ModuleDict({"a": nn.Linear(3, 1), "b": nn.Linear(3, 1)})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(16, 3, generator=torch.Generator().manual_seed(0))
    groups = lambda: [{"params": model.a.parameters()}, {"params": model.b.parameters(), "lr": 0.0}]  # noqa: E731
    phase = Phase("both", groups, lambda batch: (model.a(batch[0]) * model.b(batch[0])).pow(2).mean(), epochs=2)
    ctx = FitContext(device=torch.device("cpu"), seed=0, valid=None)
    Trainer(TrainConfig(batch_size=8, lr=0.1), ctx, "toy").fit(model, (x,), phases=[phase])
    after = model.state_dict()
    assert not torch.equal(after["a.weight"], before["a.weight"])  # the phase's lr
    assert torch.equal(after["b.weight"], before["b.weight"])  # its own lr, 0
    assert ctx.extra["toy"]["phases"]["both"]["parameters"] == 8


def test_tied_output_layer_is_the_code_tokens_embedding():
    cfg = GeneratorConfig(d_model=8, n_enc_layers=1, n_dec_layers=1, n_heads=2, d_head=4, d_ff=16,
                          tie_embeddings=True)
    from bench.sid.generator import SIDGenerator

    model = SIDGenerator(cfg, torch.tensor([[0, 1], [1, 0], [2, 2]]), [3, 3], history_len=4)
    assert model.head is None
    assert model.out_weight().shape == (6, 8)
    assert model.out_weight().data_ptr() == model.tokens.weight.data_ptr()  # the same rows, no copy
    logits = model(torch.tensor([[3, 0, 1, 2]]), torch.tensor([0]), torch.tensor([2]))
    logits[torch.isfinite(logits)].sum().backward()
    assert model.tokens.weight.grad[:6].abs().sum() > 0


def test_phased_trainer_validates_over_all_phases_and_restores_the_best_checkpoint():
    from bench.nn.train import Phase

    model = nn.ModuleDict({"a": nn.Linear(1, 1), "b": nn.Linear(1, 1)})
    x = torch.ones(8, 1)
    scores = iter([1.0, 3.0, 2.0, 0.5, 0.4])
    kept = {}

    def validate():
        score = next(scores)
        kept[score] = {k: v.clone() for k, v in model.state_dict().items()}
        return {"ndcg@10": score}

    phases = [Phase(name, model[name].parameters(), lambda b, m=model[name]: m(b[0]).pow(2).mean(), epochs=e, lr=0.1)
              for name, e in (("a", 2), ("b", 1))]
    ctx = FitContext(device=torch.device("cpu"), seed=0, valid=None)
    cfg = TrainConfig(batch_size=8, eval_every=2, patience=2)
    Trainer(cfg, ctx, "toy").fit(model, (x,), phases=phases, cycles=4, validate=validate, select="ndcg@10")
    # 12 epochs over both phases; validation after epochs 1, 3, 5, 7, then patience 2 stops after epoch 7
    assert [p["epoch"] for p in ctx.curve if "ndcg@10" in p] == [1, 3, 5, 7]
    assert len(ctx.curve) == 8 and (ctx.curve[-1]["phase"], ctx.curve[-1]["cycle"]) == ("a", 2)
    facts = ctx.extra["toy"]
    assert (facts["best_epoch"], facts["best_phase"], facts["best_cycle"]) == (3, "a", 1)
    assert facts["cycles_run"] == 3 and [v["epochs_run"] for v in facts["phases"].values()] == [6, 2]
    assert all(torch.equal(v, kept[3.0][k]) for k, v in model.state_dict().items())


def test_phased_trainer_errors():
    from bench.nn.train import Phase

    model, other = nn.Linear(1, 1), nn.Linear(1, 1)
    ctx = FitContext(device=torch.device("cpu"), seed=0, valid=None)
    trainer = Trainer(TrainConfig(batch_size=4), ctx, "toy")
    loss = lambda b: model(b[0]).sum()  # noqa: E731
    data = (torch.ones(4, 1),)
    with pytest.raises(ConfigError, match="either loss_fn or phases"):
        trainer.fit(model, data, loss, phases=[Phase("a", None, loss)])
    with pytest.raises(ConfigError, match="distinct names"):
        trainer.fit(model, data, phases=[Phase("a", None, loss), Phase("a", None, loss)])
    with pytest.raises(ConfigError, match="not the model's"):
        trainer.fit(model, data, phases=[Phase("a", other.parameters(), loss)])
    with pytest.raises(ConfigError, match="schedule"):
        trainer.fit(model, data, phases=[Phase("a", None, loss, schedule="linear")])
    with pytest.raises(ConfigError, match="cycles >= 1"):
        trainer.fit(model, data, phases=[Phase("a", None, loss)], cycles=0)
    with pytest.raises(ConfigError, match="cycles repeat a list of phases"):
        trainer.fit(model, data, loss, cycles=2)
    with pytest.raises(ConfigError, match="no parameters"):
        trainer.fit(model, data, phases=[Phase("a", [], loss)])


# --- codes that change ----------------------------------------------------------------------------------------


def test_set_codes_outside_the_capacity_is_a_clear_error_and_changes_nothing(planted_split):
    gen = tiny_generator(planted_split)
    before = gen.model_.sid_codes().clone()
    bad = before.clone()
    bad[3, 1] = 4  # codebook size 4
    with pytest.raises(ConfigError, match=r"level 1 must lie in \[0, 4\) .* found \[0, 4\]"):
        gen.set_codes(bad)
    with pytest.raises(ConfigError, match=r"level 1 must lie in \[0, 4\)"):
        gen.model_.set_codes(bad)
    with pytest.raises(ConfigError, match=r"\[n_items=60, n_levels=3\].* found .*\(60, 4\)"):
        gen.set_codes(np.zeros((60, 4), dtype=np.int64))
    with pytest.raises(ConfigError, match="integers"):
        gen.set_codes(before.float())
    duplicate = before.clone()
    duplicate[1] = duplicate[0]
    with pytest.raises(ConfigError, match="unique per item"):
        gen.set_codes(duplicate)
    assert torch.equal(gen.model_.sid_codes(), before)
    assert torch.equal(gen.trie_.lookup(before), torch.arange(60))


def test_set_codes_replaces_the_models_tokens_and_the_trie(planted_split):
    gen = tiny_generator(planted_split)
    hist, _ = planted_split.eval_inputs("test")
    hist, users = torch.from_numpy(hist[:16]), torch.arange(16)
    old_codes = gen.model_.sid_codes().clone()
    new_codes = torch.from_numpy(random_codes(60, [4, 4, 4], seed=5))
    gen.set_codes(new_codes.numpy())
    assert torch.equal(gen.model_.sid_codes(), new_codes)
    assert torch.equal(gen.model_.item_tokens[:-1], new_codes + torch.tensor([0, 4, 8]))
    assert (gen.model_.item_tokens[-1] == gen.model_.pad).all()
    ranked = gen.rank(hist, users, 10)
    assert (ranked >= 0).all()
    assert torch.equal(gen.trie_.lookup(new_codes[ranked.flatten()]), ranked.flatten())
    # the codes travel with the state dict, and a restored checkpoint brings its trie back
    state = {k: v.clone() for k, v in gen.model_.state_dict().items()}
    gen.set_codes(old_codes)
    gen.model_.load_state_dict(state)
    assert torch.equal(gen.model_.sid_codes(), new_codes)
    assert torch.equal(gen.trie_.lookup(new_codes), torch.arange(60))
    assert torch.equal(gen.rank(hist, users, 10), ranked)


def test_return_states_gives_the_encoder_and_decoder_states_with_the_same_logits(planted_split):
    gen = tiny_generator(planted_split, user_tokens=7)
    model = gen.model_
    hist = torch.from_numpy(planted_split.eval_inputs("test")[0][:4])
    users, targets = torch.arange(4), torch.tensor([0, 5, 7, 59])
    with torch.no_grad():
        out = model(hist, users, targets, return_states=True)
        loss, again = model.loss(hist, users, targets, return_states=True)
        assert torch.equal(out.logits, model(hist, users, targets))
        assert torch.equal(loss, model.loss(hist, users, targets)) and torch.equal(again.logits, out.logits)
    seq = 1 + planted_split.protocol.history_len * 3  # user token + 5 items x 3 levels
    assert out.logits.shape == (4, 3, 12)
    assert out.encoder_states.shape == (4, seq, 32) and out.decoder_states.shape == (4, 3, 32)
    assert out.encoder_mask.shape == (4, seq) and out.encoder_mask.dtype == torch.bool
    is_pad = hist == planted_split.pad  # per item, so per 3 tokens after the user token
    assert torch.equal(out.encoder_mask[:, 1:], ~is_pad.repeat_interleave(3, dim=1))
    assert out.encoder_mask[:, 0].all()


def test_the_generator_trains_as_a_phase_of_the_phased_trainer(planted_split):
    """``phase`` + ``examples`` + ``validation``: the same run as ``fit`` when it is the only phase."""
    cfg = GeneratorConfig(**{**TINY, "epochs": 2, "eval_every": 1, "patience": 5})
    codes = random_codes(planted_split.n_items, [4, 4, 4])
    fitted_ctx = FitContext(device=torch.device("cpu"), seed=0, valid=Evaluator(planted_split, "valid"))
    fitted = Generator(cfg).fit(planted_split, codes, [4, 4, 4], fitted_ctx)
    ctx = FitContext(device=torch.device("cpu"), seed=0, valid=Evaluator(planted_split, "valid"))
    gen = Generator(cfg).setup(planted_split, codes, [4, 4, 4], ctx)
    Trainer(cfg, ctx, "generator").fit(gen.model_, gen.examples(planted_split), phases=[gen.phase(epochs=2)],
                                       validate=gen.validation(ctx))
    for a, b in zip(fitted.model_.state_dict().values(), gen.model_.state_dict().values()):
        assert torch.equal(a, b)
    assert [p["ndcg@10"] for p in ctx.curve] == [p["ndcg@10"] for p in fitted_ctx.curve]
    assert ctx.extra["generator_decode"] == fitted_ctx.extra["generator_decode"]


def test_user_tokens_hash_each_user_to_user_mod_user_tokens_and_nothing_else(planted_split):
    """TIGER's hashed user tokens: users k apart (k = user_tokens) share a token and, with one history, the same
    encoder states; neighbouring users do not; the token is the same in every call."""
    gen = tiny_generator(planted_split, user_tokens=7)
    model = gen.model_.eval()
    hist = torch.from_numpy(planted_split.eval_inputs("test")[0][:1]).repeat(3, 1)
    users = torch.tensor([2, 9, 3])  # 9 = 2 + 7 shares 2's token; 3 does not
    with torch.no_grad():
        memory, _ = model.encode(hist, users)
        again, _ = model.encode(hist, users)
    assert torch.equal(memory, again)
    assert torch.equal(memory[0], memory[1]) and not torch.allclose(memory[0], memory[2])
    assert model.tokens.num_embeddings == model.user_base + 7  # the user tokens come last in the vocabulary
