# call 1 (stop 31 plan): issue 19's study lines without a record (study.py --todo > .carry/todo.txt), compiled, one at a time
. .carry/env.sh
RUN_ARGS="--precision tf32 --compile reduce-overhead" RUNS=/tmp/r/b bash reports/run_queue.sh start-file 1 .carry/todo.txt
bash .carry/wait.sh "$1"
