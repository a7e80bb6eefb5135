# follow-up calls: collect the queue (the machine must still be warm)
[ -f /tmp/runs/a/queue ] || { echo "fresh machine"; exit 3; }
export SIDBENCH_CACHE=/tmp/cache PYTHONPATH=$PWD
RUNS=/tmp/runs/a bash reports/run_queue.sh wait ${1:-560} $OUT/a.tgz
for f in /tmp/runs/a/logs/*.log; do echo "== $f"; tail -3 "$f"; done
