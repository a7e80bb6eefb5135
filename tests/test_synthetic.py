"""Tests for the embedded synthetic dataset generator."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest

from bench.core.errors import ConfigError
from bench.data.dataset import build_dataset
from bench.data.synthetic import SyntheticData, generate, read_synthetic

SMALL = {"n_items": 400, "n_users": 800, "n_groups": 20}


@pytest.fixture(scope="module")
def default() -> SyntheticData:
    """The dataset for the default options, generated once."""
    return generate({})


def _hit_rates(sequences: list[np.ndarray], n_items: int, k: int = 10) -> tuple[float, float]:
    """HR@k on each user's last item for popularity and a last-item transition-count model.

    Both are fit on the prefixes only (every sequence without its last item).
    """
    counts = np.zeros((n_items, n_items))
    popularity = np.zeros(n_items)
    for seq in sequences:
        prefix = seq[:-1]
        np.add.at(counts, (prefix[:-1], prefix[1:]), 1)
        np.add.at(popularity, prefix, 1)
    top_pop = set(np.argsort(-popularity, kind="stable")[:k].tolist())
    pop_hits = trans_hits = 0
    for seq in sequences:
        last, target = seq[-2], seq[-1]
        pop_hits += target in top_pop
        scores = counts[last] + 1e-6 * popularity  # popularity breaks ties
        trans_hits += target in np.argsort(-scores, kind="stable")[:k]
    return pop_hits / len(sequences), trans_hits / len(sequences)


def test_same_seed_same_data_other_seed_differs() -> None:
    a, b, c = generate({**SMALL, "seed": 3}), generate({**SMALL, "seed": 3}), generate({**SMALL, "seed": 4})
    assert a.raw.sequences == b.raw.sequences
    assert a.raw.items == b.raw.items
    assert a.groups == b.groups
    assert a.raw.sequences != c.raw.sequences
    assert [it.title for it in a.raw.items.values()] != [it.title for it in c.raw.items.values()]


def test_default_sizes_and_sequence_shape(default: SyntheticData) -> None:
    raw = default.raw
    assert list(raw.items) == [str(i) for i in range(1, 1201)] == raw.item_order
    assert len(raw.sequences) == 3000
    lengths = np.array([len(s) for s in raw.sequences.values()])
    assert lengths.min() >= 5 and lengths.max() <= 30
    assert 10 <= lengths.mean() <= 14
    for seq in raw.sequences.values():
        assert all(a != b for a, b in zip(seq, seq[1:]))
        assert set(seq) <= raw.items.keys()
    used = {i for seq in raw.sequences.values() for i in seq}
    assert len(used) >= 0.95 * len(raw.items)


def test_items_have_structured_metadata(default: SyntheticData) -> None:
    items = list(default.raw.items.values())
    assert all(len(it.categories) == 3 and it.title and it.brand for it in items)
    assert all(isinstance(it.price, float) and it.price > 0 for it in items)
    assert all(it.brand in it.title for it in items)
    by_brand = defaultdict(Counter)
    for it in items:
        by_brand[it.brand][it.categories[0]] += 1
    loyal = [c.most_common(1)[0][1] / sum(c.values()) for c in by_brand.values()]
    assert len(by_brand) == 60 and np.mean(loyal) > 0.8
    top_price = defaultdict(list)
    for it in items:
        top_price[it.categories[0]].append(it.price)
    medians = sorted(np.median(v) for v in top_price.values())
    assert medians[-1] > 2 * medians[0]  # price depends on the category


def test_groups_cut_across_categories(default: SyntheticData) -> None:
    raw, groups = default.raw, default.groups
    tops_per_group = defaultdict(set)
    for item_id, group in groups.items():
        tops_per_group[group].add(raw.items[item_id].categories[0])
    assert len(tops_per_group) == 40
    assert sum(len(t) >= 2 for t in tops_per_group.values()) >= 0.9 * len(tops_per_group)
    # items of one leaf category are spread over many groups
    leaf_groups = defaultdict(set)
    for item_id, group in groups.items():
        leaf_groups[raw.items[item_id].categories[2]].add(group)
    assert np.mean([len(g) for g in leaf_groups.values()]) >= 10


def test_consecutive_items_share_groups_and_weakly_categories(default: SyntheticData) -> None:
    raw, groups = default.raw, default.groups
    pairs = [(a, b) for seq in raw.sequences.values() for a, b in zip(seq, seq[1:])]
    same_group = np.mean([groups[a] == groups[b] for a, b in pairs])
    same_top = np.mean([raw.items[a].categories[0] == raw.items[b].categories[0] for a, b in pairs])
    chance_top = sum(v * v for v in Counter(it.categories[0] for it in raw.items.values()).values()) / 1200**2
    assert same_group > 0.75
    assert chance_top + 0.03 < same_top < chance_top + 0.2


def test_transition_model_beats_popularity(default: SyntheticData) -> None:
    ds = build_dataset("synthetic", default.raw, {})
    pop, trans = _hit_rates(ds.sequences, ds.n_items)
    assert pop > 0.02  # popularity is a non-trivial baseline
    assert trans > pop + 0.3 and trans > 3 * pop


def test_build_dataset_fields(default: SyntheticData) -> None:
    ds = build_dataset("synthetic", read_synthetic({}, {}), {})
    assert ds.n_users == 3000 and ds.stats["dropped_short_users"] == 0
    assert set(ds.fields) == {"brand", "cat1", "cat2", "cat3", "price"}
    assert ds.stats["vocab_sizes"] == {"brand": 60, "cat1": 4, "cat2": 12, "cat3": 36, "price": 10}
    for codes in ds.fields.values():
        assert codes.min() >= 1  # no missing values
    assert ds.text[0].startswith("Title: ") and "Categories: " in ds.text[0]
    assert ds.checksum == build_dataset("synthetic", generate({}).raw, {}).checksum


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="n_users"):
        generate({"n_user": 10})
    with pytest.raises(ConfigError, match="integer"):
        generate({"n_items": 10.5})
    with pytest.raises(ConfigError, match="p_popular"):
        generate({"p_popular": 0.7, "p_switch": 0.5})
    with pytest.raises(ConfigError, match="known options are seed, n_items"):
        read_synthetic({}, {"min_interactions": 5})  # a build_dataset option, not a generator one
    assert generate({"seed": 0, **SMALL}).raw.sequences == generate(SMALL).raw.sequences


def test_options_change_sizes() -> None:
    small = generate({"n_items": 120, "n_users": 50, "n_groups": 6, "n_brands": 8, "min_len": 3, "mean_len": 4})
    assert len(small.raw.items) == 120 and len(small.raw.sequences) == 50
    assert set(small.groups.values()) == set(range(6))
    assert min(len(s) for s in small.raw.sequences.values()) >= 3
    assert len({it.brand for it in small.raw.items.values()}) <= 8
