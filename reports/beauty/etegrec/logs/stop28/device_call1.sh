# this session's first device call: issue 17's etegrec s2, etegrec-no-sia s0 and etegrec-joint s0, eager tf32
# (as etegrec s0 and s1 ran); joint starts once no-sia has fitted (and cached) seed 0's view and stage 0
export SIDBENCH_CACHE=/tmp/cache SIDBENCH_GIT_COMMIT=$(cat .carry/commit) PYTHONPATH=$PWD PYTHONUNBUFFERED=1 SIDBENCH_MIRROR=$PWD/.carry/mirror
mkdir -p /tmp/cache /tmp/runs; cp -rn .carry/cache/. /tmp/cache/ 2>/dev/null
t0=$(date +%s); nvidia-smi --query-gpu=name,memory.used --format=csv
RUN_ARGS="--precision tf32" RUNS=/tmp/runs/a bash reports/run_queue.sh start 2 etegrec:2 etegrec-no-sia:0
setsid bash .carry/after_stage0.sh < /dev/null > /tmp/runs/after.log 2>&1 &
sleep 2; RUNS=/tmp/runs/a bash reports/run_queue.sh wait $(( ${1:-555} - ($(date +%s) - t0) )) $OUT/a.tgz
bash .carry/progress.sh
