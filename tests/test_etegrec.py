"""ETEGRec: SIA and PSA on hand-made tensors, alternation freezes the other side, codes refresh and the trie
follows, stage 2 leaves the tokenizer alone, and the whole method runs end to end on synthetic."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from bench.cli import main
from bench.core.method import FitContext, build_config
from bench.data.dataset import load_dataset
from bench.data.protocol import Protocol, Split
from bench.eval.evaluator import Evaluator
from bench.nn.train import Trainer
from bench.sid.generator import Generator
from methods.sid.etegrec import (
    ETEGRec,
    batch_groups,
    first_of_each,
    info_nce,
    symmetric_kl,
)

EXAMPLES = 2048  # of synthetic's ~26k training prefixes: 2 steps an epoch keep the fit to seconds on a CPU


def test_symmetric_kl_by_hand():
    p, q = torch.tensor([[0.5, 0.5]]), torch.tensor([[0.9, 0.1]])
    expected = (0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)) + (0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5))
    value = symmetric_kl(p.log(), q.log())
    assert value.item() == pytest.approx(expected, rel=1e-5)
    assert symmetric_kl(q.log(), p.log()).item() == pytest.approx(value.item(), rel=1e-6)  # symmetric
    assert symmetric_kl(p.log(), p.log()).item() == pytest.approx(0.0, abs=1e-7)
    assert symmetric_kl(p.log() + 3.0, q.log()).item() == pytest.approx(expected, rel=1e-5)  # logits, not probabilities


def test_info_nce_by_hand():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    tau = 0.5
    cos = torch.tensor([[1.0, 1 / math.sqrt(2)], [0.0, 1 / math.sqrt(2)]]) / tau
    rows = -(cos.diag() - torch.logsumexp(cos, 1)).mean()
    cols = -(cos.diag() - torch.logsumexp(cos, 0)).mean()
    assert info_nce(a, b, tau).item() == pytest.approx((rows + cols).item(), rel=1e-5)  # both directions, added
    assert info_nce(b, a, tau).item() == pytest.approx(info_nce(a, b, tau).item(), rel=1e-6)  # symmetric


def test_first_of_each_picks_one_example_per_target():
    targets = torch.tensor([7, 3, 7, 5, 3])
    assert first_of_each(targets).tolist() == [1, 1, 0, 1, 0]  # the first 7, the first 3, the 5


def test_first_of_each_matches_a_loop_over_the_rows():
    """Large target ids and unordered groups: the first row of every (group, target) pair, in row order."""
    generator = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 5, (200,), generator=generator) * 10**9  # ids far beyond int32 as well
    groups = torch.randint(0, 4, (200,), generator=generator)

    def first_seen(keys):
        seen, expected = set(), []
        for key in keys:
            expected.append(float(key not in seen))
            seen.add(key)
        return expected

    assert first_of_each(targets, groups).tolist() == first_seen(zip(groups.tolist(), targets.tolist()))
    assert first_of_each(targets).tolist() == first_seen(targets.tolist())


def test_groups_take_unique_targets_and_negatives_per_share_of_the_batch():
    """As over the authors' 4 GPUs: a target repeated in two shares counts once in each; a row's InfoNCE
    negatives are its own share's rows, so the grouped loss is the mean of the shares' own losses."""
    assert batch_groups(10, 4).tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]
    targets = torch.tensor([7, 3, 7, 7, 3, 5])
    groups = batch_groups(6, 2)  # [0, 0, 0, 1, 1, 1]
    assert first_of_each(targets, groups).tolist() == [1, 1, 0, 1, 1, 1]  # 7 and 3 again in the second share
    torch.manual_seed(0)
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    grouped = info_nce(a, b, 0.5, batch_groups(4, 2))
    assert grouped.item() == pytest.approx(0.5 * (info_nce(a[:2], b[:2], 0.5) + info_nce(a[2:], b[2:], 0.5)).item(),
                                           rel=1e-5)
    assert info_nce(a, b, 0.5, torch.zeros(4, dtype=torch.long)).item() == pytest.approx(info_nce(a, b, 0.5).item())


def test_weighting_the_unique_targets_equals_selecting_them():
    """The step keeps the batch's shape (a 0/1 weight per row, so no host sync and one CUDA graph can replay
    it): the RQ loss, SIA and PSA, and their gradients, equal those computed on the selected unique rows."""
    from methods.sid.etegrec import ETEGRecTokenizer, weighted_mean
    from methods.tokenizers.rqvae import RQVAE

    torch.manual_seed(0)
    rqvae = RQVAE(latent_dim=4, hidden=(8,), n_levels=3, codebook_size=5, level_mean=True, detach_residuals=True)
    model = rqvae._build(6)
    for codebook in model.quantizer.codebooks:
        torch.nn.init.normal_(codebook)
    tokenizer = ETEGRecTokenizer(model, torch.randn(20, 6), 0.25, "code", rqvae.rq_weight)
    targets = torch.tensor([3, 7, 3, 9, 7, 1, 3, 12, 9, 5])
    groups = batch_groups(len(targets), 2)
    weights = first_of_each(targets, groups)
    chosen = weights.bool()
    states, project = torch.randn(len(targets), 4), torch.nn.Linear(4, 6)

    def losses(rows, w):
        tok = tokenizer(targets[rows], w)
        mine = tokenizer.code_logits(states[rows])
        sia = sum(symmetric_kl(a, b, w) for a, b in zip(tok["logits"], mine)) / len(mine)
        psa = info_nce(project(states[rows]), tok["reconstruction"], 0.07, groups[rows], w)
        return tok["rq"], sia, psa

    def gradients(loss):
        tokenizer.zero_grad(), project.zero_grad()
        loss.backward()
        return [p.grad.clone() for p in [*tokenizer.parameters(), *project.parameters()] if p.grad is not None]

    masked = losses(slice(None), weights)
    selected = losses(chosen, None)
    for a, b in zip(masked, selected):
        assert a.item() == pytest.approx(b.item(), rel=1e-5)
    for a, b in zip(gradients(sum(masked)), gradients(sum(selected))):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)
    assert weighted_mean(torch.tensor([1.0, 5.0, 3.0]), torch.tensor([1.0, 0.0, 1.0])).item() == 2.0


@pytest.fixture(scope="module")
def fitted():
    """A smoke-size ETEGRec on synthetic (2 cycles, 1 fine-tuning epoch), with what changed in each epoch."""
    split = Split(load_dataset("synthetic"), Protocol())
    cfg = build_config(ETEGRec, "etegrec", "smoke", {"finetune_epochs": 1, "tokenizer_lr": 0.02})  # codes move in 2 steps
    ctx = FitContext(device=torch.device("cpu"), seed=0, valid=Evaluator(split, "valid"))
    method = ETEGRec(cfg)
    epochs, original = [], Trainer._epoch

    def watched(self, model, examples, run, *args):
        if not hasattr(method, "tokenizer_"):  # the sasrec-emb encoder's training, before stage 1
            return original(self, model, examples, run, *args)
        sides = {"tokenizer": method.tokenizer_, "generator": method.generator_.model_, "align": method.align_}
        before = {name: [p.detach().clone() for p in module.parameters()] for name, module in sides.items()}
        out = original(self, model, examples, run, *args)
        changed = {name: any(not torch.equal(a, p) for a, p in zip(before[name], module.parameters()))
                   for name, module in sides.items()}
        epochs.append((self.stage, run.phase.name, changed, method.generator_.model_.training))
        return out

    examples = Generator.examples
    Trainer._epoch = watched
    Generator.examples = staticmethod(lambda split: tuple(t[:EXAMPLES] for t in examples(split)))
    try:
        method.fit(split, ctx)
    finally:
        Trainer._epoch, Generator.examples = original, staticmethod(examples)
    return method, ctx, epochs, split


def test_each_phase_steps_only_its_own_side_and_stage_two_only_the_generator(fitted):
    _, _, epochs, _ = fitted
    assert [(stage, phase) for stage, phase, _, _ in epochs] == [
        ("joint", "tokenizer"), ("joint", "generator"), ("joint", "tokenizer"), ("joint", "generator"),
        ("finetune", "finetune")]
    for stage, phase, changed, generator_training in epochs:
        assert generator_training == (phase != "tokenizer")  # the frozen generator without dropout, as released
        if phase == "tokenizer":
            assert changed == {"tokenizer": True, "generator": False, "align": False}
        elif phase == "generator":
            assert changed == {"tokenizer": False, "generator": True, "align": True}
        else:  # stage 2: the tokenizer frozen for good
            assert changed["generator"] and not changed["tokenizer"]


def test_codes_refresh_after_each_tokenizer_epoch_and_the_trie_follows(fitted):
    method, ctx, _, split = fitted
    facts = ctx.extra["sid"]["etegrec"]
    assert len(facts["refreshes"]) == 2  # one per tokenizer epoch
    assert all(0 < r["changed_share"] <= 1 for r in facts["refreshes"])  # the codes moved
    codes = method.generator_.model_.sid_codes()
    assert codes.shape == (split.n_items, 4)  # 3 codes + the collision token, the width fixed
    assert len(np.unique(codes.numpy(), axis=0)) == split.n_items
    assert torch.equal(method.generator_.trie_.lookup(codes), torch.arange(split.n_items))
    # the generator decodes the codes the tokenizer gives now (restored best checkpoint included)
    assert np.array_equal(codes[:, :3].numpy(), method.tokenizer_.codes())
    phases = {entry["phase"] for entry in facts["loss_terms"]}
    assert phases == {"tokenizer", "generator"}
    assert all({"sia", "psa"} <= set(entry) for entry in facts["loss_terms"])  # no alignment warm-up at smoke size


def test_each_phase_step_traces_as_one_graph(fitted):
    """No host sync and fixed shapes: dynamo traces a tokenizer step and a generator step each as one graph
    (the step counter and the loss bookkeeping stay outside it), so ``run --compile`` can capture them."""
    import torch._dynamo as dynamo

    method, _, _, split = fitted
    batch = tuple(t[:256] for t in method.generator_.examples(split))
    steps, sums = method.steps_, dict(method.terms_)
    try:
        for phase, generation, tokenizer_grad in (("tokenizer", False, True), ("generator", True, False)):
            explained = dynamo.explain(lambda b: method._terms(b, phase, generation, tokenizer_grad))(batch)
            assert explained.graph_count == 1, explained.break_reasons
            assert explained.op_count > 100  # the losses themselves are in the graph
    finally:
        method.steps_, method.terms_ = steps, sums
        dynamo.reset()


def test_without_end_to_end_reuses_the_full_runs_final_tokens_and_trains_a_fresh_generator(fitted, monkeypatch):
    method, _, _, split = fitted
    examples = Generator.examples
    monkeypatch.setattr(Generator, "examples", staticmethod(lambda split: tuple(t[:EXAMPLES] for t in examples(split))))
    cfg = build_config(ETEGRec, "etegrec", "smoke", {"finetune_epochs": 1, "tokenizer_lr": 0.02, "end_to_end": False})
    ctx = FitContext(device=torch.device("cpu"), seed=0, valid=Evaluator(split, "valid"))
    ablation = ETEGRec(cfg).fit(split, ctx)
    assert ctx.extra["joint"]["cache_hit"]  # stage 1 came from the full run's entry
    assert "finetune" not in ctx.extra and ctx.extra["generator"]["epochs_run"] >= 1  # a fresh, two-stage generator
    assert np.array_equal(ablation.generator_.model_.sid_codes()[:, :3].numpy(), method.tokenizer_.codes())
    assert ablation.generator_.model_ is not method.generator_.model_
    assert ctx.extra["sid"]["etegrec"]["refreshes"] == method.refreshes_  # the record still shows how codes moved


def test_stage_one_schedules_are_the_ones_the_authors_run_had(monkeypatch):
    """The generator warms up over 2,000 steps and its cosine spans every stage-1 epoch (it steps in half of
    them); the tokenizer warms up over 1,000 steps over its own epochs (the released config's ticks / 4)."""
    from types import SimpleNamespace

    method = ETEGRec(build_config(ETEGRec, "etegrec", "default", {}))
    method.steps_per_epoch_ = 65
    method.tokenizer_, method.align_ = nn.Linear(1, 1), nn.Linear(1, 1)
    method.generator_ = SimpleNamespace(model_=nn.Linear(1, 1), validation=lambda ctx: None)
    seen = {}

    def fit(self, model, examples, phases=None, cycles=1, **kwargs):
        seen.update(phases={p.name: p for p in phases}, cycles=cycles)

    monkeypatch.setattr(Trainer, "fit", fit)
    method._stage1((), None)
    tokenizer, generator = seen["phases"]["tokenizer"], seen["phases"]["generator"]
    assert seen["cycles"] == 200
    assert (tokenizer.warmup_steps, tokenizer.schedule_steps, tokenizer.lr) == (1000, None, 1e-4)  # its own 200 x 65
    assert (generator.warmup_steps, generator.schedule_steps) == (None, 400 * 65)  # None: the config's 2,000
    assert method.config.warmup_steps == 2000 and method.config.lr == 5e-3


def test_stage_zero_averages_the_levels_and_cuts_the_gradient_between_them():
    params = ETEGRec(build_config(ETEGRec, "etegrec", "default", {})).tokenizer_params(0)
    assert params["level_mean"] and params["detach_residuals"]
    from methods.tokenizers.rqvae import RQVAE

    rqvae = RQVAE(**{**params, "hidden": (8,), "latent_dim": 4, "codebook_size": 4})
    assert rqvae.rq_weight == pytest.approx(1 / 3)
    assert rqvae._build(6).quantizer.detach_residuals
    assert RQVAE().rq_weight == 1.0 and not RQVAE()._build(6).quantizer.detach_residuals  # TIGER's unchanged


def test_alignment_weights_wait_for_the_warm_up():
    method = ETEGRec(build_config(ETEGRec, "etegrec", "default", {}))
    method.steps_per_epoch_, method.steps_ = 10, 99
    assert method._align_weights() == (0.0, 0.0)  # 99 steps taken: the next is epoch 9's last, still warm-up
    method.steps_ = 100
    assert method._align_weights() == (1e-4, 3e-4)  # epoch 10's first step; the released code's weights


def test_bad_options_fail_before_training(tmp_path, capsys):
    assert main(["run", "--methods", "etegrec", "--dataset", "synthetic", "--budget", "smoke",
                 "--set", "sia_sign=plus", "--out", str(tmp_path)]) == 2
    assert "sia_sign must be one of code, paper" in capsys.readouterr().err
    assert not any(tmp_path.rglob("result.json"))


def test_etegrec_runs_end_to_end_on_synthetic(tmp_path, monkeypatch):
    examples = Generator.examples  # the CLI's whole path, on a subsample of the training prefixes
    monkeypatch.setattr(Generator, "examples", staticmethod(lambda split: tuple(t[:EXAMPLES] for t in examples(split))))
    assert main(["run", "--methods", "etegrec", "--dataset", "synthetic", "--budget", "smoke", "--quiet",
                 "--set", "epochs=2", "--set", "finetune_epochs=1", "--out", str(tmp_path)]) == 0
    record = json.loads(next(tmp_path.rglob("result.json")).read_text())
    sid = record["extra"]["sid"]
    assert sid["kind"] == "joint" and sid["encoder"]["name"] == "sasrec-emb"
    assert sid["etegrec"]["sia_sign"] == "code" and len(sid["etegrec"]["refreshes"]) == 1
    assert record["extra"]["finetune"]["epochs_run"] == 1
    assert record["metrics"]["test"]["ndcg@10"] > 0
