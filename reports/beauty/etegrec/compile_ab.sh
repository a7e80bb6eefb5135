#!/usr/bin/env bash
# ETEGRec eager against `--compile reduce-overhead`: two short stage-1 runs of seed 0 (6 epochs, no stage 2) into
# $AB (a scratch folder, not for reports), one after the other on one GPU, then each phase's seconds per epoch
# from the records (the compiled run's first epochs include compiling; its later validated epochs are in its log).
# Each run fills the caches (the 256-d sasrec-emb view, stage 0's RQ-VAE) that real runs of the same setting reuse:
# the compile setting is part of their keys, so the compiled run fits its own (compiled) view and stage 0 too.
# Checked on a CPU (synthetic, smoke budget, aot_eager): both runs finish and write records.
#   AB=/tmp/runs/ab bash reports/beauty/etegrec/compile_ab.sh         (on the device, env as in reports/run_queue.sh)
#   AB=/tmp/ab DATASET=synthetic DEVICE=cpu PRECISION= MODES="eager aot_eager" EXTRA="--budget smoke" \
#       bash reports/beauty/etegrec/compile_ab.sh                      (a check of the script on a CPU)
set -u
AB=${AB:?set AB to a scratch folder}
mkdir -p "$AB"
for mode in ${MODES:-eager reduce-overhead}; do
  compile=""; [ "$mode" = eager ] || compile="--compile $mode"
  start=$(date +%s)
  python3 -m bench run --dataset "${DATASET:-beauty}" --device "${DEVICE:-cuda}" --quiet ${PRECISION---precision tf32} $compile \
      --methods etegrec --seeds 0 --set epochs=6 --set finetune_epochs=0 ${EXTRA:-} --out "$AB/$mode" \
      > "$AB/$mode.log" 2>&1
  echo "$mode: exit $? after $(( $(date +%s) - start )) s"
done
python3 - "$AB" <<'PY'
import json, pathlib, sys
for record in sorted(pathlib.Path(sys.argv[1]).rglob("result.json")):
    r = json.loads(record.read_text())
    joint = r["extra"].get("joint", {})
    phases = {k: v["seconds_per_epoch"] for k, v in joint.get("phases", {}).items()}
    points = [(p.get("phase"), p["epoch"], p["train_seconds"]) for p in r["curve"] if p.get("stage") == "joint"]
    print(record.parts[-5], "compile", r.get("compile"), "stage-1 seconds per epoch", phases, "epochs", points)
PY
