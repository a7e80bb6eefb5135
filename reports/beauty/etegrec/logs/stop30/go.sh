# call 1: etegrec's own protocol alone (eager tf32, queue a); the study's remaining lines after it (compiled, one at a time, queue b)
. .carry/env.sh
RUN_ARGS="--precision tf32" RUNS=/tmp/r2/a bash reports/run_queue.sh start 1 'etegrec:0 --protocol history_len=50 --set constrained=false'
AFTER=/tmp/r2/a RUN_ARGS="--precision tf32 --compile reduce-overhead" RUNS=/tmp/r2/b bash reports/run_queue.sh start-file 1 .carry/todo.txt
bash .carry/wait.sh "$1"
