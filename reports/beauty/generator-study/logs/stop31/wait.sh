# later calls: collect the queue (the machine must still be warm); the last call adds `bash .carry/cacheback.sh`
. .carry/env.sh
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
RUNS=/tmp/r/b bash reports/run_queue.sh wait "$1" $OUT/b.tgz
RUNS=/tmp/r/b WIDTH=150 bash reports/run_queue.sh progress
