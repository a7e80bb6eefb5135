"""Storage rules: variants side by side, one writer per folder, an interrupted re-run leaves no stale result."""

import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.cli import main
from bench.core import registry
from bench.report import load, summary
from bench.run.records import CLAIM, load_records
from methods.id.pop import Pop

ROOT = Path(__file__).resolve().parents[1]


def run(out, *args):
    return main(["run", "--methods", "pop", "--dataset", "synthetic", "--out", str(out), "--quiet", *args])


def test_two_variants_are_stored_side_by_side_and_reported_apart(tmp_path, capsys):
    assert run(tmp_path) == 0
    assert run(tmp_path, "--methods", "sasrec", "--budget", "smoke", "--set", "epochs=2") == 0
    assert run(tmp_path, "--methods", "sasrec", "--budget", "smoke", "--set", "epochs=1") == 0
    folders = sorted(p.parent.name for p in (tmp_path / "synthetic" / "sasrec").glob("*/result.json"))
    assert folders[0] == "seed0" and len(folders) == 2 and folders[1].startswith("seed0~")
    runs, duplicates = load.collect_runs([tmp_path])
    assert not duplicates
    assert {(r.method, r.budget) for r in runs} == {("pop", "default"), ("sasrec [epochs=2]", "smoke"),
                                                   ("sasrec [epochs=1]", "smoke")}
    text = summary.summarize(tmp_path)
    assert "### synthetic (history 20)" in text and "### synthetic (history 20, budget smoke)" in text
    smoke = text.split("budget smoke)")[1]
    assert "| pop |" not in smoke and "| sasrec [epochs=1] |" in smoke  # budgets never share a table


def test_a_folder_claimed_by_a_live_process_is_left_alone(tmp_path, capsys):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        folder = tmp_path / "synthetic" / "pop" / "seed0"
        folder.mkdir(parents=True)
        (folder / CLAIM).write_text(json.dumps({"pid": holder.pid, "host": platform.node(), "started": "now"}))
        assert run(tmp_path) == 1
        assert f"being written by process {holder.pid}" in capsys.readouterr().err
        assert sorted(p.name for p in folder.iterdir()) == [CLAIM]  # nothing written beside the other's claim
    finally:
        holder.kill()
        holder.wait()
    assert run(tmp_path) == 0  # its process is gone: the stale claim is taken over
    assert (folder / "result.json").is_file() and not (folder / CLAIM).exists()


def test_two_concurrent_writers_keep_exactly_one_result(tmp_path):
    command = [sys.executable, "-m", "bench", "run", "--methods", "sasrec", "--dataset", "synthetic", "--budget",
               "smoke", "--set", "epochs=2", "--out", str(tmp_path), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    writers = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    outcomes = [(w.wait(timeout=600), w.stderr.read()) for w in writers]
    assert 0 in [code for code, _ in outcomes], outcomes
    for code, err in outcomes:  # the other one either reused the result or found the folder claimed
        assert code == 0 or "being written by process" in err, err
    folder = tmp_path / "synthetic" / "sasrec" / "seed0"
    assert json.loads((folder / "result.json").read_text())["status"] == "ok"
    assert not (folder / CLAIM).exists() and not list(tmp_path.rglob("failure.json"))


@registry.register("method", "test-interruptible")
class Interruptible(Pop):
    """Popularity; raises KeyboardInterrupt in fit while ``interrupt`` is set (a Ctrl-C mid-training)."""

    interrupt = False

    def fit(self, split, ctx):
        if Interruptible.interrupt:
            raise KeyboardInterrupt
        return super().fit(split, ctx)


def test_an_interrupted_rerun_leaves_no_result_that_looks_current(tmp_path, capsys):
    args = ["--methods", "test-interruptible"]
    assert run(tmp_path, *args) == 0
    folder = tmp_path / "synthetic" / "test-interruptible" / "seed0"
    Interruptible.interrupt = True
    try:
        assert run(tmp_path, *args, "--force") == 130
    finally:
        Interruptible.interrupt = False
    assert not (folder / "result.json").exists() and (folder / "result.json.replaced").is_file()
    assert not (folder / CLAIM).exists()
    assert load_records(tmp_path) == []  # nothing a report or summary would show as this method's result
    assert run(tmp_path, *args) == 0  # a finished re-run drops what it replaced
    assert (folder / "result.json").is_file() and not list(folder.glob("*.replaced"))


def test_bad_out_and_history_fail_before_training_and_write_nothing(tmp_path, capsys):
    target = tmp_path / "a-file"
    target.write_text("x")
    assert run(target) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out" in err and "found a file" in err
    assert run(tmp_path / "out", "--protocol", "history_len=100000") == 2
    err = capsys.readouterr().err
    assert "history_len=100000 is longer than synthetic's longest sequence" in err and "use at most" in err
    assert not (tmp_path / "out" / "synthetic").exists()


def test_a_corrupt_result_is_named_not_a_traceback(tmp_path, capsys):
    assert run(tmp_path) == 0
    (tmp_path / "synthetic" / "pop" / "seed0" / "result.json").write_text("{not json")
    assert main(["summarize", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "result.json is not valid JSON" in err and "Traceback" not in err


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads child processes from /proc (Linux)")
def test_ctrl_c_with_jobs_stops_every_worker(tmp_path):
    command = [sys.executable, "-m", "bench", "run", "--methods", "sasrec", "--seeds", "0,1", "--jobs", "2",
               "--dataset", "synthetic", "--out", str(tmp_path), "--quiet"]
    parent = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    deadline = time.monotonic() + 120
    workers: list[int] = []
    while time.monotonic() < deadline and len(workers) < 2:  # the two workers are up (and training)
        time.sleep(0.5)
        workers = [c for c in _children(parent.pid) if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text()]
    assert len(workers) == 2, "the workers did not start"
    time.sleep(3)
    os.killpg(parent.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends: every process of the group
    assert parent.wait(timeout=60) == 130, parent.stderr.read()
    time.sleep(1)
    assert not [w for w in workers if _alive(w)]
    assert not list(tmp_path.rglob("result.json"))
