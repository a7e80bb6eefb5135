#!/usr/bin/env bash
# Fit ReSID's E3 encoder (bert4rec-emb) and tokenizer (gaoq) on a CPU, one seed after another, stopping each
# run once its tokenize stage is in the stage cache (the generator is left to the GPU, which finds both there).
#   SIDBENCH_CACHE=/tmp/e3cache SIDBENCH_MIRROR=../shared/data/mirror bash plan/e3_cpu_fits.sh 0 1 2
# then copy the new stages/encode/KEY and stages/tokenize/KEY folders into .carry/cache/stages/.
# At stop 32 seed 0 ran the same command by hand, and a loop with the same commands and stop rule (this script,
# tidied afterwards) took seeds 1 and 2 (about 30 minutes a seed on
# 2 cores); the logs went to /tmp/e3_sK.log.
set -u
cd "$(git rev-parse --show-toplevel)"
: "${SIDBENCH_CACHE:?set SIDBENCH_CACHE to the cache folder to fill (e.g. a copy of .carry/cache)}"
export SIDBENCH_CACHE PYTHONUNBUFFERED=1
entries() { ls "$SIDBENCH_CACHE"/stages/tokenize/*/meta.json 2>/dev/null | wc -l; }
for seed in "$@"; do
  before=$(entries)
  setsid python -m bench run --methods sid:bert4rec-emb+gaoq --dataset beauty --seeds "$seed" --device cpu \
      --quiet --out /tmp/e3runs > "/tmp/e3_s$seed.log" 2>&1 &
  pid=$!
  echo "$(date -u +%T) seed $seed: pid $pid, log /tmp/e3_s$seed.log"
  while kill -0 "$pid" 2>/dev/null && [ "$(entries)" -le "$before" ]; do sleep 10; done
  kill -- -"$pid" 2>/dev/null
  echo "$(date -u +%T) seed $seed: tokenize entries $(entries) (were $before)"
done
