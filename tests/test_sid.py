"""The shared SID stages: collisions post-step, diagnostics, the stage cache and ad-hoc compositions."""

import json

import numpy as np
import pytest

from bench.cli import main
from bench.core.errors import ConfigError
from bench.data.dataset import load_dataset
from bench.data.protocol import Protocol, Split
from bench.sid import cache as stages
from bench.sid.collisions import resolve_collisions
from bench.sid.diagnostics import sid_diagnostics
from bench.sid.stages import encode_items, tokenize_items


def unique_rows(codes):
    return len(np.unique(codes, axis=0)) == len(codes)


def test_extra_level_numbers_the_items_of_each_collision_group():
    codes = np.array([[1, 2], [1, 2], [0, 3], [1, 2], [0, 3], [5, 5]])
    fixed, sizes, report = resolve_collisions(codes, [8, 8], "extra-level")
    assert unique_rows(fixed)
    assert fixed[:, -1].tolist() == [0, 1, 0, 2, 1, 0]  # numbered in item order inside each group
    assert np.array_equal(fixed[:, :2], codes)
    assert sizes == [8, 8, 3] and report["levels_added"] == 1 and report["colliding_items_before"] == 5


def test_no_collisions_means_no_extra_level():
    codes = np.array([[0, 1], [1, 0]])
    fixed, sizes, report = resolve_collisions(codes, [2, 2], "extra-level")
    assert np.array_equal(fixed, codes) and sizes == [2, 2] and report["levels_added"] == 0


def test_hungarian_removes_planted_collisions_at_minimum_cost_without_a_level():
    codes = np.array([[0, 1], [0, 1], [0, 2], [1, 0], [1, 0]])
    costs = np.array([
        [5, 0, 9, 9],   # item 0 loves code 1
        [1, 0.5, 9, 9],  # item 1 also likes 1 but code 0 is nearly as good
        [9, 9, 0, 9],
        [0, 9, 9, 9],
        [9, 9, 9, 0.2],  # item 4 should move to code 3 (code 0 taken by item 3)
    ], dtype=np.float32)
    fixed, sizes, report = resolve_collisions(codes, [2, 4], "hungarian", costs)
    assert unique_rows(fixed) and sizes == [2, 4] and report["levels_added"] == 0
    assert fixed[:, 1].tolist() == [1, 0, 2, 0, 3]
    assert report["items_moved"] == 2


def test_hungarian_without_costs_moves_as_few_items_as_possible():
    codes = np.array([[0, 1], [0, 1], [0, 1], [0, 0]])
    fixed, _, report = resolve_collisions(codes, [1, 4], "hungarian")
    assert unique_rows(fixed) and report["items_moved"] == 2


def test_hungarian_falls_back_to_the_extra_level_for_an_over_full_prefix():
    codes = np.array([[0, 0], [0, 0], [0, 1], [1, 0]])  # prefix 0 holds 3 items but there are 2 codes
    fixed, sizes, report = resolve_collisions(codes, [2, 2], "hungarian")
    assert unique_rows(fixed) and report["prefixes_over_capacity"] == 1 and report["levels_added"] == 1


def test_diagnostics_equal_hand_computed_values():
    codes = np.array([[0, 0], [0, 1], [1, 0], [1, 0]])
    d = sid_diagnostics(codes, [2, 4])
    first, second = d["levels"]
    assert (first["codes_used"], first["usage"], first["entropy_bits"]) == (2, 1.0, 1.0)
    assert first["perplexity"] == 2.0 and first["conditional_entropy_bits"] == 1.0
    # level 1 counts [3, 1]: H = 0.811278 bits; H(c0, c1) = 1.5 bits, so H(c1 | c0) = 0.5
    assert second["codes_used"] == 2 and second["usage"] == 0.5
    assert second["entropy_bits"] == pytest.approx(0.811278, abs=1e-6)
    assert second["normalized_entropy"] == pytest.approx(0.811278 / 2, abs=1e-6)
    assert second["perplexity"] == pytest.approx(2 ** 0.811278, abs=1e-3)
    assert second["conditional_entropy_bits"] == pytest.approx(0.5, abs=1e-9)
    assert d["distinct_sids"] == 3 and d["collision_rate"] == 0.25
    assert d["max_collision_group"] == 2 and d["unique_share"] == 0.5
    assert d["items_per_leaf_mean"] == pytest.approx(4 / 3, abs=1e-6) and d["items_per_leaf_max"] == 2


