"""GAOQ: balanced k-means, shared anchor codes, the tokenizer contract and collision-free SIDs."""

import numpy as np
import pytest

from bench.core.errors import ConfigError
from bench.sid.tokenizer import check_tokenizer
from methods.tokenizers.gaoq import GAOQ, balanced_kmeans, make_anchors, pca_anchors


def unique_rows(codes: np.ndarray) -> bool:
    return len(np.unique(codes, axis=0)) == len(codes)


@pytest.mark.parametrize("n, k", [(100, 10), (101, 10), (1000, 7), (997, 32), (50, 49), (40, 40), (33, 1), (7, 3)])
def test_balanced_kmeans_sizes_within_one(n, k):
    x = np.random.default_rng(n).normal(size=(n, 8)).astype(np.float32)
    labels, centroids = balanced_kmeans(x, k, seed=0, n_iter=10)
    sizes = np.bincount(labels, minlength=k)
    assert centroids.shape == (k, 8) and labels.shape == (n,)
    assert sizes.min() == n // k and sizes.max() == -(-n // k)
    assert np.allclose(centroids, [x[labels == j].mean(0) for j in range(k)], atol=1e-5)


def test_balanced_kmeans_more_clusters_than_points_gives_one_point_each():
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    labels, centroids = balanced_kmeans(x, 8, seed=0, n_iter=5)
    assert labels.tolist() == [0, 1, 2, 3, 4] and np.array_equal(centroids, x)


def test_balanced_kmeans_recovers_planted_equal_clusters_and_is_deterministic():
    rng = np.random.default_rng(0)
    k, per, dim = 12, 40, 16
    centres = rng.normal(size=(k, dim)) * 20
    truth = rng.permutation(np.repeat(np.arange(k), per))
    x = (centres[truth] + rng.normal(size=(k * per, dim))).astype(np.float32)
    labels, _ = balanced_kmeans(x, k, seed=3, n_iter=20)
    # a one-to-one relabelling of the truth: each planted cluster maps to exactly one found cluster
    pairs = set(zip(truth.tolist(), labels.tolist()))
    assert len(pairs) == k and len({a for a, _ in pairs}) == k and len({b for _, b in pairs}) == k
    assert np.array_equal(balanced_kmeans(x, k, seed=3, n_iter=20)[0], labels)


def test_balanced_kmeans_beats_a_poor_start_on_uneven_data():
    # one dense blob of 300 points and a sparse one of 100: balance forces the dense blob to be split
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(size=(300, 2)), rng.normal(size=(100, 2)) + 50]).astype(np.float32)
    labels, _ = balanced_kmeans(x, 4, seed=0, n_iter=20)
    assert np.bincount(labels).tolist() == [100] * 4
    assert len(set(labels[300:])) == 1 and labels[300] not in set(labels[:300])  # the far blob stays whole


def test_anchors_are_unit_and_orthogonal_when_they_fit():
    anchors = make_anchors(10, 32, seed=0)
    assert np.allclose(anchors @ anchors.T, np.eye(10), atol=1e-5)
    many = make_anchors(20, 8, seed=0)  # more anchors than dimensions: stacked random bases
    assert many.shape == (20, 8) and np.allclose(np.linalg.norm(many, axis=1), 1, atol=1e-5)
    assert np.allclose(many[:8] @ many[:8].T, np.eye(8), atol=1e-5)


def test_pca_anchors_are_the_residuals_main_directions_both_ways():
    rng = np.random.default_rng(0)
    weights = np.array([5.0, 3.0, 1.0])  # residuals along e0, e1, e2 with falling spread, a little noise
    residuals = (rng.normal(size=(400, 3)) * weights) @ np.eye(3, 16) + 0.01 * rng.normal(size=(400, 16))
    anchors = pca_anchors(residuals, 6, seed=0)
    assert anchors.shape == (6, 16) and np.allclose(np.linalg.norm(anchors, axis=1), 1, atol=1e-5)
    assert np.allclose(anchors[3:], -anchors[:3]) and np.allclose(anchors[:3] @ anchors[:3].T, np.eye(3), atol=1e-5)
    assert np.allclose(np.abs(anchors[:3, :3]), np.eye(3), atol=0.1)  # e0, e1, e2 in order of spread
    odd = pca_anchors(residuals, 5, seed=0)  # an odd count: +v1, +v2, +v3, -v1, -v2
    assert np.allclose(odd, np.concatenate([anchors[:3], anchors[3:5]]))
    flat = pca_anchors(np.outer(rng.normal(size=50), np.eye(8)[0]), 6, seed=0)  # rank 1: two random fill-ins
    assert np.allclose(flat[:3] @ flat[:3].T, np.eye(3), atol=1e-5) and np.allclose(flat[3:], -flat[:3])


