#!/usr/bin/env bash
# The exact commands behind reports/beauty/unified/'s first batch (issue 16), run on one H200 through the device tool;
# the runs it did not finish ran at stop 23 through reports/run_queue.sh (unified/README.md).
#   bash reports/beauty/run_unified.sh start   every run below at once, in the background (setsid), logs in $OUT/logs
#   bash reports/beauty/run_unified.sh wait    wait for them, then pack the records into $2 (a tar file)
# Small models leave the GPU mostly idle, so the runs share it (--jobs): the fit times in the records are
# times under sharing (the report marks them), upper bounds of a run alone. SIDBENCH_CACHE holds the
# processed Beauty data and the text-st vectors computed on a CPU beforehand (the encode stage is a cache hit).
set -u
OUT=${RUNS:-reports/beauty/unified}
RUN="python3 -m bench run --dataset beauty --device cuda --quiet"
case "${1:-}" in
  start)
    mkdir -p "$OUT/logs"
    setsid bash -c "$RUN --methods unified,unified-id-only,unified-sem-only --seeds 0,1,2 --jobs 5 --out $OUT/loo-full \
        > $OUT/logs/unified.log 2>&1; echo \$? > $OUT/logs/unified.rc" < /dev/null &
    setsid bash -c "$RUN --methods unified-l2,unified-cosine,unified-two-stage --seeds 0 --jobs 3 --out $OUT/loo-full \
        > $OUT/logs/ablations.log 2>&1; echo \$? > $OUT/logs/ablations.rc" < /dev/null &
    setsid bash -c "$RUN --methods tiger-hybrid --seeds 0,1,2 --jobs 3 --out $OUT/loo-full \
        > $OUT/logs/tiger-hybrid.log 2>&1; echo \$? > $OUT/logs/tiger-hybrid.rc" < /dev/null &
    date -u +%FT%TZ > "$OUT/logs/started" ;;
  wait)
    for part in unified ablations tiger-hybrid; do
      while [ ! -f "$OUT/logs/$part.rc" ]; do sleep 5; done
    done
    date -u +%FT%TZ > "$OUT/logs/finished"
    tar cf "${2:?a tar file}" "$OUT" ;;
  *) echo "usage: $0 start | wait TAR" >&2; exit 2 ;;
esac
