"""FAMAE (ReSID's item encoder): target-only masking, exact proxy metrics, training on synthetic; sasrec-emb."""

import copy
import dataclasses

import numpy as np
import pytest
import torch

from bench.data.dataset import load_dataset
from bench.data.protocol import Protocol, Split
from bench.eval.proxy import vector_proxy_recall
from bench.sid.stages import encode_items
from methods.encoders.famae import (
    FAMAE,
    FAMAEModel,
    draw_field_mask,
    famae_loss,
    proxy_metrics,
)
from methods.encoders.sasrec_emb import BERT4RecEmb, SASRecEmb


@pytest.fixture(scope="module")
def split():
    return Split(load_dataset("synthetic"), Protocol(history_len=8))


def tiny_model(split, **kw):
    torch.manual_seed(0)
    return FAMAE(d_model=16, n_layers=1, n_heads=2, d_ff=32, **kw).build(split).eval()


def test_k_is_between_1_and_j_and_every_value_occurs():
    torch.manual_seed(0)
    masked = draw_field_mask(6000, 6)
    k = masked.sum(1)
    assert k.min() == 1 and k.max() == 6
    assert sorted(k.unique().tolist()) == [1, 2, 3, 4, 5, 6]
    assert np.allclose(np.bincount(k.numpy())[1:] / 6000, 1 / 6, atol=0.02)  # K ~ U{1..J}
    assert np.allclose(masked.float().mean(0).numpy(), 7 / 12, atol=0.03)  # each field: E[K] / J


def test_masking_touches_only_the_target_position(split):
    model = tiny_model(split)
    assert model.field_names == ["item", "brand", "cat1", "cat2", "cat3", "price"]
    hist, targets, _ = split.train_examples()
    hist, targets = torch.from_numpy(hist[:64]), torch.from_numpy(targets[:64])
    masked = draw_field_mask(64, model.n_fields)
    with torch.no_grad():
        plain = model.tokens(hist, targets, torch.zeros_like(masked))
        tokens = model.tokens(hist, targets, masked)
        fields = model.field_embeddings(targets)
    assert tokens.shape == (64, hist.shape[1] + 1, 16)
    assert torch.equal(tokens[:, :-1], plain[:, :-1])  # history positions never change
    expected = torch.where(masked[..., None], model.mask_tokens.detach(), fields).sum(1)
    assert torch.allclose(tokens[:, -1], expected, atol=1e-6)  # masked fields -> their own mask token
    assert torch.allclose(plain[:, -1], fields.sum(1), atol=1e-6)
    # a masked field's value never reaches h: with every field masked h ignores the target entirely,
    # and re-coding the target's brand changes h only when the brand is visible
    every = torch.ones_like(masked)
    only_brand = torch.zeros_like(masked)
    only_brand[:, 1] = True
    with torch.no_grad():
        assert torch.allclose(model(hist, targets, every), model(hist, targets.roll(1), every), atol=1e-6)
        before = [model(hist, targets, m)[0] for m in (only_brand, ~only_brand)]
        model.single_codes[targets[0], 1] = (model.single_codes[targets[0], 1] + 1) % model.rows[1]
        after = [model(hist, targets, m)[0] for m in (only_brand, ~only_brand)]
    assert torch.allclose(before[0], after[0], atol=1e-6)
    assert not torch.allclose(before[1], after[1], atol=1e-4)


def hand_set_model():
    """5 items, one side field "color"; the encoder is made an identity up to scale, so h = the target's token.

    Vectors lie in the zero-mean subspace, where the final LayerNorm only rescales (cosines unchanged).
    """
    u1, u2 = torch.tensor([1.0, -1, 0, 0]), torch.tensor([0.0, 0, 1, -1])
    color = np.array([1, 1, 2, 2, 0])
    model = FAMAEModel(5, {"color": color}, vocab_sizes={"color": 2}, d_model=4, n_layers=1, n_heads=1, d_ff=8,
                       history_len=3, dropout=0.0, field_proj=False)
    with torch.no_grad():
        for block in model.encoder.blocks:
            for layer in (block.proj, block.ff[2]):
                layer.weight.zero_()
                layer.bias.zero_()
        model.encoder.pos.weight.zero_()
        items = model.tables[0].weight
        items[:5] = torch.stack([u1, u1 + u2, u2, -u1, u1 + 2 * u2])
        items[5] = 7.0  # padding row: must not matter
        colors = model.tables[1].weight
        colors[0], colors[1], colors[2] = 0.0, 0.0, 10 * u2
        model.mask_tokens[0] = u1
        model.mask_tokens[1] = 0.0
    return model


