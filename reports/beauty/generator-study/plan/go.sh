# call 1 (stop 33 plan): FAMAE's reproducibility probe (famae_repro.py, about 2 minutes), then three queues, each
# starting when the one before has ended (AFTER), one run at a time; waits out the call's $1 s:
#   b: resid seeds 0-2, default and 40-epoch schedule, compiled (todo-resid.txt: study.py --todo's first 6 lines)
#   a: ReSID's E3, sid:bert4rec-emb+gaoq seeds 0-2, eager fp32 like the ReSID ablations of reports/beauty/sid
#      (todo-e3.txt; the seeds whose bert4rec-emb and gaoq fits came from this checkout's CPU at stop 32 find
#      them in .carry/cache, the others fit them here)
#   c: the study's single changes, compiled (todo-rest.txt: study.py --todo's other lines)
t0=$SECONDS
. .carry/env.sh
timeout 300 python3 reports/beauty/generator-study/famae_repro.py --out $OUT/famae_repro.json 2>&1 | grep -v Warning
RUN_ARGS="--precision tf32 --compile reduce-overhead" RUNS=/tmp/r/b bash reports/run_queue.sh start-file 1 .carry/todo-resid.txt
AFTER=/tmp/r/b RUNS=/tmp/r/a bash reports/run_queue.sh start-file 1 .carry/todo-e3.txt
AFTER=/tmp/r/a RUN_ARGS="--precision tf32 --compile reduce-overhead" RUNS=/tmp/r/c \
    bash reports/run_queue.sh start-file 1 .carry/todo-rest.txt
bash .carry/wait.sh $(( $1 - (SECONDS - t0) ))
