# pack the stage-cache entries the queue wrote (FAMAE, GAOQ, RQ-VAE per seed) for .carry/cache/stages
. .carry/env.sh
RUNS=/tmp/r/b bash reports/run_queue.sh cache-back $OUT/cache.tgz; ls -la $OUT
