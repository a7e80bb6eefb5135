#!/usr/bin/env bash
# The exact commands behind reports/beauty/id-baselines/ (issue 3), run on one H100 through the
# device tool, one part per call (a call is limited to 10 minutes):
#   bash reports/beauty/run_id_baselines.sh A   (then B, then C)
# Small models leave the GPU mostly idle, so (method, seed) pairs run side by side (--jobs); the
# fit times in the results are therefore times under sharing, upper bounds of a run alone.
# SIDBENCH_MIRROR points at a copy of the Beauty files of ../shared/data/mirror.
set -u
OUT=${RUNS:-reports/beauty/id-baselines}
RUN="python3 -m bench run --dataset beauty --device cuda --quiet"
B4R="--set bert4rec.epochs=150"  # BERT4Rec passes its target by then; 400 would not fit a 10-minute call
# S3-Rec's evaluation (whose numbers TIGER's Table 1 repeats) sets the scores of the user's history
# items to 0 before ranking; seed-0 runs with the history excluded are there for that comparison.
EXCL="--protocol exclude_history=true --seeds 0 --out $OUT/loo-full-exclude-history"
case "${1:-}" in
  A) $RUN --methods bert4rec $B4R --seeds 0,1,2 --jobs 3 --out "$OUT/loo-full" ;;
  B) $RUN --methods sasrec-bce,s3rec --seeds 0,1,2 --jobs 6 --out "$OUT/loo-full" &
     $RUN --methods sasrec-bce,s3rec,bert4rec $B4R --jobs 3 $EXCL &
     wait ;;
  C) $RUN --methods sasrec,sasrec-star --seeds 0,1,2 --jobs 6 --out "$OUT/loo-full" &
     $RUN --methods sasrec,sasrec-star --jobs 2 $EXCL &
     wait ;;
  D) for m in sasrec-bce bert4rec s3rec; do
       $RUN --methods $m $( [ $m = bert4rec ] && echo "$B4R" ) --seeds 0 --out "$OUT/timing-alone"
     done ;;
  E) # S3-Rec's own protocol: history 50 and the history excluded from the ranking
     $RUN --methods sasrec-bce,s3rec --seeds 0 --jobs 2 --protocol history_len=50 \
          --protocol exclude_history=true --out "$OUT/s3rec-protocol-h50-exclude-history" ;;
  *) echo "usage: $0 A|B|C|D|E" >&2; exit 2 ;;
esac
# Part D: one run at a time (no GPU sharing), to time sasrec-bce, bert4rec and s3rec alone.
# Part E: sasrec-bce and s3rec under S3-Rec's own protocol (history 50, history excluded).
