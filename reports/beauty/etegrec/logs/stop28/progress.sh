[ -d /tmp/runs/b ] && RUNS=/tmp/runs/b bash reports/run_queue.sh wait 1 $OUT/b.tgz
RUNS=/tmp/runs/a bash reports/run_queue.sh cache-back $OUT/stages.tgz
cat /tmp/runs/after.log; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv
for f in /tmp/runs/*/logs/*.log; do echo "== $f $(cat ${f%.log}.rc 2>/dev/null)"; grep -c "bench.nn.train" "$f"; tail -2 "$f" | cut -c1-260; done
