"""``bench.api.run``: the run command from Python, with a plugin registered in the calling script."""

import numpy as np
import pytest

from bench.api import run
from bench.core.errors import ConfigError
from bench.core.registry import register
from bench.sid.tokenizer import Tokenizer


@register("tokenizer", "api-test-buckets")
class FirstCoordinateBuckets(Tokenizer):
    """Level 1: quantile bucket of the first coordinate; level 2: of the second (a plugin defined in a script)."""

    def __init__(self, n_buckets: int = 8):
        self.n_buckets = n_buckets

    def fit(self, item_vectors, dataset=None):
        def bucket(values):
            return values.argsort(kind="stable").argsort(kind="stable") * self.n_buckets // len(values)
        self.codes_ = np.column_stack([bucket(item_vectors[:, 0]), bucket(item_vectors[:, 1])])
        self.codebook_sizes = [self.n_buckets, self.n_buckets]
        return self


SID = "sid:text+api-test-buckets"
TINY = {"epochs": 1, "batch_size": 2048, "d_model": 16, "d_ff": 32, "d_head": 8}  # the smoke generator, smaller still


def test_run_trains_a_script_plugin_and_returns_the_records(tmp_path, one_torch_thread):
    methods = [SID, "pop"]
    overrides = {**{f"{SID}.{key}": value for key, value in TINY.items()}, "tok_n_buckets": 4}
    outcomes = run(methods, dataset="synthetic", seeds=[0], out=tmp_path, budget="smoke", overrides=overrides,
                   protocol={"history_len": 5}, device="cpu", quiet=True)
    assert [(o.method, o.seed, o.error) for o in outcomes] == [(m, 0, None) for m in methods]
    for outcome in outcomes:
        assert 0.0 <= outcome.record["metrics"]["test"]["ndcg@10"] <= 1.0
        assert outcome.record["protocol"]["history_len"] == 5
        assert (outcome.folder / "result.json").is_file()
    sid = outcomes[0].record
    assert sid["config"]["d_model"] == 16 and sid["config"]["tok_n_buckets"] == 4
    assert sid["extra"]["sid"]["tokenizer"]["name"] == "api-test-buckets"

    again = run(SID, dataset="synthetic", seeds=0, out=tmp_path, budget="smoke", overrides={**TINY, "tok_n_buckets": 4},
                protocol={"history_len": 5}, device="cpu", quiet=True)
    assert again[0].reused and again[0].record["run_key"] == sid["run_key"]  # a notebook cell run twice


@pytest.mark.parametrize("kwargs, message", [
    ({"methods": []}, "at least one method"),
    ({"methods": [3]}, "method names"),
    ({"methods": "pop", "seeds": "0,1"}, "list of integers"),
    ({"methods": "pop", "seeds": [1, 1]}, "distinct"),
    ({"methods": "pop", "overrides": {"no_such_option": 1}}, "no_such_option"),
])
def test_bad_arguments_fail_before_anything_runs(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        run(dataset="synthetic", out=tmp_path / "runs", budget="smoke", device="cpu", quiet=True, **kwargs)
    assert not (tmp_path / "runs").exists()
