import json

import numpy as np
import pytest
import torch

from bench.cli import main
from bench.core.errors import ConfigError
from bench.sid.generator import GeneratorConfig, SIDGenerator
from bench.sid.quantize import ResidualQuantizer
from bench.sid.tokenizer import ItemViews, _tiny_vectors, check_tokenizer
from methods.tokenizers.clustering import balanced_kmeans, kmeans
from methods.tokenizers.letter import DiversityTargets, Letter

TINY = {"latent_dim": 8, "hidden": (32, 16), "codebook_size": 16, "epochs": 6, "eval_every": 3, "batch_size": 64}


def views(n: int, dim: int = 16, collab_dim: int = 8) -> tuple[np.ndarray, ItemViews]:
    x = _tiny_vectors(n, dim, seed=0)
    return x, ItemViews({"main": x, "collab": _tiny_vectors(n, collab_dim, seed=3)}, {})


def test_letter_meets_the_tokenizer_contract(one_torch_thread):
    facts = check_tokenizer(Letter, n_items=300, dim=16, **TINY)
    assert facts["n_levels"] == 4 and facts["codebook_sizes"] == [16] * 4


def test_balanced_kmeans_keeps_cluster_sizes_within_bounds():
    # a dense blob of 200 points and 56 scattered ones: plain k-means gives the blob clusters of 100 and more
    gen = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(200, 4, generator=gen), 5 * torch.randn(56, 4, generator=gen)])[None]
    _, plain = kmeans(x[0].numpy(), 8, seed=0)
    assert np.bincount(plain, minlength=8).max() > 40
    _, labels, counts = balanced_kmeans(x, 8, 20, 40, torch.rand(5, 256, generator=gen))
    sizes = torch.bincount(labels[0], minlength=8)
    assert torch.equal(sizes, counts[0].long())
    assert sizes.min() >= 20 and sizes.max() <= 40


