# stop 29, first device call: issue 17's etegrec-joint s0 alone (eager tf32, as the other etegrec runs); once it
# has an .rc, issue 19's generator study starts from its runs.txt (tf32, compiled: reduce-overhead), two at a time
. .carry/env.sh
t0=$(date +%s); nvidia-smi --query-gpu=name,memory.used --format=csv
RUN_ARGS="--precision tf32" RUNS=/tmp/runs/a bash reports/run_queue.sh start 1 etegrec-joint:0
setsid bash .carry/after_joint.sh < /dev/null > /tmp/runs/after.log 2>&1 &
sleep 2; RUNS=/tmp/runs/a bash reports/run_queue.sh wait $(( ${1:-555} - ($(date +%s) - t0) )) $OUT/a.tgz
bash .carry/progress5.sh