@pytest.mark.parametrize("anchors", ["random", "pca"])
def test_same_code_means_the_same_direction_under_every_parent(anchors):
    rng = np.random.default_rng(0)
    n_parents, n_children, per_child, dim = 6, 5, 12, 32
    parents = rng.normal(size=(n_parents, dim)) * 100  # far apart: level 1 finds the parents
    blocks, direction = [], []
    for p in range(n_parents):
        for j in rng.permutation(n_children):  # children = parent + 3 e_j, in a different order per parent
            centre = parents[p] + 3.0 * np.eye(dim)[j]
            # little noise: g random anchors in d dims separate directions by cosines of order 1/sqrt(d),
            # so the Hungarian margins are small (0.05 noise flips a code on about 1 seed in 25)
            blocks.append(centre + 0.01 * rng.normal(size=(per_child, dim)))
            direction += [j] * per_child
    x = np.concatenate(blocks).astype(np.float32)
    direction = np.array(direction)
    tok = GAOQ(branching=(n_parents, n_children, 1), seed=0, anchors=anchors).fit(x)
    level2 = tok.codes_[:, 1]
    code_of_direction = {}
    for j in range(n_children):
        codes_j = set(level2[direction == j].tolist())
        assert len(codes_j) == 1, f"direction {j} got level-2 codes {codes_j} across parents"
        code_of_direction[j] = codes_j.pop()
    assert len(set(code_of_direction.values())) == n_children
    parent_of_item = np.repeat(np.arange(n_parents), n_children * per_child)
    assert len(set(zip(parent_of_item.tolist(), tok.codes_[:, 0].tolist()))) == n_parents
    assert tok.codebook_sizes == [n_parents, n_children, per_child] and unique_rows(tok.codes_)


def test_gaoq_passes_the_tokenizer_contract():
    facts = check_tokenizer(GAOQ, n_items=300, dim=16, branching=(4, 4, 2), n_iter=5)
    assert facts["n_levels"] == 3 and unique_rows(facts["codes"])
    assert facts["codebook_sizes"][:2] == [4, 4] and facts["codebook_sizes"][2] >= 19  # ceil(300 / 16)
    check_tokenizer(GAOQ, n_items=200, dim=16, n_levels=2, n_iter=5)
    check_tokenizer(GAOQ, n_items=300, dim=16, branching=(4, 4, 2), n_iter=5, anchors="pca")


@pytest.mark.parametrize("n_levels", [2, 3, 4])
def test_automatic_branching_gives_unique_sids(n_levels):
    x = np.random.default_rng(0).normal(size=(3000, 24)).astype(np.float32)
    tok = GAOQ(n_levels=n_levels, n_iter=8).fit(x)
    assert unique_rows(tok.codes_) and tok.codes_.shape == (3000, n_levels)
    assert tok.codes_.dtype == np.int64 and (tok.codes_ < np.array(tok.codebook_sizes)).all()
    info = tok.fit_info_
    assert info["automatic_branching"] and info["branching"] == tok.codebook_sizes
    upper = int(np.prod(info["branching"][:-1]))
    assert 3000 / 20 <= upper <= 3000 / 10  # b1 * ... * b_{L-1} ~ N / 15
    assert tok.codebook_sizes[-1] == info["group_sizes"][-1]["max"]  # the last level is as large as needed
    assert len(tok.anchors_) == n_levels and tok.anchors_[0] is None
    assert [len(p) for p in tok.prefixes_] == [len(c) for c in tok.centroids_]


def test_unknown_anchor_kind_is_a_clear_error():
    with pytest.raises(ConfigError, match="anchors must be one of random, pca, found 'qr'"):
        GAOQ(anchors="qr").fit(np.zeros((10, 4), dtype=np.float32))


def test_branching_must_match_levels():
    x = np.zeros((10, 4), dtype=np.float32)
    with pytest.raises(ConfigError, match="branching"):
        GAOQ(branching=(4, 4), n_levels=3).fit(x)
    with pytest.raises(ConfigError, match="n_levels"):
        GAOQ(n_levels=1).fit(x)
