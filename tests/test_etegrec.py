"""ETEGRec: SIA and PSA on hand-made tensors, alternation freezes the other side, codes refresh and the trie
follows, stage 2 leaves the tokenizer alone, and the whole method runs end to end on synthetic."""

import json
import math

import numpy as np
import pytest
import torch

from bench.cli import main
from bench.core.method import FitContext, build_config
from bench.data.dataset import load_dataset
from bench.data.protocol import Protocol, Split
from bench.eval.evaluator import Evaluator
from bench.nn.train import Trainer
from bench.sid.generator import Generator
from methods.sid.etegrec import ETEGRec, first_of_each, info_nce, symmetric_kl

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
    assert info_nce(a, b, tau).item() == pytest.approx(0.5 * (rows + cols).item(), rel=1e-5)
    assert info_nce(b, a, tau).item() == pytest.approx(info_nce(a, b, tau).item(), rel=1e-6)  # symmetric


def test_first_of_each_picks_one_example_per_target():
    targets = torch.tensor([7, 3, 7, 5, 3])
    assert first_of_each(targets).tolist() == [1, 3, 0]  # targets 3, 5, 7 in sorted order, first occurrences


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
        epochs.append((self.stage, run.phase.name, changed))
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
    assert [(stage, phase) for stage, phase, _ in epochs] == [
        ("joint", "tokenizer"), ("joint", "generator"), ("joint", "tokenizer"), ("joint", "generator"),
        ("finetune", "finetune")]
    for stage, phase, changed in epochs:
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


def test_alignment_weights_wait_for_the_warm_up():
    method = ETEGRec(build_config(ETEGRec, "etegrec", "default", {}))
    method.steps_per_epoch_, method.steps_ = 10, 99
    assert method._align_weights() == (0.0, 0.0)  # epoch 9 of the 10 warm-up epochs
    method.steps_ = 100
    assert method._align_weights() == (1e-4, 3e-4)  # the released code's weights


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
