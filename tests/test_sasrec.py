import json

import pytest
import torch
import torch._dynamo as dynamo

from bench.cli import main
from bench.core.method import build_config
from bench.data.dataset import load_dataset
from bench.data.protocol import Protocol, Split
from methods.id.bert4rec import BERT4Rec, BERT4RecModel
from methods.id.sasrec import SASRec, SASRecBCE, SASRecConfig, SASRecModel, SASRecStar


@pytest.fixture(scope="module")
def split():
    return Split(load_dataset("synthetic"), Protocol(history_len=8))


@pytest.mark.parametrize("item_fields", [False, True])
def test_causal_mask_never_lets_a_position_see_the_future(split, item_fields):
    torch.manual_seed(0)
    model = SASRecModel(split, SASRecConfig(d_model=16, n_layers=2, d_ff=32, item_fields=item_fields)).eval()
    hist = torch.tensor([[split.pad, split.pad, 3, 7, 11, 19, 23, 42]])
    changed = hist.clone()
    changed[0, 6] = 99  # change a future item (position 6)
    with torch.no_grad():
        a, b = model.hidden(hist), model.hidden(changed)
    assert torch.allclose(a[0, :6], b[0, :6], atol=1e-6)  # earlier positions do not move
    assert not torch.allclose(a[0, 6:], b[0, 6:])  # the changed and later positions do


def test_padding_does_not_change_the_prediction(split):
    torch.manual_seed(0)
    model = SASRecModel(split, SASRecConfig(d_model=16, n_layers=2, d_ff=32)).eval()
    short = torch.tensor([[split.pad] * 5 + [3, 7, 11]])
    with torch.no_grad():
        full = model.score(short)
    # the same history with learned positions shifted would differ; the padding itself must be inert:
    other_pad = short.clone()
    with torch.no_grad():
        model.items.ids.weight[split.pad] += 5.0  # changing the pad row must not matter
        assert torch.allclose(model.score(other_pad), full, atol=1e-5)


def test_smoke_budget_beats_pop_on_synthetic(tmp_path):
    code = main(["run", "--methods", "pop,sasrec,sasrec-bce,sasrec-star", "--dataset", "synthetic",
                 "--budget", "smoke", "--quiet", "--out", str(tmp_path)])
    assert code == 0
    ndcg = {m: json.loads((tmp_path / "synthetic" / m / "seed0" / "result.json").read_text())
            for m in ("pop", "sasrec", "sasrec-bce", "sasrec-star")}
    pop = ndcg["pop"]["metrics"]["test"]["ndcg@10"]
    for method in ("sasrec", "sasrec-bce", "sasrec-star"):
        record = ndcg[method]
        assert record["metrics"]["test"]["ndcg@10"] > 2 * pop, method
        assert record["config"]["loss"] == ("bce" if method == "sasrec-bce" else "ce")
        assert record["extra"]["train"]["best_epoch"] >= 0
        assert len([p for p in record["curve"] if p["stage"] == "train"]) == record["extra"]["train"]["epochs_run"]


@pytest.mark.parametrize("method_cls", [SASRec, SASRecBCE, SASRecStar, BERT4Rec])
def test_a_compiled_training_step_is_one_graph_with_the_eager_steps_loss(split, method_cls):
    """Compiled, the ID models' losses score every position and leave the others out of the mean, so no shape
    depends on the data: a step is one graph, which ``--compile reduce-overhead`` can replay (the positions
    picked by indexing broke it in three, with shapes that changed at every step). Eager, they index the
    positions out (fewer rows to score). Both give the same loss."""
    torch.manual_seed(0)
    method = method_cls(build_config(method_cls, "m", "smoke", {}))
    bert = method_cls is BERT4Rec
    method.model_ = (BERT4RecModel if bert else SASRecModel)(split, method.config)
    length = split.protocol.history_len
    windows = torch.from_numpy((split.train_windows(length, min_items=1) if bert else split.train_windows(length))[:64])
    try:
        explained = dynamo.explain(method.loss)((windows,))
        assert explained.graph_count == 1 and not explained.break_reasons, explained.break_reasons
        losses = []
        for step in (method.loss, torch.compile(method.loss, backend="eager")):
            torch.manual_seed(3)
            losses.append(step((windows,)).item())
    finally:
        dynamo.reset()
    if getattr(method.config, "loss", None) != "bce":  # bce draws a negative per row: as many rows as it scores
        assert losses[1] == pytest.approx(losses[0], rel=1e-5)