@pytest.fixture(scope="module")
def split():
    return Split(load_dataset("synthetic"), Protocol())


def test_swapping_the_tokenizer_reuses_the_encoders_vectors(split, monkeypatch):
    vectors, meta = encode_items("text-tfidf", {"dim": 16}, split, None)
    assert vectors.shape == (split.n_items, 16)
    calls = []
    original = stages.save
    monkeypatch.setattr(stages, "save", lambda *a, **k: (calls.append(a[0]), original(*a, **k)))
    again, meta2 = encode_items("text-tfidf", {"dim": 16}, split, None)
    assert meta2["cache_hit"] and np.array_equal(again, vectors) and meta2["cache_key"] == meta["cache_key"]
    for tokenizer in ("random", "lsh"):
        sids = tokenize_items(tokenizer, {}, vectors, meta["cache_key"], split)
        assert unique_rows(sids.codes)
    assert calls == ["tokenize", "tokenize"]  # the encoder ran once, each tokenizer once


def test_an_old_cache_entry_gets_the_vector_proxy_once(split, monkeypatch):
    import json

    import bench.sid.stages as sid_module

    vectors, meta = encode_items("text-tfidf", {"dim": 8}, split, None)
    path = stages._folder("encode", meta["cache_key"]) / "meta.json"
    stored = json.loads(path.read_text())
    path.write_text(json.dumps({k: v for k, v in stored.items() if k != "vector_proxy"}))  # as older code wrote it
    _, backfilled = encode_items("text-tfidf", {"dim": 8}, split, None)
    assert backfilled["vector_proxy"] == stored["vector_proxy"]
    monkeypatch.setattr(sid_module, "vector_proxies", lambda *a, **k: pytest.fail("computed again"))
    _, again = encode_items("text-tfidf", {"dim": 8}, split, None)
    assert again["cache_hit"] and again["vector_proxy"] == stored["vector_proxy"]


def test_tf32_keys_trained_encoders_but_not_content_encoders(split, monkeypatch):
    """Text vectors computed once (on the CPU, say) serve a TF32 run, as they serve a run on another device;
    a trained encoder's vectors come from a fit that TF32 changes, so its key names the precision."""
    from types import SimpleNamespace

    import bench.sid.stages as sid_module

    ctx = SimpleNamespace(device="cuda", compile=None)
    fp32 = {name: sid_module.encoder_spec(name, {}, split, 0, ctx) for name in ("text-tfidf", "famae")}
    monkeypatch.setattr(sid_module, "current_precision", lambda device: "tf32")
    tf32 = {name: sid_module.encoder_spec(name, {}, split, 0, ctx) for name in ("text-tfidf", "famae")}
    assert tf32["text-tfidf"] == fp32["text-tfidf"]
    assert tf32["famae"] == {**fp32["famae"], "precision": "tf32"}


def test_changed_stage_code_misses_the_cache(split, monkeypatch):
    """The stage keys hold a digest of the encoder's and tokenizer's source: edited code never reuses old output."""
    import bench.sid.stages as sid_module

    vectors, meta = encode_items("text-tfidf", {"dim": 16}, split, None)
    first = tokenize_items("random", {}, vectors, meta["cache_key"], split)
    monkeypatch.setattr(sid_module, "code_digest", lambda *objects: "edited")
    vectors2, meta2 = encode_items("text-tfidf", {"dim": 16}, split, None)
    second = tokenize_items("random", {}, vectors2, meta2["cache_key"], split)
    assert not meta2["cache_hit"] and meta2["cache_key"] != meta["cache_key"]
    assert not second.info["cache_hit"] and second.info["cache_key"] != first.info["cache_key"]


def test_bad_last_costs_from_a_plugin_is_a_clear_error(split, monkeypatch):
    from methods.tokenizers.random_ids import RandomIDs

    monkeypatch.setattr(RandomIDs, "last_costs_", np.zeros((split.n_items, 3), np.float32), raising=False)
    with pytest.raises(ConfigError, match=r"last_costs_ must be \[n_items, last codebook size\]"):
        tokenize_items("random", {"seed": 123}, np.zeros((split.n_items, 0), np.float32), "bad-costs", split)


def test_unknown_tokenizer_parameter_is_a_clear_error(split):
    with pytest.raises(ConfigError, match="has no parameter"):
        tokenize_items("random", {"levels": 2}, np.zeros((split.n_items, 0), np.float32), "k", split)


