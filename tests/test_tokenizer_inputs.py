"""Tokenizers with extra item views, the training sequences and a learned state the stage cache keeps."""

import json

import numpy as np
import pytest

from bench.cli import main
from bench.core.errors import ConfigError
from bench.core.registry import register
from bench.data.dataset import load_dataset
from bench.data.protocol import Protocol, Split
from bench.sid.stages import encode_items, tokenize_items
from bench.sid.tokenizer import MAIN_VIEW, ItemViews, Tokenizer, check_tokenizer

SEEN: dict = {}


@register("tokenizer", "test-two-views")
class TwoViews(Tokenizer):
    """Level 1 from the main view, level 2 from the ``collab`` view; reads sequences; keeps a 'state'."""

    views = {"collab": "text-tfidf:dim=4;seed=1"}
    reads_sequences = True

    def __init__(self, size: int = 4, seed: int = 0):
        self.size = size
        self.seed = seed

    def fit(self, item_vectors, dataset=None, views=None, split=None):
        SEEN.update(views=sorted(views.vectors), n_train=int(split.n_items) if split is not None else None)
        def bucket(values):
            ranks = values.argsort(kind="stable").argsort(kind="stable")
            return ranks * self.size // len(values)
        self.weights_ = np.arange(6, dtype=np.float32).reshape(2, 3) + self.seed
        self.codes_ = np.column_stack([bucket(item_vectors[:, 0]), bucket(views.vectors["collab"][:, 0])])
        self.codebook_sizes = [self.size, self.size]
        return self

    def get_state(self):
        return {"weights": self.weights_}


@pytest.fixture(scope="module")
def split():
    return Split(load_dataset("synthetic"), Protocol())


def test_check_tokenizer_gives_a_views_tokenizer_its_views_and_split(split):
    facts = check_tokenizer(TwoViews, split=lambda n: split)
    assert facts["n_levels"] == 2 and SEEN["views"] == ["collab", MAIN_VIEW]


def test_the_stage_cache_returns_a_tokenizers_state(split):
    main_vectors, main_meta = encode_items("text-tfidf", {"dim": 8}, split, None)
    collab, collab_meta = encode_items("text-tfidf", {"dim": 4, "seed": 1}, split, None)
    views = ItemViews({MAIN_VIEW: main_vectors, "collab": collab},
                      {MAIN_VIEW: {"cache_key": main_meta["cache_key"]}, "collab": {"cache_key": collab_meta["cache_key"]}})
    first = tokenize_items("test-two-views", {"seed": 3}, views, None, split)
    SEEN.clear()
    again = tokenize_items("test-two-views", {"seed": 3}, views, None, split)
    assert not first.info["cache_hit"] and again.info["cache_hit"] and SEEN == {}  # served from the cache
    assert np.array_equal(again.state["weights"], np.arange(6).reshape(2, 3) + 3)
    assert np.array_equal(again.codes, first.codes)
    other = ItemViews(views.vectors, {**views.entries, "collab": {"cache_key": "another-collab-view"}})
    assert tokenize_items("test-two-views", {"seed": 3}, other, None, split).info["cache_key"] != first.info["cache_key"]


def test_a_missing_view_is_a_clear_error(split):
    vectors, meta = encode_items("text-tfidf", {"dim": 8}, split, None)
    with pytest.raises(ConfigError, match=r"reads the item views \['collab'\]"):
        tokenize_items("test-two-views", {}, vectors, meta["cache_key"], split)


def test_a_sid_method_encodes_the_views_its_tokenizer_names(tmp_path, capsys):
    code = main(["run", "--methods", "sid:text-tfidf+test-two-views", "--dataset", "synthetic", "--budget", "smoke",
                 "--set", "view_collab=text-tfidf:dim=6", "--out", str(tmp_path), "--quiet"])
    assert code == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "synthetic" / "sid-text-tfidf_test-two-views" / "seed0" / "result.json").read_text())
    sid = record["extra"]["sid"]
    assert sid["kind"] == "two-stage" and sid["encoder"]["name"] == "text-tfidf"
    assert sid["views"]["collab"]["name"] == "text-tfidf" and sid["views"]["collab"]["params"] == {"dim": 6}
    assert record["config"]["view_collab"] == "text-tfidf:dim=6"
