"""The shared residual quantiser (bench.sid.quantize) and RQ-VAE on it."""

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.core.errors import ConfigError
from bench.sid.quantize import QuantizerOutput, ResidualQuantizer, train_quantizer
from bench.sid.tokenizer import check_tokenizer
from methods.tokenizers.rqvae import RQVAE, RQVAEModel

FIXTURE = Path(__file__).parent / "fixtures" / "rqvae_codes.npz"
FIXTURE_PARAMS = {"latent_dim": 8, "hidden": (32, 16), "n_levels": 3, "codebook_size": 16, "epochs": 40,
                  "batch_size": 64, "seed": 3}


@pytest.fixture(scope="module")
def fixture_fit():
    """RQ-VAE fitted as the fixture was made (before the quantiser moved to bench.sid.quantize)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with np.load(FIXTURE) as arrays:
        data = {name: arrays[name] for name in arrays.files}
    tok = RQVAE(**FIXTURE_PARAMS)
    tok.device = "cpu"
    tok.fit(data["vectors"])
    torch.set_num_threads(before)
    return tok, data


def test_rqvae_codes_and_costs_match_the_fixture(fixture_fit):
    tok, data = fixture_fit
    np.testing.assert_array_equal(tok.codes_, data["codes"])
    assert tok.last_costs_.dtype == data["last_costs"].dtype
    # costs to float rounding: CPUs with other vector units sum in another order (codes stay exact)
    np.testing.assert_allclose(tok.last_costs_, data["last_costs"], rtol=1e-4, atol=1e-6)
    assert tok.fit_info_["distance"] == ["l2"] * 3 and tok.fit_info_["assignment"] == ["nearest"] * 3


def test_rqvae_state_round_trip_encodes_the_same(fixture_fit, one_torch_thread):
    tok, data = fixture_fit
    state = tok.get_state()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    assert {"input_mean", "input_scale", "model.quantizer.codebooks.0"} <= set(state)
    np.testing.assert_array_equal(tok.encode(data["vectors"]), tok.codes_)  # re-encoding gives the fitted codes

    restored = RQVAE(**FIXTURE_PARAMS).set_state(state)
    restored.device = "cpu"
    np.testing.assert_array_equal(restored.encode(data["vectors"]), tok.codes_)
    assert restored.codebook_sizes == tok.codebook_sizes
    with pytest.raises(ConfigError, match="does not fit this tokenizer's parameters"):
        RQVAE(**{**FIXTURE_PARAMS, "latent_dim": 4}).set_state(state)
    with pytest.raises(ConfigError, match="expected vectors of dimension 24"):
        restored.encode(data["vectors"][:, :10])


def _quantizer(distance: str, codebooks: list[list[list[float]]], assignment: str = "nearest") -> ResidualQuantizer:
    quantizer = ResidualQuantizer(len(codebooks), len(codebooks[0]), len(codebooks[0][0]), distance, assignment)
    with torch.no_grad():
        for codebook, values in zip(quantizer.codebooks, codebooks):
            codebook.copy_(torch.tensor(values))
    return quantizer


@pytest.mark.parametrize("distance, expected", [
    ("cosine,l2", [0, 0]), ("cosine,cosine", [0, 1]), ("l2,l2", [1, 0]), ("l2,cosine", [1, 1]),
])
def test_cosine_and_l2_pick_their_own_codes(distance, expected):
    # r = (1, 0.1): l2 picks the near (0.5, 0.5), cosine the far but aligned (10, 0). The residual then
    # subtracts the chosen codeword, and the second level's two distances disagree again.
    codebooks = [[[10.0, 0.0], [0.5, 0.5]], [[-1.0, 0.2], [-30.0, 0.0]]]
    quantizer = _quantizer(distance, codebooks).eval()
    r = torch.tensor([[1.0, 0.1]])
    out = quantizer(r)
    assert out.codes.tolist() == [expected]
    first = torch.tensor(codebooks[0][expected[0]])
    torch.testing.assert_close(out.residuals[1], r - first)
    torch.testing.assert_close(out.quantised, first + torch.tensor(codebooks[1][expected[1]])[None])


def test_row_losses_average_to_the_quantisers_own_terms():
    torch.manual_seed(0)
    rq = ResidualQuantizer(3, 5, 4)
    with torch.no_grad():
        for codebook in rq.codebooks:
            codebook.normal_()
    out = rq(torch.randn(7, 4))
    rows = out.row_losses(0.25)
    assert rows.shape == (7,)
    assert rows.mean().item() == pytest.approx((out.codebook_loss + 0.25 * out.commitment_loss).item(), rel=1e-6)


def test_soft_assign_is_a_distribution_per_level_that_favours_the_codes():
    torch.manual_seed(0)
    quantizer = ResidualQuantizer(2, (5, 3), 4, distance="cosine,l2")
    with torch.no_grad():
        for codebook in quantizer.codebooks:
            codebook.normal_()
    latent = torch.randn(20, 4, requires_grad=True)
    probabilities = quantizer.soft_assign(latent, temperature=0.5)
    assert [p.shape for p in probabilities] == [(20, 5), (20, 3)]
    for p, codes in zip(probabilities, quantizer(latent.detach()).codes.T):
        torch.testing.assert_close(p.sum(1), torch.ones(20))
        assert torch.equal(p.argmax(1), codes)
    sum(p[:, 0].sum() for p in probabilities).backward()
    assert latent.grad.abs().sum() > 0 and quantizer.codebooks[0].grad.abs().sum() > 0


def test_sinkhorn_balances_codes_that_nearest_piles_on_one():
    # 64 points around the origin; one codeword there, three far away: nearest gives all 64 the first code
    gen = torch.Generator().manual_seed(0)
    points = torch.rand(64, 2, generator=gen) - 0.5
    quantizer = _quantizer("l2", [[[0.0, 0.0], [3.0, 0.0], [0.0, 3.0], [-3.0, 0.0]]], assignment="sinkhorn")
    nearest = quantizer.eval()(points).codes[:, 0]
    assert torch.bincount(nearest, minlength=4).tolist() == [64, 0, 0, 0]
    balanced = quantizer.train()(points).codes[:, 0]  # training mode: the balanced assignment
    counts = torch.bincount(balanced, minlength=4)
    assert counts.min() >= 8 and counts.max() <= 32, counts.tolist()  # LETTER's 50 iterations: within 2x of even
    quantizer.sinkhorn_iterations = 1000  # run to convergence: exactly even
    assert torch.bincount(quantizer(points).codes[:, 0], minlength=4).tolist() == [16, 16, 16, 16]
    assert points[balanced == 1, 0].mean() > points[balanced == 3, 0].mean()  # still by geometry
    assert torch.equal(quantizer(points, balanced=False).codes[:, 0], nearest)  # asked for nearest in training


def _tiny_model(seed: int = 0) -> tuple[RQVAEModel, torch.Tensor]:
    torch.manual_seed(seed)
    x = torch.randn(40, 6)
    model = RQVAEModel(6, [8], 4, 2, 4, ["l2", "l2"], ["nearest", "nearest"])
    with torch.no_grad():
        latent = model.encoder(x)
    model.quantizer.init_codebooks(latent, lambda r, k, level: (r[:k].copy(), np.arange(len(r)) % k),
                                   torch.Generator())
    return model, x


def _train(model, x, **hooks):
    return train_quantizer(model, x, epochs=3, batch_size=16, lr=1e-2, generator=torch.Generator().manual_seed(0),
                           **hooks)


def test_extra_loss_hook_is_called_and_changes_the_weights(one_torch_thread):
    model, x = _tiny_model()
    plain, hooked = copy.deepcopy(model), copy.deepcopy(model)
    calls, epochs = [], []

    def extra_loss(batch_index, x_batch, output):
        assert isinstance(output, QuantizerOutput) and output.reconstruction is not None
        assert torch.equal(x_batch, x[batch_index])
        calls.append(batch_index.clone())
        return output.quantised.pow(2).mean() + output.codewords[0].pow(2).mean()

    base = _train(plain, x)
    result = _train(hooked, x, extra_loss=extra_loss, on_epoch=epochs.append)
    assert len(calls) == result.steps == 3 * 3 and epochs == [0, 1, 2]
    assert torch.equal(torch.sort(torch.cat(calls[:3]).unique()).values, torch.arange(40))  # an epoch sees every row
    assert result.epoch_losses.shape == (3, 4) and (result.epoch_losses[:, 3] > 0).all()
    assert (base.epoch_losses[:, 3] == 0).all()
    changed = [name for (name, a), b in zip(plain.named_parameters(), hooked.parameters()) if not torch.equal(a, b)]
    assert "encoder.0.weight" in changed and "quantizer.codebooks.0" in changed
    again = copy.deepcopy(model)
    _train(again, x)  # same seed, no hook: the same weights as the first plain run
    assert all(torch.equal(a, b) for a, b in zip(plain.parameters(), again.parameters()))


def test_rqvae_with_distance_and_assignment_per_level_passes_the_contract(one_torch_thread):
    params = {"latent_dim": 4, "hidden": (16,), "n_levels": 3, "codebook_size": 8, "epochs": 3, "batch_size": 64,
              "distance": "cosine,cosine,l2", "assignment": "nearest,nearest,sinkhorn"}
    check_tokenizer(RQVAE, **params)
    tok = RQVAE(**params).fit(np.random.default_rng(0).normal(size=(100, 12)).astype(np.float32))
    assert tok.fit_info_["distance"] == ["cosine", "cosine", "l2"]
    assert tok.fit_info_["assignment"] == ["nearest", "nearest", "sinkhorn"]


@pytest.mark.parametrize("params, message", [
    ({"distance": "cosine,foo"}, r"distance: expected one name or 3 comma-separated names .* found 2 in 'cosine,foo'"),
    ({"distance": "cosine,foo,l2"}, r"distance: expected each level's name to be one of l2, cosine, found 'foo'"),
    ({"distance": "cosine,l2"}, r"distance: expected one name or 3 .* found 2"),
    ({"assignment": "balanced"}, r"assignment: expected each level's name to be one of nearest, sinkhorn, "
                                 r"found 'balanced'"),
])
def test_bad_distance_or_assignment_fails_before_training(params, message):
    # vectors of dimension 0 would fail the fit's first step: the option check must come before it
    with pytest.raises(ConfigError, match=message):
        RQVAE(n_levels=3, **params).fit(np.zeros((5, 0), dtype=np.float32))