def test_diversity_positives_share_the_cluster_and_never_the_code():
    levels, size, clusters = 2, 30, 3
    targets = DiversityTargets(levels, size, clusters, n_items=50, device=torch.device("cpu"))
    # three far-apart groups of 10 codes per level: the clustering must find them
    centres = torch.tensor([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
    codebooks = (centres.repeat_interleave(10, 0) + torch.randn(size, 2))[None].repeat(levels, 1, 1)
    targets.redraw(torch.Generator().manual_seed(1))
    targets.refresh(codebooks)
    group = torch.arange(size) // 10
    for level in range(levels):
        labels = targets.cluster_of[level]
        assert all(len(set(labels[group == g].tolist())) == 1 for g in range(3))
        assert torch.equal(targets.count[level].sort().values, torch.tensor([10, 10, 10]))
    codes = torch.arange(50) % size
    chosen = codebooks[0][codes].clone().requires_grad_(True)
    for seed in range(5):
        targets.redraw(torch.Generator().manual_seed(seed))
        group_of = targets.cluster_of[0][codes]
        pick = (targets.draws[:, 0] * (targets.count[0][group_of] - 1)).long()
        pick = pick + (pick >= targets.position[0][codes]).long()
        positive = targets.members[0][group_of, pick]
        assert (positive != codes).all()
        assert torch.equal(targets.cluster_of[0][positive], group_of)
    loss = targets.loss(0, codes, chosen, codebooks[0], torch.arange(50))
    loss.backward()
    assert torch.isfinite(loss) and chosen.grad.abs().sum() > 0


def test_detached_residuals_leave_only_the_first_commitment_term_on_the_encoder():
    torch.manual_seed(0)
    latent = torch.randn(6, 4, requires_grad=True)
    for detach in (False, True):
        rq = ResidualQuantizer(3, 5, 4, detach_residuals=detach)
        with torch.no_grad():
            for codebook in rq.codebooks:
                codebook.normal_()
        latent.grad = None
        out = rq(latent)
        out.commitment_loss.backward()
        first = 2 * (latent - out.codewords[0]).detach() / latent.numel()
        assert torch.allclose(latent.grad, first) == detach


def test_collision_rounds_separate_items_that_share_a_sid():
    tok = Letter(n_levels=2, codebook_size=4, collision_rounds=5)
    codes = np.array([[0, 1], [0, 1], [0, 1], [1, 2]])
    costs = torch.tensor([[0.1, 0.2, 0.9, 0.9], [0.2, 0.1, 0.9, 0.9], [0.3, 0.3, 0.1, 0.9], [0.5, 0.5, 0.5, 0.1]])
    new, rates = tok._rounds(codes, costs)
    assert rates[0] == pytest.approx(0.5) and rates[-1] == 0.0
    assert len(np.unique(new, axis=0)) == 4 and np.array_equal(new[:, 0], codes[:, 0])


def test_fit_records_the_letter_facts(one_torch_thread):
    x, v = views(400)
    tok = Letter(**TINY).fit(x, None, views=v)
    info = tok.fit_info_
    assert [e["epoch"] for e in info["collision_rate_evaluations"]] == [3, 6]
    assert info["selected_epoch"] in (3, 6)
    assert sum(info["loss_shares"].values()) == pytest.approx(1.0, abs=1e-4)
    assert all(info["loss_shares"][k] > 0 for k in ("recon", "codebook", "commitment", "collaborative", "diversity"))
    assert len(info["codebook_usage"]) == 4 and info["collision_rate_rounds"][-1] <= info["collision_rate_rounds"][0]
    assert 0 <= info["diversity_clusters_out_of_bounds"] <= 1
    # get_state / set_state round trip: the restored model gives the nearest codes the fit measured
    again = Letter(**TINY).set_state(tok.get_state())
    nearest = again.encode(x)
    assert nearest.shape == (400, 4)


def test_the_collaborative_view_must_match_the_latent_width():
    x, v = views(100, collab_dim=5)
    with pytest.raises(ConfigError, match="collaborative view must be"):
        Letter(**TINY).fit(x, None, views=v)
    with pytest.raises(ConfigError, match="d_model=64 but latent_dim is 32"):
        Letter.check_params(Letter().get_params(), {"collab": ("sasrec-emb", {"d_model": 64})})
    with pytest.raises(ConfigError, match="select"):
        Letter.check_params({**Letter().get_params(), "select": "best"}, {})


def test_bad_letter_options_fail_before_anything_trains(tmp_path, capsys):
    for option, expected in (("view_collab=sasrec-emb:d_model=16", "d_model=16 but latent_dim is 32"),
                             ("view_collab=sasrec-emb:dmodel=32", "view_collab"),
                             ("tok_alpha=-1", "alpha"), ("tau=0", "tau")):
        code = main(["run", "--methods", "letter", "--dataset", "synthetic", "--budget", "smoke",
                     "--out", str(tmp_path), "--set", option, "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and expected in err, (option, err)
        assert not (tmp_path / "synthetic").exists()


def test_tau_divides_the_generation_logits():
    codes = torch.tensor([[0, 1], [1, 0], [2, 2]])
    base = GeneratorConfig(d_model=16, n_enc_layers=1, n_dec_layers=1, n_heads=2, d_head=8, d_ff=32)
    histories, users, targets = torch.tensor([[1, 2], [0, 3]]), torch.zeros(2, dtype=torch.long), torch.tensor([2, 0])
    losses = {}
    for tau in (1.0, 0.5):
        torch.manual_seed(0)
        model = SIDGenerator(GeneratorConfig(**{**vars(base), "tau": tau}), codes, [3, 3], history_len=2).eval()
        logits = model(histories, users, targets)
        labels = model.item_tokens[targets]
        expected = torch.nn.functional.cross_entropy(logits.flatten(0, 1) / tau, labels.flatten())
        losses[tau] = model.loss(histories, users, targets)
        assert torch.allclose(losses[tau], expected)
    assert not torch.allclose(losses[1.0], losses[0.5])


def test_letter_runs_end_to_end_on_synthetic_and_beats_pop(tmp_path, capsys, one_torch_thread):
    code = main(["run", "--methods", "pop,letter", "--dataset", "synthetic", "--budget", "smoke",
                 "--out", str(tmp_path), "--quiet"])
    assert code == 0, capsys.readouterr().err
    records = {m: json.loads((tmp_path / "synthetic" / m / "seed0" / "result.json").read_text())
               for m in ("pop", "letter")}
    assert records["letter"]["metrics"]["test"]["ndcg@10"] > records["pop"]["metrics"]["test"]["ndcg@10"]
    sid = records["letter"]["extra"]["sid"]
    assert sid["tokenizer"]["name"] == "letter" and sid["views"]["collab"]["name"] == "sasrec-emb"
    assert sid["views"]["collab"]["params"]["d_model"] == 32
    assert sid["collisions"]["method"] == "hungarian" and "items_moved" in sid["collisions"]
    assert set(sid["tokenizer"]["fit_info"]["loss_shares"]) == {"recon", "codebook", "commitment", "collaborative",
                                                                "diversity"}
    assert records["letter"]["config"]["tau"] == 1.0
