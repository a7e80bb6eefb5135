import importlib
import json
import os
import time

import numpy as np
import pytest

from bench.cli import main
from bench.core import registry
from bench.core.device import current_precision
from bench.core.io import atomic_write_json, run_key
from bench.core.method import Method
from bench.run import records

# what a run key is made of: every record holds every field, whatever the options
KEY_FIELDS = ("key_version", "method", "method_class", "code", "budget", "config", "dataset", "protocol", "seed",
              "precision", "compile")


def run(tmp_path, *extra):
    return main(["run", "--methods", "pop", "--dataset", "synthetic", "--out", str(tmp_path), "--quiet", *extra])


def test_pop_runs_end_to_end_and_records_everything(tmp_path, capsys):
    assert run(tmp_path, "--seeds", "0,1") == 0
    table = capsys.readouterr().out
    assert "pop" in table and "R@10" in table
    folder = tmp_path / "synthetic" / "pop" / "seed0"
    record = json.loads((folder / "result.json").read_text())
    assert record["status"] == "ok"
    assert record["dataset"]["name"] == "synthetic" and len(record["dataset"]["checksum"]) == 64
    assert record["protocol"]["history_len"] == 20 and record["protocol"]["exclude_history"] is False
    assert {"fit", "evaluate_test", "prepare_data"} <= set(record["timings"])
    assert "torch" in record["environment"]["packages"]
    assert record["rerun"].startswith("python -m bench run --methods pop --dataset synthetic --seeds 0")
    assert 0 < record["metrics"]["test"]["ndcg@10"] < 1
    per_user = np.load(folder / "per_user.npz")
    assert per_user["ndcg@10"].shape == (record["dataset"]["stats"]["users"],)
    assert per_user["ndcg@10"].mean() == pytest.approx(record["metrics"]["test"]["ndcg@10"])


def test_identical_run_is_reused_unless_forced(tmp_path):
    assert run(tmp_path) == 0
    path = tmp_path / "synthetic" / "pop" / "seed0" / "result.json"
    before = path.stat().st_mtime_ns
    assert run(tmp_path) == 0
    assert path.stat().st_mtime_ns == before
    assert run(tmp_path, "--force") == 0
    assert path.stat().st_mtime_ns != before
    assert run(tmp_path, "--protocol", "history_len=5") == 0  # another variant: stored beside, never over it
    assert json.loads(path.read_text())["protocol"]["history_len"] == 20
    beside = list((tmp_path / "synthetic" / "pop").glob("seed0~*/result.json"))
    assert len(beside) == 1 and json.loads(beside[0].read_text())["protocol"]["history_len"] == 5
    assert not list(tmp_path.rglob("*.replaced")) and not list(tmp_path.rglob(".claim"))


@registry.register("method", "test-exploding")
class Exploding(Method):
    """Raises during fit."""

    def fit(self, split, ctx):
        raise RuntimeError("boom")


def test_a_failing_method_keeps_the_others_and_exits_nonzero(tmp_path, capsys):
    code = main(["run", "--methods", "test-exploding,pop", "--dataset", "synthetic", "--out", str(tmp_path), "--quiet"])
    assert code == 1
    assert "FAILED test-exploding" in capsys.readouterr().err
    assert (tmp_path / "synthetic" / "pop" / "seed0" / "result.json").is_file()
    failed = tmp_path / "synthetic" / "test-exploding" / "seed0"
    assert not (failed / "result.json").exists()
    assert "boom" in json.loads((failed / "failure.json").read_text())["error"]


