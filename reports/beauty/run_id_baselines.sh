#!/usr/bin/env bash
# The exact commands behind reports/beauty/id-baselines/ (issue 3), run on one H100 through the
# device tool in two calls (a call is limited to 10 minutes): `bash reports/beauty/run_id_baselines.sh A`
# then `... B`. Small models leave the GPU mostly idle, so (method, seed) pairs run side by side (--jobs).
# SIDBENCH_MIRROR points at a copy of the Beauty files of ../shared/data/mirror.
set -u
OUT=${RUNS:-reports/beauty/id-baselines}
RUN="python3 -m bench run --dataset beauty --device cuda --quiet"
B4R="--set bert4rec.epochs=150"  # BERT4Rec passes its target by then; 400 would not fit a 10-minute call
case "${1:-}" in
  A) $RUN --methods sasrec-bce,s3rec,bert4rec $B4R --seeds 0,1,2 --jobs 9 --out "$OUT/loo-full" ;;
  B) $RUN --methods sasrec,sasrec-star --seeds 0,1,2 --jobs 11 --out "$OUT/loo-full" &
     # S3-Rec's evaluation (whose numbers TIGER's Table 1 repeats) sets the scores of the user's
     # history items to 0 before ranking; the same runs with the history excluded, for comparison.
     $RUN --methods sasrec,sasrec-bce,sasrec-star,bert4rec,s3rec $B4R --seeds 0 --jobs 5 \
          --protocol exclude_history=true --out "$OUT/loo-full-exclude-history" &
     wait ;;
  *) echo "usage: $0 A|B" >&2; exit 2 ;;
esac
