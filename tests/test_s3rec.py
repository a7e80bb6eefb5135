import dataclasses
import json

import numpy as np
import pytest
import torch

from bench.cli import main
from bench.data.dataset import load_dataset
from bench.data.protocol import Protocol, Split
from methods.id.s3rec import (
    LOSS_NAMES,
    S3Rec,
    S3RecConfig,
    S3RecPretrainer,
    item_attributes,
)
from methods.id.sasrec import SASRecModel


@pytest.fixture(scope="module")
def split():
    return Split(load_dataset("synthetic"), Protocol())


def test_item_attributes_put_every_field_in_one_vocabulary(split):
    ds = split.dataset
    multi_hot = item_attributes(ds)
    assert multi_hot.shape == (ds.n_items, sum(len(v) - 1 for v in ds.vocabs.values()))
    present = sum((codes > 0).astype(int) for codes in ds.fields.values())
    np.testing.assert_array_equal(multi_hot.sum(1), present)  # one attribute per known field, none shared


def test_each_pretraining_loss_is_finite_and_decreases_on_a_fixed_batch(split):
    cfg = dataclasses.replace(S3RecConfig(), **{**S3Rec.budgets["smoke"], "dropout": 0.0, "attn_dropout": 0.0})
    torch.manual_seed(0)
    model = SASRecModel(split, cfg)
    model.encoder.causal = False
    pretrainer = S3RecPretrainer(split, cfg, model).train()
    windows = pretrainer.windows(split)[:128]
    optimizer = torch.optim.Adam(pretrainer.parameters(), lr=3e-3)
    history = []
    for _ in range(20):
        torch.manual_seed(1)  # the same masks, segments and negatives at every step
        loss = pretrainer.pretrain_loss((windows,))
        history.append(pretrainer.parts[-1])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    first, last = history[0], history[-1]
    assert torch.isfinite(torch.stack(history)).all()
    for k, name in enumerate(LOSS_NAMES):
        assert last[k] < 0.9 * first[k], (name, first[k].item(), last[k].item())


def _record(folder, method):
    return json.loads((folder / "synthetic" / method / "seed0" / "result.json").read_text())


def test_pretraining_reads_every_training_prefix_as_the_released_code_or_one_window_per_user(split):
    cfg = S3RecConfig(d_model=16, n_heads=2, d_ff=32)
    model = SASRecModel(split, cfg)
    length = split.protocol.history_len
    prefixes = S3RecPretrainer(split, cfg, model).windows(split)
    assert prefixes.shape == (sum(len(s) for s in split.train_seqs), length)
    seq = split.train_seqs[0]
    first = prefixes[:len(seq)]  # user 0's prefixes, shortest first, each left-padded
    for end, row in enumerate(first.tolist(), start=1):
        kept = list(seq[max(0, end - length):end])
        assert row == [split.pad] * (length - len(kept)) + kept
    last = S3RecPretrainer(split, dataclasses.replace(cfg, pretrain_on="last"), model).windows(split)
    assert last.shape == (len(split.train_seqs), length)
    assert last[0].tolist() == first[-1].tolist()  # one window per user: the longest prefix


def test_without_pretraining_s3rec_is_sasrec_bce(tmp_path):
    code = main(["run", "--methods", "sasrec-bce,s3rec", "--dataset", "synthetic", "--budget", "smoke",
                 "--set", "s3rec.pretrain_epochs=0", "--set", "epochs=4", "--quiet", "--out", str(tmp_path)])
    assert code == 0
    sasrec, s3rec = _record(tmp_path, "sasrec-bce"), _record(tmp_path, "s3rec")
    assert s3rec["metrics"]["test"] == sasrec["metrics"]["test"]
    assert "pretrain" not in s3rec["extra"]


def test_smoke_s3rec_pretrains_and_beats_pop(tmp_path):
    code = main(["run", "--methods", "pop,s3rec", "--dataset", "synthetic", "--budget", "smoke",
                 "--quiet", "--out", str(tmp_path)])
    assert code == 0
    pop, s3rec = _record(tmp_path, "pop"), _record(tmp_path, "s3rec")
    assert s3rec["metrics"]["test"]["ndcg@10"] > 2 * pop["metrics"]["test"]["ndcg@10"]
    epochs = s3rec["config"]["pretrain_epochs"]
    assert s3rec["extra"]["pretrain"]["epochs_run"] == epochs
    assert set(s3rec["extra"]["pretrain_losses"]) == set(LOSS_NAMES)
    assert len([p for p in s3rec["curve"] if p["stage"] == "pretrain" and "sp" in p]) == epochs


def test_a_pretraining_step_traces_as_one_graph_and_keeps_its_parts_outside_it(split):
    """The four losses are one graph (``run --compile`` can replay it as a CUDA graph); the parts kept for the
    record are copied out of the compiled step, each step one [4] row with the eager step's values."""
    import torch._dynamo as dynamo

    cfg = dataclasses.replace(S3RecConfig(), **{**S3Rec.budgets["smoke"], "dropout": 0.0, "attn_dropout": 0.0})
    model = SASRecModel(split, cfg)
    model.encoder.causal = False
    pretrainer = S3RecPretrainer(split, cfg, model).train()
    windows = pretrainer.windows(split)[:64]
    try:
        explained = dynamo.explain(pretrainer.pretrain_loss)((windows,))
        reasons = [reason.reason for reason in explained.break_reasons]
        assert explained.graph_count == 1 and explained.op_count > 100, reasons  # the losses are the graph
        assert len(reasons) == 1 and "_kept" in reasons[0]  # and the bookkeeping stays out of it
        pretrainer.parts.clear()
        compiled = torch.compile(pretrainer.pretrain_loss, backend="eager")
        for step in (compiled, pretrainer.pretrain_loss):
            torch.manual_seed(2)
            step((windows,))
    finally:
        dynamo.reset()
    assert len(pretrainer.parts) == 2 and pretrainer.parts[0].shape == (len(LOSS_NAMES),)
    torch.testing.assert_close(pretrainer.parts[0], pretrainer.parts[1])