def test_proxy_metrics_equal_hand_computed_values():
    model = hand_set_model()
    hist = torch.tensor([[5, 5, 3], [5, 1, 2], [0, 1, 2], [4, 4, 4], [5, 5, 5]])
    targets = torch.tensor([0, 1, 2, 3, 4])
    # all fields masked: h = u1 for everyone; cosines to the items 1, .71, 0, -1, .45: order 0 > 1 > 4 > 2 > 3
    # id masked, color visible: items 0, 1, 4 (color 1, 1, missing) see h = u1 again (hits 0 and 1 at k=2);
    # items 2, 3 (color 2) see h = u1 + 10 u2: order 2 > 4 > 1 > 0 > 3, so 2 is a hit and 3 a miss
    out = proxy_metrics(model, hist, targets, k=2)
    assert out == pytest.approx({"proxy_item_recall@2": 2 / 5, "proxy_id_recall@2": 3 / 5}, abs=1e-9)
    # at k=3 item 4 (third under h = u1) becomes a hit in both; batching does not change the values
    out = proxy_metrics(model, hist, targets, k=3, batch_size=2)
    assert out == pytest.approx({"proxy_item_recall@3": 3 / 5, "proxy_id_recall@3": 4 / 5}, abs=1e-9)
    assert model.item_vectors().shape == (5, 8)
    assert torch.equal(model.item_vectors()[2], torch.cat([model.tables[0].weight[2], model.tables[1].weight[2]]))


def test_ties_count_as_their_expectation():
    model = hand_set_model()
    with torch.no_grad():
        model.tables[0].weight[:5] = torch.tensor([1.0, -1, 0, 0])  # every item scores the same
    out = proxy_metrics(model, torch.full((5, 3), 5), torch.arange(5), k=2)
    assert out["proxy_item_recall@2"] == pytest.approx(2 / 5)


def test_loss_is_the_sum_of_the_masked_fields_cross_entropies():
    model = hand_set_model()
    hist, targets = torch.full((2, 3), 5), torch.tensor([0, 2])
    masked = torch.tensor([[True, True], [True, False]])
    h = model(hist, targets, masked)
    id_ce = torch.nn.functional.cross_entropy(model.field_scores(0, h), targets, reduction="none")
    color_ce = torch.nn.functional.cross_entropy(model.field_scores(1, h[:1]), torch.tensor([1]))
    got = famae_loss(model, hist, targets, masked, alpha=[1.0, 0.5])
    assert got.item() == pytest.approx(((id_ce.sum() + 0.5 * color_ce) / 2).item(), rel=1e-5)
    sampled = famae_loss(model, hist, targets, masked, negatives=3, negatives_above=2)
    assert torch.isfinite(sampled)


def test_loss_has_fixed_shapes_whichever_fields_are_masked(split):
    # one graph without breaks: selecting the masked rows made the shapes change from batch to batch
    # (and cost a host sync per field), and CUDA graphs (`--compile reduce-overhead`) need fixed shapes
    model = tiny_model(split)
    hist, targets, _ = split.train_examples()
    hist, targets = torch.from_numpy(hist[:16]), torch.from_numpy(targets[:16])
    masked = draw_field_mask(16, model.n_fields)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(famae_loss)(model, hist, targets, masked)
    torch._dynamo.reset()
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons
    none = famae_loss(model, hist, targets, torch.zeros_like(masked))
    assert none.item() == 0.0  # nothing masked, nothing to predict


