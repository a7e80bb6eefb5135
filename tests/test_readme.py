"""The README's plugin example must really run."""

import json
import re
from pathlib import Path

from bench.cli import main
from bench.core import registry

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_method_plugin_example_runs(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = next(b for b in blocks if '@register("method", "last-item")' in b)
    exec(compile(example, "README.md", "exec"), {})
    assert registry.get("method", "last-item").__name__ == "LastItem"
    assert main(["run", "--methods", "pop,last-item", "--dataset", "synthetic", "--quiet", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "synthetic" / "last-item" / "seed0" / "result.json").read_text())
    assert record["config"] == {"boost": 1.0}
    assert 0 <= record["metrics"]["test"]["ndcg@10"] <= 1


def test_readme_tokenizer_plugin_example_passes_the_check_and_runs(tmp_path):
    from bench.sid.tokenizer import check_tokenizer

    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = next(b for b in blocks if '@register("tokenizer", "norm-buckets")' in b)
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    cls = registry.get("tokenizer", "norm-buckets")
    facts = check_tokenizer(cls)
    assert facts["n_levels"] == 2 and facts["codebook_sizes"] == [16, 16]
    assert main(["run", "--methods", "sid:text+norm-buckets", "--dataset", "synthetic", "--budget", "smoke",
                 "--quiet", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "synthetic" / "sid-text_norm-buckets" / "seed0" / "result.json").read_text())
    assert record["extra"]["sid"]["encoder"]["name"] == "text-tfidf"  # synthetic's text encoder
    assert record["extra"]["sid"]["tokenizer"]["name"] == "norm-buckets"
