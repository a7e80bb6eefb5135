import json
from types import SimpleNamespace

import numpy as np
import pytest

from bench.core import registry
from bench.core.errors import ConfigError, DataError
from bench.sid.tokenizer import check_tokenizer
from methods.tokenizers.clustering import kmeans
from methods.tokenizers.hkmeans import HKMeans
from methods.tokenizers.lsh import LSH
from methods.tokenizers.precomputed import Precomputed
from methods.tokenizers.random_ids import RandomIDs
from methods.tokenizers.rqkmeans import RQKMeans
from methods.tokenizers.rqvae import RQVAE


def planted(n_per: int = 40, n_clusters: int = 6, dim: int = 12, spread: float = 0.1, seed: int = 0):
    """Vectors around ``n_clusters`` far-apart centres, and each vector's cluster."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim)) * 10
    labels = np.repeat(np.arange(n_clusters), n_per)
    return (centres[labels] + spread * rng.normal(size=(len(labels), dim))).astype(np.float32), labels


def fake_dataset(n_items: int, first_id: int = 1):
    return SimpleNamespace(item_ids=[str(first_id + i) for i in range(n_items)], n_items=n_items)


def write_index(path, n_items: int, n_levels: int = 3, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    index = {str(i): [f"<{chr(97 + level)}_{int(rng.integers(0, 10))}>" for level in range(n_levels)]
             for i in range(n_items)}
    path.write_text(json.dumps(index))
    return index


def test_tokenizers_are_registered():
    assert {"rqkmeans", "hkmeans", "lsh", "random", "precomputed", "rqvae"} <= set(registry.names("tokenizer"))
    assert registry.get("tokenizer", "rqvae") is RQVAE


@pytest.mark.parametrize("cls, params", [
    (RQKMeans, {"n_levels": 2, "codebook_size": 16}),
    (HKMeans, {"branching": (4, 3, 5)}),
    (LSH, {"n_levels": 2, "bits_per_level": 4}),
    (RandomIDs, {"n_levels": 2, "codebook_size": 20}),
    (RQVAE, {"latent_dim": 4, "hidden": (16,), "n_levels": 2, "codebook_size": 8, "epochs": 3, "batch_size": 64}),
])
def test_contract(cls, params, one_torch_thread):
    facts = check_tokenizer(cls, **params)
    assert facts["codes"].dtype == np.int64
    tok = cls(**params).fit(planted()[0])
    assert type(tok.codes_) is np.ndarray and tok.codes_.dtype == np.int64


def test_precomputed_contract(tmp_path):
    path = tmp_path / "index.json"
    write_index(path, 300)

    facts = check_tokenizer(Precomputed, dataset=fake_dataset, path=str(path))
    assert facts["n_levels"] == 3 and facts["codebook_sizes"] == [10, 10, 10]


def test_kmeans_small_and_duplicate_groups():
    x = np.array([[0, 0], [0, 0], [1, 1], [5, 5]], dtype=np.float32)
    centres, labels = kmeans(x, 8)
    assert len(centres) == 3 and labels[0] == labels[1] and len(set(labels.tolist())) == 3
    np.testing.assert_array_equal(centres[labels], x)


def test_rqkmeans_puts_each_planted_cluster_in_its_own_first_code():
    x, labels = planted()
    tok = RQKMeans(n_levels=3, codebook_size=6).fit(x)
    first = tok.codes_[:, 0]
    for c in range(6):
        assert len(set(first[labels == c].tolist())) == 1
    assert len(set(first.tolist())) == 6
    assert [c.shape for c in tok.centroids_] == [(6, 12)] * 3
    assert tok.last_costs_.shape == (len(x), 6) and tok.last_costs_.dtype == np.float32
    np.testing.assert_array_equal(tok.last_costs_.argmin(1), tok.codes_[:, -1])


def test_rqkmeans_with_fewer_distinct_points_than_codes():
    x = np.repeat(np.eye(3, dtype=np.float32), 5, axis=0)
    tok = RQKMeans(n_levels=2, codebook_size=8).fit(x)
    assert tok.codebook_sizes == [8, 8] and len(set(tok.codes_[:, 0].tolist())) == 3
    assert (tok.codes_[:, 1] == 0).all()  # residuals are all zero
    assert tok.last_costs_.shape == (15, 8)
    assert (tok.last_costs_[:, 1:] > tok.last_costs_[:, :1]).all()  # codes without a centroid cost more


def test_hkmeans_local_children_and_shared_prefixes():
    x, labels = planted(n_per=30, n_clusters=4)
    tok = HKMeans(branching=(4, 3, 5)).fit(x)
    for level, b in enumerate((4, 3, 5)):
        assert tok.codes_[:, level].max() < b
    for c in range(4):
        assert len(set(tok.codes_[labels == c, 0].tolist())) == 1
    assert len(set(tok.codes_[:, 0].tolist())) == 4
    # children are numbered locally: the same child code appears under several parents
    assert len({tuple(r) for r in tok.codes_[:, :2]}) > 3
    assert set(tok.centroids_[0]) == {()}
    assert all(len(prefix) == 1 and centres.shape[1] == 12 for prefix, centres in tok.centroids_[1].items())
    assert tok.last_costs_.shape == (len(x), 5)


def test_hkmeans_small_group_gets_one_child_per_item():
    x = np.array([[0, 0], [0, 0.1], [0, 0.2], [10, 10], [10, 10.1]], dtype=np.float32)
    tok = HKMeans(branching=(2, 4)).fit(x)
    assert tok.codes_[:3, 0].tolist() == [tok.codes_[0, 0]] * 3
    assert sorted(tok.codes_[:3, 1].tolist()) == [0, 1, 2] and sorted(tok.codes_[3:, 1].tolist()) == [0, 1]


def test_lsh_codes_in_range_and_stable():
    x, _ = planted()
    x[1] = x[0]
    tok = LSH(n_levels=3, bits_per_level=5).fit(x)
    assert tok.codebook_sizes == [32, 32, 32]
    assert tok.codes_.min() >= 0 and tok.codes_.max() < 32
    np.testing.assert_array_equal(tok.codes_[0], tok.codes_[1])
    assert not np.array_equal(LSH(seed=1).fit(x).codes_, LSH(seed=0).fit(x).codes_)


def test_random_unique_and_ignores_vectors():
    a = RandomIDs(n_levels=2, codebook_size=10).fit(np.zeros((95, 0), dtype=np.float32))
    b = RandomIDs(n_levels=2, codebook_size=10).fit(planted(n_per=19, n_clusters=5)[0])
    assert len({tuple(r) for r in a.codes_}) == 95
    np.testing.assert_array_equal(a.codes_, b.codes_)
    with pytest.raises(ConfigError, match="only 100"):
        RandomIDs(n_levels=2, codebook_size=10).fit(np.zeros((101, 0)))


def test_rqvae_learns_on_clustered_data(one_torch_thread):
    x, _ = planted(n_per=50, n_clusters=8, dim=16, spread=1.0)
    tok = RQVAE(latent_dim=8, hidden=(64, 32), n_levels=2, codebook_size=8, epochs=150, batch_size=128,
                lr=3e-3).fit(x)
    info = tok.fit_info_
    assert info["codebook_usage"][0] >= 0.75
    assert info["recon_loss_final"] < 0.8 * info["recon_loss_init"]
    assert tok.last_costs_.shape == (400, 8) and tok.last_costs_.dtype == np.float32
    np.testing.assert_array_equal(tok.last_costs_.argmin(1), tok.codes_[:, -1])


def test_precomputed_maps_keys_with_offset(tmp_path):
    path = tmp_path / "index.json"
    index = write_index(path, 12)
    tok = Precomputed(path=str(path)).fit(np.zeros((12, 0)), fake_dataset(12))
    expected = [[int(t.split("_")[1][:-1]) for t in index[str(i)]] for i in range(12)]
    np.testing.assert_array_equal(tok.codes_, np.array(expected))
    same = Precomputed(path=str(path), key_offset=0).fit(None, fake_dataset(12, first_id=0))
    np.testing.assert_array_equal(same.codes_, tok.codes_)


def test_precomputed_errors(tmp_path):
    path = tmp_path / "index.json"
    write_index(path, 10)
    with pytest.raises(DataError, match=r"2 of 12 items are missing.*'10'.*key_offset"):
        Precomputed(path=str(path)).fit(None, fake_dataset(12))
    with pytest.raises(ConfigError, match="needs the dataset"):
        Precomputed(path=str(path)).fit(np.zeros((10, 0)))
    with pytest.raises(ConfigError, match="exactly one of index"):
        Precomputed().fit(None, fake_dataset(10))
    with pytest.raises(ConfigError, match="exactly one of index"):
        Precomputed(index="rqvae_native", path=str(path)).fit(None, fake_dataset(10))
    with pytest.raises(ConfigError, match="known indexes: rqvae_native, letter_native, rkmeans_native"):
        Precomputed(index="rqvae").fit(None, fake_dataset(10))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"0": ["<a_1>", "<b_x>"], "1": ["<a_1>", "<b_2>"]}))
    with pytest.raises(DataError, match=r"key '0', level 1: expected a token like '<b_N>', found '<b_x>'"):
        Precomputed(path=str(bad)).fit(None, fake_dataset(2))
    bad.write_text(json.dumps({"0": ["<b_1>", "<a_2>"]}))
    with pytest.raises(DataError, match="level 0: expected a token like '<a_N>'"):
        Precomputed(path=str(bad)).fit(None, fake_dataset(1))
    bad.write_text(json.dumps({"0": ["<a_1>", "<b_2>"], "1": ["<a_1>"]}))
    with pytest.raises(DataError, match="every item needs 2 tokens"):
        Precomputed(path=str(bad)).fit(None, fake_dataset(2))


def test_precomputed_beauty_rqvae_native(mirror):
    from bench.data.dataset import load_dataset

    ds = load_dataset("beauty")
    tok = Precomputed(index="rqvae_native").fit(np.zeros((ds.n_items, 0), dtype=np.float32), ds)
    assert tok.codes_.shape == (12101, 4) and tok.codes_.dtype == np.int64
    assert all(size <= 256 for size in tok.codebook_sizes)
    # measured: the published index is not collision-free (11,499 distinct SIDs for 12,101 items)
    assert len({tuple(r) for r in tok.codes_}) == 11499
    with pytest.raises(DataError, match="missing"):
        Precomputed(index="rqvae_native", key_offset=0).fit(None, ds)


def test_plugins_without_parameter_defaults_are_named_by_kind():
    from bench.core.plugin import plugin_defaults
    from bench.sid.encoder import Encoder
    from bench.sid.tokenizer import Tokenizer

    class NoDefaultEncoder(Encoder):
        def __init__(self, dim, scale=1.0):
            self.dim, self.scale = dim, scale

    class FineTokenizer(Tokenizer):
        def __init__(self, levels=2, seed=None):
            self.levels, self.seed = levels, seed

    with pytest.raises(ConfigError, match="encoder NoDefaultEncoder: parameter 'dim' needs a default value"):
        plugin_defaults(NoDefaultEncoder, "encoder")
    assert plugin_defaults(FineTokenizer, "tokenizer") == {"levels": 2, "seed": None}
    assert FineTokenizer(levels=3).get_params() == {"levels": 3, "seed": None}
    assert NoDefaultEncoder.param_names() == ["dim", "scale"]


def test_precomputed_cache_key_follows_the_file_content(tmp_path):
    from bench.sid.cache import stage_key
    from bench.sid.stages import tokenizer_spec

    path = tmp_path / "index.json"
    write_index(path, 12)
    first = stage_key(tokenizer_spec("precomputed", {"index": "", "path": str(path), "key_offset": -1}, "k"))
    again = stage_key(tokenizer_spec("precomputed", {"index": "", "path": str(path), "key_offset": -1}, "k"))
    write_index(path, 12, seed=1)  # other codes under the same path
    rewritten = stage_key(tokenizer_spec("precomputed", {"index": "", "path": str(path), "key_offset": -1}, "k"))
    assert first == again and rewritten != first
    assert "inputs" not in tokenizer_spec("rqkmeans", {}, "k")


def test_trained_encoders_cache_key_names_compile_and_content_encoders_ignore_it():
    from types import SimpleNamespace

    from bench.data.dataset import load_dataset
    from bench.data.protocol import Protocol, Split
    from bench.sid.stages import encoder_spec

    split = Split(load_dataset("synthetic"), Protocol())
    ctx = SimpleNamespace(device="cpu", compile="inductor")
    assert encoder_spec("famae", {}, split, 0, ctx)["compile"] == "inductor"
    assert "compile" not in encoder_spec("famae", {}, split, 0) and "compile" not in encoder_spec("text-tfidf", {}, split, 0, ctx)
    assert "precision" not in encoder_spec("famae", {}, split, 0, ctx)  # fp32 on the CPU: the key is unchanged
