until grep -q "'stage': 'joint'" /tmp/runs/a/logs/etegrec-no-sia_0.log 2>/dev/null; do sleep 5; done
date -u +%FT%TZ; RUN_ARGS="--precision tf32" RUNS=/tmp/runs/b bash reports/run_queue.sh start 1 etegrec-joint:0