def test_sid_composition_runs_end_to_end_on_synthetic(tmp_path, capsys):
    code = main(["run", "--methods", "sid:text-tfidf+rqkmeans", "--dataset", "synthetic", "--budget", "smoke",
                 "--set", "tok_codebook_size=16", "--out", str(tmp_path), "--quiet"])
    assert code == 0, capsys.readouterr().err
    folder = tmp_path / "synthetic" / "sid-text-tfidf_rqkmeans" / "seed0"
    record = json.loads((folder / "result.json").read_text())
    sid = record["extra"]["sid"]
    assert sid["encoder"]["name"] == "text-tfidf" and sid["tokenizer"]["name"] == "rqkmeans"
    assert sid["tokenizer"]["params"]["codebook_size"] == 16
    assert len(sid["diagnostics"]["levels"]) == 3 and "fit_seconds" in sid["diagnostics"]
    assert {"encode", "tokenize", "generator"} <= set(record["timings"])
    assert 0 < record["metrics"]["test"]["recall@20"] <= 1
    assert record["rerun"].startswith("python -m bench run --methods sid:text-tfidf+rqkmeans")
    # every encoder gets the model-free vector proxy, so the report can set encoders side by side
    assert set(record["extra"]["proxy"]) == {"vector_recall@10 (test)", "vector_recall@10 (valid)"}
    assert 0 <= record["extra"]["proxy"]["vector_recall@10 (valid)"] <= 1


@pytest.mark.parametrize("name, message", [("sid:text-tfidf", "sid:ENCODER+TOKENIZER"),
                                           ("sid:text-tfidf+lsh@", "sid:ENCODER+TOKENIZER"),
                                           ("sid:text-tfidf+lsh@pop", "must name a SID method")])
def test_bad_composition_is_a_clear_error(tmp_path, capsys, name, message):
    assert main(["run", "--methods", name, "--out", str(tmp_path), "--quiet"]) == 2
    assert message in capsys.readouterr().err


def test_composition_can_take_another_sid_methods_generator(tmp_path, capsys):
    """sid:E+Q@resid: ReSID's generator sizes with another stage swapped in, recorded under its own name."""
    import dataclasses

    from bench.sid.pipeline import composition
    from methods.sid.resid import ReSID

    resid_like, plain = composition("sid:famae+rqvae@resid").Config(), composition("sid:famae+rqvae").Config()
    generator_fields = [f.name for f in dataclasses.fields(ReSID.Config()) if f.name in ("n_heads", "d_head", "d_ff", "beam")]
    assert {f: getattr(resid_like, f) for f in generator_fields} == {f: getattr(ReSID.Config(), f) for f in generator_fields}
    assert (plain.n_heads, plain.beam) != (resid_like.n_heads, resid_like.beam)
    assert resid_like.tok_codebook_size == plain.tok_codebook_size  # the tokenizer's own defaults stay
    assert dataclasses.asdict(composition("sid:famae+gaoq@resid").Config()) == dataclasses.asdict(ReSID.Config())
    code = main(["run", "--methods", "sid:text-tfidf+lsh@resid", "--dataset", "synthetic", "--budget", "smoke",
                 "--set", "epochs=1", "--out", str(tmp_path), "--quiet"])
    assert code == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "synthetic" / "sid-text-tfidf_lsh@resid" / "seed0" / "result.json").read_text())
    assert record["method"] == "sid:text-tfidf+lsh@resid" and "--methods sid:text-tfidf+lsh@resid" in record["rerun"]


