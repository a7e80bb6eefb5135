. .carry/env.sh
until [ -f /tmp/runs/a/logs/etegrec-joint_0.rc ]; do sleep 5; done
date -u +%FT%TZ; RUN_ARGS="--precision tf32 --compile reduce-overhead" RUNS=/tmp/runs/b \
  bash reports/run_queue.sh start-file 2 reports/beauty/generator-study/runs.txt
