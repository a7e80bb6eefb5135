#!/usr/bin/env bash
# Eager against compiled training steps of one method on Beauty, in short runs that time every epoch (a benchmark
# to pick the setting for real runs, not a result): METHOD (default etegrec) runs seed 0 once per mode in MODES
# (default: eager, inductor's reduce-overhead, and dynamo's cudagraphs backend, which records CUDA graphs without
# inductor's code generation), one mode after another on one GPU, each into $AB/MODE. QUICK shrinks what comes
# before the timed training (a 2-epoch view, a 100-epoch RQ-VAE) and validates after every epoch, so that each
# curve point holds one epoch's train_seconds. Per mode and phase, the table gives the first epoch (which
# includes compiling) and the median of the others. A mode that fails prints its error and the next one runs.
#   AB=/tmp/runs/ab bash reports/speed/compile_ab.sh                 (on the device, env as in reports/run_queue.sh)
#   AB=/tmp/runs/ab2 METHOD=tiger bash reports/speed/compile_ab.sh   (issue 19: the default generator)
#   AB=/tmp/ab DATASET=synthetic DEVICE=cpu PRECISION= MODES="eager aot_eager" EXTRA="--budget smoke" \
#       bash reports/speed/compile_ab.sh                              (a check of the script on a CPU)
# Stop 26, H200: etegrec under reduce-overhead failed in inductor on a sort key with a 2**32 factor (an int32
# Triton literal; ../beauty/etegrec/logs/stop26/compile_try.log); the key is now two stable sorts.
set -u
AB=${AB:?set AB to a scratch folder}
METHOD=${METHOD:-etegrec}
case "$METHOD" in
  etegrec*) default_quick="--set epochs=8 --set finetune_epochs=0 --set rq_epochs=100 --set eval_every=1 --set encoder_options=epochs=2" ;;
  tiger) default_quick="--set epochs=6 --set tok_epochs=100 --set eval_every=1" ;;
  *) default_quick="" ;;
esac
QUICK=${QUICK-$default_quick}
mkdir -p "$AB"
for mode in ${MODES:-eager reduce-overhead cudagraphs}; do
  compile=""; [ "$mode" = eager ] || compile="--compile $mode"
  start=$(date +%s)
  python3 -m bench run --dataset "${DATASET:-beauty}" --device "${DEVICE:-cuda}" --quiet ${PRECISION---precision tf32} \
      $compile --methods "$METHOD" --seeds 0 $QUICK ${EXTRA:-} --out "$AB/$mode" > "$AB/$mode.log" 2>&1
  echo "$mode: exit $? after $(( $(date +%s) - start )) s"
done
python3 - "$AB" ${MODES:-eager reduce-overhead cudagraphs} <<'PY'
import json, pathlib, statistics, sys
root = pathlib.Path(sys.argv[1])
print("| mode | stage / phase | epochs | first epoch s | median of the others s |")
print("|---|---|---:|---:|---:|")
for mode in sys.argv[2:]:
    for failure in sorted((root / mode).rglob("failure.json")):
        print(f"| {mode} | failed: {json.loads(failure.read_text()).get('error', '?')[:200]} | | | |")
    for record in sorted((root / mode).rglob("result.json")):
        groups = {}
        for point in json.loads(record.read_text())["curve"]:
            if "train_seconds" in point:
                name = "/".join(str(point[k]) for k in ("stage", "phase") if point.get(k))
                groups.setdefault(name, []).append(point["train_seconds"])
        for name, seconds in groups.items():
            rest = f"{statistics.median(seconds[1:]):.3f}" if len(seconds) > 1 else ""
            print(f"| {mode} | {name} | {len(seconds)} | {seconds[0]:.3f} | {rest} |")
PY
