# stop 27, first device call: compile A/B for etegrec, then the issue-17 queue with the faster setting
export SIDBENCH_CACHE=/tmp/cache SIDBENCH_GIT_COMMIT=$(cat .carry/commit) PYTHONPATH=$PWD PYTHONUNBUFFERED=1 SIDBENCH_MIRROR=$PWD/.carry/mirror
mkdir -p /tmp/cache /tmp/runs; cp -rn .carry/cache/. /tmp/cache/
t0=$(date +%s); date -u +%FT%TZ > /tmp/runs/ab.start
AB=/tmp/runs/ab MODES="reduce-overhead" QUICK="--set epochs=8 --set finetune_epochs=0 --set eval_every=1" \
  timeout 330 bash reports/speed/compile_ab.sh > /tmp/runs/ab.txt 2>&1
rc=$?; pkill -f -- "--out /tmp/runs/ab/"; sleep 2
echo "ab exit $rc after $(( $(date +%s) - t0 )) s" >> /tmp/runs/ab.txt; date -u +%FT%TZ > /tmp/runs/ab.end
cat /tmp/runs/ab.txt; tail -5 /tmp/runs/ab/reduce-overhead.log
choice=$(python3 - <<'PY'
import json, pathlib, statistics
g = {}
for rec in pathlib.Path("/tmp/runs/ab/reduce-overhead").rglob("result.json"):
    for p in json.loads(rec.read_text())["curve"]:
        if p.get("stage") == "joint" and "train_seconds" in p:
            g.setdefault(p["phase"], []).append(p["train_seconds"])
try:
    est = statistics.median(g["generator"][1:]) + statistics.median(g["tokenizer"][1:])
except (KeyError, statistics.StatisticsError):
    est = None
print("--compile reduce-overhead" if est is not None and est < 0.8 * (3.03 + 1.29) else "")
PY
)
echo "choice: '$choice'" | tee /tmp/runs/choice
export RUN_ARGS="--precision tf32 $choice"
RUNS=/tmp/runs/a bash reports/run_queue.sh start-file 1 reports/beauty/etegrec/runs.txt
sleep 2; RUNS=/tmp/runs/a bash reports/run_queue.sh wait $(( 555 - ($(date +%s) - t0) )) $OUT/a.tgz
cp /tmp/runs/ab.txt /tmp/runs/choice $OUT/; tar czf $OUT/ab.tgz -C /tmp/runs ab ab.start ab.end 2>/dev/null
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