def test_bags_are_used_only_without_single_valued_fields(split):
    ds = split.dataset
    bag = np.zeros((ds.n_items, 3), dtype=np.int64)
    bag[:, 0] = ds.fields["cat3"]
    bag[::2, 1] = ds.fields["brand"][::2] + 40
    bagged = dataclasses.replace(ds, fields={}, bags={"attributes": bag}, vocabs={"attributes": ["x"] * 101})
    model = FAMAE(d_model=8, n_layers=1, n_heads=2, d_ff=16).build(Split(bagged, split.protocol))
    assert model.field_names == ["item", "attributes"] and model.n_classes[1] == 101
    both = dataclasses.replace(ds, bags={"attributes": bag}, vocabs={**ds.vocabs, "attributes": ["x"] * 101})
    assert "attributes" not in FAMAE(d_model=8, n_heads=2).build(Split(both, split.protocol)).field_names
    hist, targets, _ = split.train_examples()
    loss = famae_loss(model, torch.from_numpy(hist[:32]), torch.from_numpy(targets[:32]),
                      torch.ones(32, 2, dtype=torch.bool))
    assert torch.isfinite(loss) and loss > 0


def test_famae_trains_and_beats_chance(split):
    encoder = FAMAE(d_model=32, n_layers=1, n_heads=2, d_ff=64, epochs=2, batch_size=512, lr=5e-3).fit(split)
    n_fields = 1 + len(split.dataset.fields)
    assert encoder.item_vectors_.shape == (split.n_items, n_fields * 32)
    assert encoder.item_vectors_.dtype == np.float32
    info = encoder.fit_info_
    assert set(info) >= {"proxy", "epochs", "best_epoch", "seconds"}
    recall = info["proxy"]["valid"]["proxy_item_recall@10"]
    chance = 10 / split.n_items
    assert recall > 5 * chance, info  # about 9x after 2 epochs
    assert info["proxy"]["valid"]["proxy_id_recall@10"] >= recall  # side fields only help
    assert "test" in info["proxy"]
    # the item-to-item proxy works on any vectors: trained ones beat random ones
    trained = vector_proxy_recall(encoder.item_vectors_, split)
    random = vector_proxy_recall(np.random.default_rng(0).normal(size=encoder.item_vectors_.shape), split)
    assert trained > random


def test_vector_proxy_recall_is_chance_without_information(split):
    flat = np.zeros((split.n_items, 0), dtype=np.float32)
    assert vector_proxy_recall(flat, split, k=10) == pytest.approx(10 / (split.n_items - 1))


def perturbed_targets(split):
    """The same training sequences with different validation and test items."""
    def shift(items):
        return (items + 1) % split.n_items

    other = copy.copy(split)
    other.valid_targets, other.test_targets = shift(split.valid_targets), shift(split.test_targets)
    other.dataset = dataclasses.replace(split.dataset, sequences=[
        np.concatenate([s[:-2], shift(s[-2:])]) for s in split.dataset.sequences])
    return other


def test_sasrec_emb_gives_one_vector_per_item_from_training_sequences_only(split):
    params = {"d_model": 16, "n_layers": 1, "d_ff": 32, "epochs": 2, "batch_size": 512, "lr": 3e-3}
    vectors, meta = encode_items("sasrec-emb", params, split, None)  # through the registry and the stage cache
    assert vectors.shape == (split.n_items, 16) and vectors.dtype == np.float32
    assert meta["fit_info"]["epochs"] == 2 and meta["dim"] == 16 and meta["fit_info"]["holdout"]
    b = SASRecEmb(**params).fit(perturbed_targets(split))
    assert np.array_equal(vectors, b.item_vectors_)
    c = SASRecEmb(**params, holdout=False).fit(perturbed_targets(split))
    assert c.item_vectors_.shape == (split.n_items, 16)


def test_bert4rec_emb_gives_one_vector_per_item_from_training_sequences_only(split):
    """ReSID's E3 encoder: a cloze-trained BERT4Rec's item table, blind to the validation and test targets."""
    params = {"d_model": 16, "n_layers": 1, "d_ff": 32, "epochs": 2, "batch_size": 512, "lr": 3e-3}
    vectors, meta = encode_items("bert4rec-emb", params, split, None)
    assert vectors.shape == (split.n_items, 16) and vectors.dtype == np.float32
    assert meta["fit_info"]["epochs"] == 2 and meta["fit_info"]["holdout"]
    b = BERT4RecEmb(**params).fit(perturbed_targets(split))
    assert np.array_equal(vectors, b.item_vectors_)
    assert not np.allclose(vectors, SASRecEmb(**params).fit(split).item_vectors_)  # another model, other vectors
