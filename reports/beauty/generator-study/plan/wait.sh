# later calls: collect the three queues (the machine must still be warm); no cache-back (FAMAE entries do not
# fit the carry). Waits for the last queue (c) up to $1 s, then packs each queue's records and logs.
. .carry/env.sh
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
RUNS=/tmp/r/c bash reports/run_queue.sh wait "$1" $OUT/c.tgz
for q in b a; do RUNS=/tmp/r/$q bash reports/run_queue.sh wait 1 $OUT/$q.tgz; done
for q in b a c; do RUNS=/tmp/r/$q WIDTH=150 bash reports/run_queue.sh progress; done