@pytest.mark.parametrize("args,message", [
    (["--methods", "popp"], "Did you mean 'pop'"),
    (["--methods", "pop", "--dataset", "beuty"], "Did you mean 'beauty'"),
    (["--methods", "pop", "--set", "lr=1"], "no method in this run"),
    (["--methods", "pop", "--protocol", "histroy_len=3"], "unknown option 'histroy_len' (did you mean 'history_len'?)"),
    (["--methods", "pop", "--budget", "huge"], "no budget 'huge'"),
    (["--methods", "pop", "--device", "cpu", "--precision", "tf32"], "tf32 uses CUDA tensor cores"),
    (["--methods", "pop", "--compile", "inductr"], "torch.compile has no such backend"),
])
def test_bad_input_is_a_clear_error_without_traceback(tmp_path, capsys, args, message):
    assert main(["run", "--out", str(tmp_path), "--quiet", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not list(tmp_path.rglob("result.json"))


def test_precision_is_recorded_and_tf32_changes_the_key_and_the_rerun_command(tmp_path, monkeypatch):
    from bench.run.runner import RUN_KEY_VERSION, BenchmarkRun

    assert run(tmp_path) == 0
    record = json.loads((tmp_path / "synthetic" / "pop" / "seed0" / "result.json").read_text())
    assert record["environment"]["precision"] == "fp32" and record["precision"] == "fp32"
    assert current_precision("cpu") == "fp32"
    tf32 = BenchmarkRun(methods=["pop"], dataset="synthetic", seeds=[0], out=tmp_path, precision="tf32")
    assert tf32.rerun_command("pop", 0, {}).endswith("--device cuda --precision tf32")
    spec = {k: record[k] for k in KEY_FIELDS}
    spec["dataset"] = {k: record["dataset"][k] for k in ("name", "checksum")}
    assert run_key(spec) == record["run_key"] and spec["key_version"] == RUN_KEY_VERSION
    monkeypatch.setattr("bench.run.runner.apply_precision", lambda precision, device: None)  # TF32 needs CUDA
    tf32.device = "cpu"
    (outcome,) = tf32.execute()
    assert outcome.record["environment"]["precision"] == "tf32" and outcome.record["run_key"] != record["run_key"]
    assert outcome.record["run_key"] == run_key({**spec, "precision": "tf32"})


def test_the_run_key_always_holds_every_field_and_a_digest_of_the_methods_code(tmp_path, monkeypatch):
    import bench.run.runner as runner
    from methods.id.pop import Pop

    assert run(tmp_path) == 0
    path = tmp_path / "synthetic" / "pop" / "seed0" / "result.json"
    record = json.loads(path.read_text())
    assert set(KEY_FIELDS) <= set(record) and record["compile"] is None and len(record["code"]) == 64
    digested = []
    monkeypatch.setattr(runner, "code_digest", lambda *objects: digested.append(objects) or "edited")
    assert run(tmp_path) == 0  # the same options, other code: run again, not reused
    rerun = json.loads(path.read_text())
    assert rerun["code"] == "edited" and rerun["run_key"] != record["run_key"]
    assert digested == [(Pop,)]


METHOD_FILE = """
from bench.core.method import Method
from bench.core.registry import register


@register("method", "test-edited")
class Edited(Method):
    \"\"\"Scores every item alike.\"\"\"

    def fit(self, split, ctx):
        self.n_items_ = split.n_items
        return self

    def score(self, histories, users):
        import torch
        return torch.zeros(len(histories), self.n_items_)
"""


def test_editing_a_methods_file_runs_it_again(tmp_path, monkeypatch):
    """The run key holds a digest of the method's source file: an edit re-runs, an unchanged file is reused."""
    module = tmp_path / "code" / "edited_method.py"
    module.parent.mkdir()
    module.write_text(METHOD_FILE)
    monkeypatch.syspath_prepend(str(module.parent))
    importlib.import_module("edited_method")
    args = ["run", "--methods", "test-edited", "--dataset", "synthetic", "--out", str(tmp_path / "runs"), "--quiet"]
    result = tmp_path / "runs" / "synthetic" / "test-edited" / "seed0" / "result.json"
    assert main(args) == 0
    first, written = json.loads(result.read_text()), result.stat().st_mtime_ns
    assert main(args) == 0
    assert result.stat().st_mtime_ns == written  # reused
    module.write_text(METHOD_FILE + "# an edit\n")
    assert main(args) == 0
    edited = json.loads(result.read_text())
    assert result.stat().st_mtime_ns != written  # run again
    assert edited["code"] != first["code"] and edited["run_key"] != first["run_key"]


def test_sid_run_keys_digest_the_encoder_and_tokenizer_too(monkeypatch):
    import bench.run.runner as runner
    from bench.core.method import build_config
    from bench.sid.pipeline import SIDMethod
    from methods.encoders.text import TextTfidf
    from methods.sid.knn_last import LastItemKNN
    from methods.sid.tiger import Tiger
    from methods.tokenizers.rqvae import RQVAE

    monkeypatch.setattr(runner, "code_digest", lambda *objects: objects)
    tiger = runner.method_code(Tiger, build_config(Tiger, "tiger", "default", {}), "synthetic")
    assert tiger == (Tiger, SIDMethod, TextTfidf, RQVAE)  # "text" is synthetic's text encoder
    knn = runner.method_code(LastItemKNN, build_config(LastItemKNN, "knn-last", "default", {}), "synthetic")
    assert knn == (LastItemKNN, TextTfidf)


def test_compile_runs_the_trainer_through_torch_compile_and_is_recorded(tmp_path, monkeypatch):
    """The eager backend traces the loss step without generating code: the same numbers, another run key."""
    import torch

    backends = []
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: backends.append(kw.get("backend")) or real_compile(fn, **kw))
    args = ["run", "--methods", "sasrec", "--dataset", "synthetic", "--budget", "smoke", "--quiet",
            "--set", "epochs=2", "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "plain")]) == 0
    assert main([*args, "--out", str(tmp_path / "compiled"), "--compile", "eager"]) == 0
    plain, compiled = (json.loads((tmp_path / name / "synthetic" / "sasrec" / "seed0" / "result.json").read_text())
                       for name in ("plain", "compiled"))
    assert backends == ["eager"]  # the trainer compiled its loss step once, only in the compiled run
    assert compiled["environment"]["compile"] == "eager" and plain["environment"]["compile"] is None
    assert compiled["run_key"] != plain["run_key"] and "--compile eager" in compiled["rerun"]
    assert compiled["metrics"]["test"] == pytest.approx(plain["metrics"]["test"], rel=1e-5)
    assert [p["loss"] for p in compiled["curve"]] == pytest.approx([p["loss"] for p in plain["curve"]], rel=1e-5)


def test_compile_mode_is_passed_as_a_mode_not_a_backend(tmp_path, monkeypatch):
    """``--compile reduce-overhead`` (CUDA graphs) reaches torch.compile as mode=; here the eager backend stands in."""
    import torch

    calls = []
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: calls.append(kw) or real_compile(fn, backend="eager"))
    assert main(["run", "--methods", "sasrec", "--dataset", "synthetic", "--budget", "smoke", "--quiet",
                 "--set", "epochs=1", "--device", "cpu", "--out", str(tmp_path), "--compile", "reduce-overhead"]) == 0
    assert calls == [{"mode": "reduce-overhead"}]
    record = json.loads((tmp_path / "synthetic" / "sasrec" / "seed0" / "result.json").read_text())
    assert record["environment"]["compile"] == "reduce-overhead" and "--compile reduce-overhead" in record["rerun"]


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "result.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"a": object()})
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_data_prepare_prints_statistics(capsys):
    assert main(["data", "prepare", "synthetic"]) == 0
    out = capsys.readouterr().out
    assert "users" in out and "interactions" in out


def test_parallel_jobs_give_each_method_its_own_options(tmp_path):
    code = main(["run", "--methods", "pop,sasrec", "--dataset", "synthetic", "--budget", "smoke", "--jobs", "2",
                 "--set", "sasrec.epochs=1", "--quiet", "--out", str(tmp_path)])
    assert code == 0
    record = json.loads((tmp_path / "synthetic" / "sasrec" / "seed0" / "result.json").read_text())
    assert record["config"]["epochs"] == 1
    assert "--set sasrec.epochs=1" in record["rerun"]
    assert (tmp_path / "synthetic" / "pop" / "seed0" / "result.json").is_file()


def test_gpu_neighbour_watch_keeps_the_most_seen_while_the_run_lasts(monkeypatch):
    answers = iter([0, None, 3, 1] + [0] * 1000)  # a neighbour mid-run that is gone by the end still counts
    monkeypatch.setattr(records, "gpu_other_processes", lambda: next(answers))
    watch = records.GpuNeighbourWatch(interval=0.001).start()
    while len(watch.seen) < 4:
        time.sleep(0.001)
    assert watch.stop() == 3
    monkeypatch.setattr(records, "gpu_other_processes", lambda: None)
    assert records.GpuNeighbourWatch(interval=10).start().stop() is None  # nothing known: unknown, not alone


def test_gpu_other_processes_counts_others_and_says_unknown_when_nvidia_smi_hides_processes(monkeypatch):
    import subprocess

    def fake(listing, returncode=0):
        return lambda *a, **k: subprocess.CompletedProcess(a, returncode, stdout=listing, stderr="")

    monkeypatch.setattr(records.subprocess, "run", fake(f"{os.getpid()}\n4242\n4243\n"))
    assert records.gpu_other_processes() == 2
    monkeypatch.setattr(records.subprocess, "run", fake(""))  # a container: even this process is not listed
    assert records.gpu_other_processes() is None
    monkeypatch.setattr(records.subprocess, "run", fake("", returncode=9))
    assert records.gpu_other_processes() is None
