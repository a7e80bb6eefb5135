"""The unified semantic+ID model: gradients reach the ID table and the quantiser; it runs end to end and beats pop."""

import json

import pytest
import torch

from bench.cli import main
from bench.core.method import FitContext, build_config
from bench.data.dataset import load_dataset
from bench.data.protocol import Protocol, Split
from bench.eval.evaluator import Evaluator
from methods.sid.unified import Unified, UnifiedItems


@pytest.fixture(scope="module")
def split():
    return Split(load_dataset("synthetic"), Protocol())


def _fitted(split, **overrides):
    cfg = build_config(Unified, "unified", "smoke", {"epochs": 1, **overrides})
    ctx = FitContext(device=torch.device("cpu"), seed=0, valid=Evaluator(split, "valid"))
    return Unified(cfg).fit(split, ctx), ctx


def test_gradients_reach_the_id_table_the_text_mlp_and_the_codebooks(split):
    method, _ = _fitted(split)
    items = method.model_.items
    assert isinstance(items, UnifiedItems)
    method.model_.train()
    windows = torch.from_numpy(split.train_windows(split.protocol.history_len)[:32])
    method.model_.zero_grad()
    method.loss((windows,)).backward()
    assert items.ids.weight.grad.abs().sum() > 0
    assert items.semantic.encoder[0].weight.grad.abs().sum() > 0  # through the straight-through codes
    assert all(book.grad.abs().sum() > 0 for book in items.semantic.quantizer.codebooks)  # the codebook loss


def test_two_stage_keeps_the_quantiser_frozen(split):
    method, _ = _fitted(split, two_stage=True)
    items = method.model_.items
    assert not any(p.requires_grad for p in items.semantic.parameters())
    before = [p.clone() for p in items.semantic.parameters()]
    method.model_.train()
    windows = torch.from_numpy(split.train_windows(split.protocol.history_len)[:32])
    method.loss((windows,)).backward()
    assert items.ids.weight.grad is not None
    assert all(torch.equal(a, b) for a, b in zip(before, items.semantic.parameters()))


def test_the_quantiser_picks_its_fitted_codes_under_the_trainers_bf16_autocast(split):
    """The trainer wraps every step in bf16 autocast on CUDA; the quantiser must still pick codes in float32,
    as fitted (here with CPU autocast, which lowers matmuls to bf16 the same way)."""
    method, _ = _fitted(split, two_stage=True)
    items = method.model_.items
    items.eval()
    _, plain = items._semantic()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        rows, lowered = items._semantic()
    assert rows.dtype == torch.float32
    assert torch.equal(plain["codes"], lowered["codes"])


def test_variants_set_the_item_width(split):
    sem_only, _ = _fitted(split, variant="semantic-only")
    id_only, _ = _fitted(split, variant="id-only")
    assert sem_only.model_.items.ids is None and sem_only.model_.items.table().shape[1] == 16
    assert id_only.model_.items.table().shape[1] == 4 + 16  # ID only, at the unified model's total width


def test_bad_distance_fails_before_training(split):
    from bench.core.errors import ConfigError

    with pytest.raises(ConfigError, match="distance"):
        _fitted(split, distance="cosine,manhattan,l2")


def test_unified_runs_end_to_end_on_synthetic_and_beats_pop(tmp_path, capsys):
    code = main(["run", "--methods", "pop,unified", "--dataset", "synthetic", "--budget", "smoke",
                 "--out", str(tmp_path), "--quiet"])
    assert code == 0, capsys.readouterr().err
    records = {m: json.loads((tmp_path / "synthetic" / m / "seed0" / "result.json").read_text())
               for m in ("pop", "unified")}
    assert records["unified"]["metrics"]["test"]["ndcg@10"] > records["pop"]["metrics"]["test"]["ndcg@10"]
    sid = records["unified"]["extra"]["sid"]
    assert sid["kind"] == "unified" and sid["tokenizer"]["name"] == "rqvae"
    assert sid["tokenizer"]["params"]["distance"] == "cosine,cosine,l2"
    levels = sid["diagnostics"]["levels"]
    assert len(levels) == 3 and all(0 < lv["usage"] <= 1 for lv in levels)
    assert 0 < sid["diagnostics"]["unique_share"] <= 1
    params = sid["unified"]["embedding_params"]
    assert params["item_embedding"] == params["id_table"] + params["codebooks"]
    assert params["id_table"] == (1200 + 1) * 4 and params["codebooks"] == 3 * 16 * 16
