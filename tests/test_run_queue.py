"""``reports/run_queue.sh``, the driver of every committed GPU run: a queued run runs from a private copy of the
code, records its exit status and times, can be stopped by its line, and ``cache-back`` packs the stage-cache entries it
wrote (or those named)."""

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUEUE = ROOT / "reports" / "run_queue.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("tar") is None,
                                reason="run_queue.sh needs bash and tar")


def queue(runs: Path, cache: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``run_queue.sh ARGS`` called from the folder above ``runs``, on the synthetic data, the CPU, the smoke budget."""
    env = {**os.environ, "RUNS": str(runs), "SIDBENCH_CACHE": str(cache), "DATASET": "synthetic", "DEVICE": "cpu",
           "RUN_ARGS": "--budget smoke", "POLL": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    env.pop("PYTHONPATH", None)
    return subprocess.run(["bash", str(QUEUE), *args], env=env, cwd=runs.parent, capture_output=True, text=True,
                          timeout=300, check=False)


def test_a_queued_run_uses_its_own_copy_of_the_code_and_its_cache_entries_come_back(tmp_path):
    runs, cache = tmp_path / "runs", tmp_path / "cache"
    assert queue(runs, cache, "start", "1", "sid:text-tfidf+random:0", "pop:0 --set pop.window=0").returncode == 0
    waited = queue(runs, cache, "wait", "240", str(tmp_path / "runs.tgz"))
    assert waited.returncode == 0, waited.stderr
    assert "sid_text-tfidf_random_0: exit 0" in waited.stdout
    # the second line's option is unknown: its run fails before training, and the queue says so
    assert "pop_0_--set_pop.window_0: exit 2" in waited.stdout
    assert (runs / "src" / "bench" / "cli.py").read_text() == (ROOT / "bench" / "cli.py").read_text()
    record = json.loads((runs / "loo-full" / "synthetic" / "sid-text-tfidf_random" / "seed0" / "result.json")
                        .read_text())
    assert record["status"] == "ok" and record["budget"] == "smoke"
    for name in ("started", "sid_text-tfidf_random_0.start", "sid_text-tfidf_random_0.end", "collected"):
        assert (runs / "logs" / name).is_file(), name
    with tarfile.open(tmp_path / "runs.tgz") as tar:
        assert "runs/loo-full/synthetic/sid-text-tfidf_random/seed0/result.json" in tar.getnames()

    back = queue(runs, cache, "cache-back", "stages.tgz")  # a relative path: the folder it was called from
    assert back.returncode == 0, back.stderr
    with tarfile.open(tmp_path / "stages.tgz") as tar:
        names = tar.getnames()
    assert {n.split("/")[1] for n in names if n.endswith("meta.json")} == {"encode", "tokenize"}
    assert back.stdout.strip() == "2"

    # by key: the entries named alone (what comes back from the device must stay under 16 MiB a file)
    key = record["extra"]["sid"]["encoder"]["cache_key"]
    one = queue(runs, cache, "cache-back", "view.tgz", key)
    assert one.returncode == 0, one.stderr
    with tarfile.open(tmp_path / "view.tgz") as tar:
        assert {n for n in tar.getnames() if n.endswith("meta.json")} == {f"stages/encode/{key}/meta.json"}
    # over PART_BYTES, the tar comes in parts (a file over 16 MiB does not come back from the device)
    split = queue(runs, cache, "cache-back", "parts.tgz", env={"PART_BYTES": "4096"})
    assert split.returncode == 0, split.stderr
    parts = sorted(tmp_path.glob("parts.tgz.*"))
    assert len(parts) > 1 and not (tmp_path / "parts.tgz").exists()
    assert all(p.stat().st_size <= 4096 for p in parts) and split.stdout.split()[1:] == [str(p) for p in parts]
    (tmp_path / "joined.tgz").write_bytes(b"".join(p.read_bytes() for p in parts))
    with tarfile.open(tmp_path / "joined.tgz") as tar:
        assert sorted(tar.getnames()) == sorted(names)
    # over MAX_BYTES (the device returns 64 MiB in all), the view comes first and the tokenizer is named left out
    view_bytes = sum(f.stat().st_size for f in (cache / "stages" / "encode" / key).iterdir())
    capped = queue(runs, cache, "cache-back", "capped.tgz", env={"MAX_BYTES": str(view_bytes)})
    assert capped.returncode == 0, capped.stderr
    with tarfile.open(tmp_path / "capped.tgz") as tar:
        assert {n for n in tar.getnames() if n.endswith("meta.json")} == {f"stages/encode/{key}/meta.json"}
    assert "left out stages/tokenize/" in capped.stderr
    missing = queue(runs, cache, "cache-back", "none.tgz", key, "0123456789abcdef0123")
    assert missing.returncode == 2 and "no stage-cache entry 0123456789abcdef0123" in missing.stderr
    assert not (tmp_path / "none.tgz").exists()


def test_stop_ends_a_running_run_and_the_worker_takes_the_next_line(tmp_path):
    runs, cache = tmp_path / "runs", tmp_path / "cache"
    long_run = "sid:text-tfidf+random:0 --set epochs=100000 --set patience=100000"
    assert queue(runs, cache, "start", "1", long_run, "pop:0").returncode == 0
    name = "sid_text-tfidf_random_0_--set_epochs_100000_--set_patience_100000"
    log = runs / "logs" / f"{name}.log"
    deadline = time.time() + 120
    while "'epoch': 1," not in (log.read_text() if log.is_file() else "") and time.time() < deadline:
        time.sleep(0.5)  # stop it once it trains
    stopped = queue(runs, cache, "stop", long_run)
    assert stopped.returncode == 0 and stopped.stdout.strip() == f"stopped {long_run}", stopped.stderr
    waited = queue(runs, cache, "wait", "120", str(tmp_path / "runs.tgz"))
    assert f"{name}: exit 143" in waited.stdout and "pop_0: exit 0" in waited.stdout, waited.stdout
    assert not list((runs / "loo-full").rglob("sid-text-tfidf_random/*/result.json"))  # a stopped run has no record
    again = queue(runs, cache, "stop", long_run)  # it has ended: nothing to stop, and the call says so
    assert again.returncode == 3 and "is not running" in again.stderr


def test_after_holds_a_queue_until_every_run_of_another_has_ended(tmp_path):
    first, second, cache = tmp_path / "first", tmp_path / "second", tmp_path / "cache"
    refused = queue(second, cache, "start", "1", "pop:0", env={"AFTER": str(tmp_path / "nowhere")})
    assert refused.returncode == 2 and "AFTER=" in refused.stderr and not second.exists()
    long_run = "sid:text-tfidf+random:0 --set epochs=100000 --set patience=100000"
    assert queue(first, cache, "start", "1", long_run).returncode == 0
    try:
        name = "sid_text-tfidf_random_0_--set_epochs_100000_--set_patience_100000"
        log = first / "logs" / f"{name}.log"
        deadline = time.time() + 120
        while "'epoch': 1," not in (log.read_text() if log.is_file() else "") and time.time() < deadline:
            time.sleep(0.5)
        assert queue(first, cache, "name", long_run, env={"RUNS": ""}).stdout == f"{name}\n"  # the logs' name, alone
        assert queue(second, cache, "start", "1", "pop:0", env={"AFTER": str(first)}).returncode == 0
        time.sleep(3)  # three of the workers' looks (POLL=1) while the first queue still runs
        assert (second / "queue").read_text() == "pop:0\n" and not (second / "logs" / "pop_0.start").exists()
        assert queue(first, cache, "stop", long_run).returncode == 0
        waited = queue(second, cache, "wait", "120", str(tmp_path / "second.tgz"))
        assert "pop_0: exit 0" in waited.stdout, waited.stdout
        progress = queue(first, cache, "progress")
        assert progress.returncode == 0 and progress.stdout.startswith(f"{long_run}: exit 143 | "), progress.stdout
        ended = (first / "logs" / f"{name}.end").read_text()
        assert (second / "logs" / "pop_0.start").read_text() >= ended  # ISO times in UTC compare as text
    finally:  # a failed assertion must not leave the long run training (it would slow every later test)
        queue(first, cache, "stop", long_run)