def test_diagnose_prints_levels_and_collisions(tmp_path, capsys):
    out = tmp_path / "d.json"
    assert main(["diagnose", "--tokenizer", "lsh", "--dataset", "synthetic", "--set", "bits_per_level=4",
                 "--device", "cpu", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "H(c_l|c_<l)" in text and "collision_rate" in text and "vector_recall@10 (valid)" in text
    saved = json.loads(out.read_text())
    assert set(saved["encoder_proxies"]) == {"vector_recall@10 (test)", "vector_recall@10 (valid)"}
    assert saved["diagnostics"]["levels"][0]["codebook_size"] == 16


def test_cross_parent_consistency_is_high_for_shared_directions_and_low_for_shuffled_ones():
    from bench.sid.diagnostics import cross_parent_consistency

    rng = np.random.default_rng(0)
    parents = rng.normal(size=(6, 8)) * 20
    directions = np.eye(8)[:4] * 3
    items, aligned, shuffled = [], [], []
    for p in range(6):
        order = rng.permutation(4)
        for c in range(4):
            for _ in range(5):
                items.append(parents[p] + directions[c] + rng.normal(size=8) * 0.01)
                aligned.append([p, c])
                shuffled.append([p, order[c]])  # local indices: code c means a different direction per parent
    vectors = np.array(items)
    same = cross_parent_consistency(np.array(aligned), vectors)[0]
    local = cross_parent_consistency(np.array(shuffled), vectors)[0]
    assert same["level"] == 1 and same["pairs"] == 4 * 15  # 4 codes, 6 parents each: 15 pairs per code
    assert same["mean_cosine"] > 0.99
    assert abs(local["mean_cosine"]) < 0.35


def test_cross_parent_consistency_equals_a_hand_computed_value():
    from bench.sid.diagnostics import cross_parent_consistency

    # parent 0 children: code 0 at +x, code 1 at +y; parent 1: code 0 at +y, code 1 at +x
    vectors = np.array([[1, 0], [0, 1], [11, 10], [10, 11]], dtype=float)
    codes = np.array([[0, 0], [0, 1], [1, 1], [1, 0]])
    # parent means (0.5, 0.5) and (10.5, 10.5); residuals of code 0: (0.5,-0.5) and (-0.5,0.5): cosine -1;
    # code 1: (-0.5,0.5) and (0.5,-0.5): cosine -1
    assert cross_parent_consistency(codes, vectors)[0]["mean_cosine"] == pytest.approx(-1.0)


def test_resid_runs_end_to_end_on_synthetic_with_the_smoke_budget(tmp_path, capsys):
    code = main(["run", "--methods", "resid", "--dataset", "synthetic", "--budget", "smoke",
                 "--out", str(tmp_path), "--quiet"])
    assert code == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "synthetic" / "resid" / "seed0" / "result.json").read_text())
    sid = record["extra"]["sid"]
    assert sid["encoder"]["name"] == "famae" and sid["tokenizer"]["name"] == "gaoq"
    assert sid["collisions"]["levels_added"] == 0 and sid["diagnostics"]["collision_rate"] == 0.0  # GAOQ is collision-free
    assert set(record["extra"]["proxy"]) >= {"proxy_item_recall@10 (valid)", "proxy_id_recall@10 (valid)",
                                             "vector_recall@10 (valid)", "vector_recall@10 (test)"}
    assert record["config"]["d_ff"] == 64 and record["config"]["beam"] == 50  # smoke sizes, ReSID's beam
    assert 0 < record["metrics"]["test"]["recall@20"] <= 1


@pytest.mark.parametrize("exclude", [False, True])
def test_knn_last_ranks_by_the_latest_item_and_equals_the_vector_proxy(tmp_path, capsys, exclude):
    """Under either protocol: with exclude_history the proxy leaves the history items out, as the evaluator does."""
    from bench.data.dataset import load_dataset
    from bench.data.protocol import Protocol, Split
    from bench.eval.proxy import vector_proxy_recall
    from bench.sid.stages import encode_items

    code = main(["run", "--methods", "knn-last", "--dataset", "synthetic", "--set", "encoder=text-tfidf",
                 "--protocol", f"exclude_history={exclude}", "--out", str(tmp_path), "--quiet", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    record = json.loads(next(tmp_path.glob("synthetic*/knn-last/seed0/result.json")).read_text())
    split = Split(load_dataset("synthetic"), Protocol(exclude_history=exclude))
    vectors, _ = encode_items("text-tfidf", {}, split, None)
    proxy = vector_proxy_recall(vectors, split, 10, "test", exclude_history=exclude)
    assert record["metrics"]["test"]["recall@10"] == pytest.approx(proxy)
    if exclude:  # vectors of width 0 rank at chance: among fewer candidates once the history is left out
        blank = np.zeros((split.n_items, 0), dtype=np.float32)
        chance = vector_proxy_recall(blank, split, 10, "test")
        assert chance == pytest.approx(10 / (split.n_items - 1))
        assert vector_proxy_recall(blank, split, 10, "test", exclude_history=True) > chance
    assert record["extra"]["proxy"]["vector_recall@10 (test)"] == pytest.approx(record["metrics"]["test"]["recall@10"])
    assert record["extra"]["sid"]["encoder"]["name"] == "text-tfidf"
