# later calls: collect both queues (the machine must still be warm)
. .carry/env.sh
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
RUNS=/tmp/r2/b bash reports/run_queue.sh wait "$1" $OUT/b.tgz; RUNS=/tmp/r2/a bash reports/run_queue.sh wait 1 $OUT/a.tgz
for q in a b; do RUNS=/tmp/r2/$q WIDTH=150 bash reports/run_queue.sh progress; done
