#!/usr/bin/env bash
# Drive Beauty runs on the device machine as a queue, so that runs finish one after another instead of all
# at the end (the GPU is time-sliced between processes: nine runs started at once finished nothing within a
# 10-minute call at stop 22, while two or three at once gain over one after another).
#
#   RUNS=/tmp/runs bash reports/run_queue.sh start WORKERS 'METHOD:SEED [RUN OPTIONS]' ...
#   RUNS=/tmp/runs bash reports/run_queue.sh start-file WORKERS FILE   (one 'METHOD:SEED [RUN OPTIONS]' per line;
#       blank lines and lines starting with # are skipped), e.g. 'tiger:0 --set lr=0.005 --set batch_size=2048'.
#       WORKERS processes under setsid, each taking the next unclaimed run from the list (in order, one
#       claim folder per run under $RUNS/.claims); records land in $RUNS/loo-full, one log per run in
#       $RUNS/logs (METHOD_SEED.log, .rc with its exit status, .start/.end with UTC times, .pid with its process).
#       With AFTER=OTHER_RUNS (a queue started before), the queue is written at once but its workers begin only
#       when every line of OTHER_RUNS has an .rc (one run after another across two queues, e.g. one eager and one
#       compiled RUN_ARGS, within one device call: stop 29 needed a hand-written script for it).
#   bash reports/run_queue.sh name 'METHOD:SEED [RUN OPTIONS]'
#       the file name a queue line's logs get (reports/beauty/generator-study/study.py finds the logs by it).
#   RUNS=/tmp/runs bash reports/run_queue.sh progress
#       one line per queued run: exit status, running or waiting, and the last line of its log (WIDTH characters).
#   RUNS=/tmp/runs bash reports/run_queue.sh stop 'METHOD:SEED [RUN OPTIONS]' ...
#       stop those runs (each as its queue line) if they are running; the worker takes the next line.
#   RUNS=/tmp/runs bash reports/run_queue.sh wait SECONDS TAR
#       wait until every claimed run has an .rc and no run is left unclaimed, or SECONDS have passed, then
#       pack $RUNS into TAR (so what finished comes back even when the rest has not); POLL: seconds between
#       looks (10). tests/test_run_queue.py runs a queue on the CPU.
#
# The runs survive between device calls only while the machine stays warm (a call chained within its idle
# time); on a fresh machine `wait` says so at once instead of waiting for runs that cannot appear.
# Environment on the device, with .carry carried (processed data and text vectors from a CPU, the mirror copy
# of the precomputed indexes; see reports/beauty/README.md):
#   export SIDBENCH_CACHE=/tmp/cache SIDBENCH_GIT_COMMIT=$(cat .carry/commit) PYTHONPATH=$PWD PYTHONUNBUFFERED=1 \
#          SIDBENCH_MIRROR=$PWD/.carry/mirror; mkdir -p /tmp/cache; cp -rn .carry/cache/. /tmp/cache/
# Build .carry here first: `SIDBENCH_CACHE=$PWD/.carry/cache SIDBENCH_MIRROR=../shared/data/mirror python -m bench
# diagnose --tokenizer random --encoder text-st --dataset beauty` (about 3 minutes on 2 cores), `git rev-parse HEAD
# > .carry/commit`, and for letter-native (it reads LETTER's released index by URL; the device has no network)
# `cp -r ../shared/data/mirror/raw.githubusercontent.com/Nishikata97 .carry/mirror/raw.githubusercontent.com/`.
# (.carry and the tracked files travel together, 64 MiB at most: at stop 29 the text vectors, data and Beauty's four
# mirror files made 33 MB of .carry next to 23 MB of tracked files.)
# One device call, as stop 29's (an eager queue, then a compiled one once it has ended, collected in the call):
#   <the environment above>; RUN_ARGS="--precision tf32" RUNS=/tmp/runs/a bash reports/run_queue.sh start-file 1 A.txt
#   AFTER=/tmp/runs/a RUN_ARGS="--precision tf32 --compile reduce-overhead" RUNS=/tmp/runs/b \
#       bash reports/run_queue.sh start-file 1 B.txt
#   RUNS=/tmp/runs/b bash reports/run_queue.sh wait 540 $OUT/b.tgz; RUNS=/tmp/runs/a bash reports/run_queue.sh wait 1 \
#       $OUT/a.tgz; for q in a b; do RUNS=/tmp/runs/$q bash reports/run_queue.sh progress; done
# Chain the next call at once (the machine goes back 30 s after a call): it repeats the last two lines.
# Measured durations on one H200 (stop 23, three at a time): tiger-hybrid 525-569 s (345 s alone), unified-sem-only
# 287-388 s, unified-two-stage 541 s. Stop 24, tf32, four at a time: letter-native 508-592 s; `letter`'s tokenizer
# ran 148-165 s per 1,000 of its 10,000 epochs next to three other runs and 38 s alone (its generator 183 s alone,
# the sasrec-emb view 117 s): run `letter` alone or beside one generator run, across chained calls.
# Stop 25: two `letter` fits side by side ran 82 s per 1,000 epochs each (no throughput lost or gained), two
# generators side by side 5.9-6.0 s per epoch (3.0-3.5 alone).
# Stop 26: etegrec 641 s alone (but for its last 95 s; stage 1 144 epochs: generator epochs 3.03 s, tokenizer
# 1.29 s), 815 s next to one or two runs; a run that needs another's cache (etegrec-two-stage after etegrec) was
# started from its own RUNS folder once the cache file existed: `until ls $SIDBENCH_CACHE/stages/etegrec-stage1/*/
# meta.json; do sleep 5; done; RUNS=/tmp/runs/b bash reports/run_queue.sh start 1 etegrec-two-stage:0` under setsid.
# Stop 27, --compile reduce-overhead (RUN_ARGS="--precision tf32 --compile reduce-overhead"): etegrec-no-align 315 s
# and etegrec-no-psa 573 s alone, view and stage 0 from the cache (stage-1 generator epochs 1.90 s, tokenizer epochs
# 0.14 s without alignment, 0.35 s with SIA). Two runs died the second the next device call began (the tool copies
# the checkout again at each call); `start` now copies the code into $RUNS/src and the runs import from there.
# Stop 28, eager: etegrec s2 and etegrec-no-sia s0 side by side 1,156 and 1,158 s; stage-1 generator epochs 9.1-9.6 s
# each while three runs shared the H200, 6.0-6.3 s with two, 3.03 s alone (stop 26): 0.97x and 0.98x the throughput
# of one at a time. Run ETEGRec one at a time.
# Stop 29: etegrec-joint 593 s alone (view and stage 0 fitted). Study runs, compiled, two at a time: 294 to 390 s each;
# compiled generator epochs 1.96 s while the other run fitted its encoder, 4.37 s with both generators training
# (0.90x the throughput of one at a time): run compiled generators one at a time.
# Stop 30: etegrec at history 50 with a free beam 990 s alone (stage-1 generator epochs 6.21 s eager, twice history
# 20's); study runs compiled, one at a time: 223 and 231 s each (40 epochs), generator epochs 1.97 s after a first,
# compiling epoch of 60 to 68 s (40 to 45% of a 40-epoch generator's time).
# Stop 31: 8 study runs compiled, one at a time, 107 to 340 s each; a first epoch that finds the graph shapes in
# inductor's on-disk cache (an earlier run of the machine compiled them) takes 9 to 12 s, else 62 to 94 s: keep a
# seed's runs together. cache-back's 80 MB came back in part (the device returns 64 MiB): now capped by MAX_BYTES.
#   RUNS=/tmp/runs bash reports/run_queue.sh cache-back TAR [KEY ...]   (in a shell with the environment above:
#       it reads SIDBENCH_CACHE; stop 30's failed without it)
#       pack the stage-cache entries written since the queue started (or the entries KEY alone; views first, while
#       they fit MAX_BYTES, 56 MiB, of the device's 64 MiB return; split into TAR.00, TAR.01, ... when over
#       15 MiB), for .carry/cache/stages (next session's
#       runs of the same seeds reuse the same views and stage-0 tokenizers while their code is unchanged).
set -u
run_name() { printf "%s" "$1" | tr -c "A-Za-z0-9.-" "_" | cut -c1-150; }  # a queue line's file name under logs/
queue_ended() { [ "$(ls "$1/logs" | grep -c '\.rc$')" -ge "$(wc -l < "$1/queue")" ]; }  # every line has an .rc
export -f run_name queue_ended  # the workers' `bash -c` use them too
need_queue() {
  [ -f "$RUNS/queue" ] || { echo "no queue under $RUNS: a fresh machine (the runs died with the last one)"; exit 3; }
}
if [ "${1:-}" = name ]; then run_name "${2:?a queue line}"; exit 0; fi  # for scripts that read the logs
RUNS=${RUNS:?set RUNS to the folder the runs write to}
RUN="python3 -m bench run --dataset ${DATASET:-beauty} --device ${DEVICE:-cuda} --quiet ${RUN_ARGS:-}"  # RUN_ARGS: e.g. --precision tf32
case "${1:-}" in
  start)
    workers=${2:?the number of runs at once}; shift 2
    after=${AFTER:-}
    if [ -n "$after" ] && [ ! -f "$after/queue" ]; then
      echo "start: AFTER=$after holds no queue; expected the RUNS folder of a queue started before this one" >&2; exit 2
    fi
    mkdir -p "$RUNS/logs" "$RUNS/.claims"
    # the runs import from a private copy of the code: the device tool re-copies the checkout at the start of
    # every call, and at stop 27 two runs died the second the next call began (one failed to import
    # bench.eval.evaluator, one segfaulted)
    root=$(cd "$(dirname "$0")/.." && pwd); rm -rf "$RUNS/src"; mkdir -p "$RUNS/src"
    cp -r "$root/bench" "$root/methods" "$root/datasets" "$root/pyproject.toml" "$RUNS/src/"
    printf '%s\n' "$@" > "$RUNS/queue"
    date -u +%FT%TZ > "$RUNS/logs/started"
    for _ in $(seq "$workers"); do
      setsid bash -c '
        if [ -n "$2" ]; then  # AFTER: wait until every line of that queue has an exit status
          until queue_ended "$2"; do sleep "${POLL:-10}"; done
        fi
        while IFS= read -r line; do
          [ -n "$line" ] || continue
          item=${line%% *}; extra=""; [ "$item" = "$line" ] || extra=${line#* }
          name=$(run_name "$line")
          mkdir "$0/.claims/$name" 2>/dev/null || continue   # the first worker to get here runs it
          date -u +%FT%TZ > "$0/logs/$name.start"
          (cd "$0/src" && PYTHONPATH="$0/src" exec $1 --methods "${item%:*}" --seeds "${item##*:}" $extra \
             --out "$0/loo-full" < /dev/null > "$0/logs/$name.log" 2>&1) &
          echo $! > "$0/logs/$name.pid"; wait $!
          echo $? > "$0/logs/$name.rc"; date -u +%FT%TZ > "$0/logs/$name.end"
        done < "$0/queue"' "$RUNS" "$RUN" "$after" < /dev/null > /dev/null 2>&1 &
    done ;;
  stop)
    # stop queued runs that are running (SIGTERM to the run's process; its .rc says 143), by their queue line;
    # the worker goes on with the next line. (At stop 28 a `pkill -f` on the line's text matched the device
    # call's own command line and ended the call instead.)
    shift; [ $# -gt 0 ] || { echo "stop: name the runs, as their queue lines (e.g. 'etegrec-joint:0')" >&2; exit 2; }
    for line in "$@"; do
      name=$(run_name "$line")
      pid=$(cat "$RUNS/logs/$name.pid" 2>/dev/null)
      if [ -n "$pid" ] && [ ! -f "$RUNS/logs/$name.rc" ] && kill -TERM "$pid" 2>/dev/null; then echo "stopped $line"
      else echo "stop: $line is not running under $RUNS (no $name.pid, or it has an .rc)" >&2; exit 3; fi
    done ;;
  start-file)
    file=${3:?a file with one run per line}; [ -f "$file" ] || { echo "no file $file" >&2; exit 2; }
    mapfile -t lines < <(grep -v '^[[:space:]]*\(#\|$\)' "$file")
    exec bash "$0" start "${2:?the number of runs at once}" "${lines[@]}" ;;
  wait)
    seconds=${2:?how long to wait at most}; tar_file=${3:?a tar file}
    need_queue
    deadline=$(( $(date +%s) + seconds ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
      queue_ended "$RUNS" && break
      sleep "${POLL:-10}"  # seconds between looks
    done
    date -u +%FT%TZ > "$RUNS/logs/collected"
    for rc in "$RUNS"/logs/*.rc; do [ -f "$rc" ] && echo "$(basename "$rc" .rc): exit $(cat "$rc")"; done
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null
    tar czf "$tar_file" -C "$(dirname "$RUNS")" "$(basename "$RUNS")" ;;
  progress)
    # one line per queued run: its state (exit status, running, or waiting) and the last line of its log
    need_queue
    while IFS= read -r line; do
      [ -n "$line" ] || continue
      name=$(run_name "$line"); log="$RUNS/logs/$name.log"
      if [ -f "$RUNS/logs/$name.rc" ]; then state="exit $(cat "$RUNS/logs/$name.rc")"
      elif [ -f "$log" ]; then state="running"; else state="waiting"; fi
      echo "$line: $state | $(tail -n 1 "$log" 2>/dev/null | cut -c1-${WIDTH:-240})"
    done < "$RUNS/queue" ;;
  cache-back)
    # the stage-cache entries the queue wrote (views, stage-0 tokenizers, ETEGRec's stage-1 tokens), packed for
    # .carry/cache/stages, so that the next session's runs of the same seed reuse them instead of refitting; with
    # KEYs (a record's extra.sid.encoder.cache_key and extra.sid.tokenizer.cache_key), those entries alone. A file
    # over 16 MiB does not come back from the device (`etegrec` s0's view and stage 0 alone pack to 24.9 MB), so a
    # larger TAR is split into TAR.00, TAR.01, ... of PART_BYTES (15 MiB) each: `cat TAR.* | tar xz` unpacks them
    tar_file=$(realpath -m "${2:?a tar file}"); [ -f "$RUNS/logs/started" ] || { echo "no queue under $RUNS" >&2; exit 3; }
    shift 2; cd "${SIDBENCH_CACHE:?set SIDBENCH_CACHE}" || exit 3
    entries=()
    if [ $# -gt 0 ]; then
      for key in "$@"; do
        found=$(find stages -mindepth 2 -maxdepth 2 -type d -name "$key" | head -1)
        [ -n "$found" ] || { echo "cache-back: no stage-cache entry $key under $SIDBENCH_CACHE/stages;" \
                               "expected a cache_key from a record of this machine's runs" >&2; exit 2; }
        entries+=("$found")
      done
    else
      mapfile -d '' entries < <(find stages -mindepth 2 -maxdepth 2 -type d -newer "$RUNS/logs/started" -print0)
    fi
    [ ${#entries[@]} -gt 0 ] || { echo "cache-back: no stage-cache entry was written since the queue started" >&2; exit 3; }
    # the device returns at most 64 MiB in all (stop 31's 80 MB came back in part, useless): keep the entries, views
    # first, while their unpacked bytes fit MAX_BYTES (packing only shrinks them), and name those left out
    max_bytes=${MAX_BYTES:-58720256}; budget=$max_bytes; kept=()
    mapfile -t entries < <(printf '%s\n' "${entries[@]}" | sort -t/ -k2,2 -s)  # stages/encode before stages/tokenize
    for entry in "${entries[@]}"; do
      bytes=$(find "$entry" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
      if [ "$bytes" -le "$budget" ]; then kept+=("$entry"); budget=$((budget - bytes))
      else echo "cache-back: left out $entry ($bytes bytes; ${budget} of MAX_BYTES left)" >&2; fi
    done
    [ ${#kept[@]} -gt 0 ] || { echo "cache-back: no entry fits MAX_BYTES=$max_bytes" >&2; exit 3; }
    printf '%s\0' "${kept[@]}" | tar czf "$tar_file" --null -T - || exit 1
    tar tzf "$tar_file" | grep -c meta.json
    part=${PART_BYTES:-15728640}
    if [ "$(stat -c %s "$tar_file")" -gt "$part" ]; then
      split -b "$part" -d "$tar_file" "$tar_file." && rm "$tar_file" && ls "$tar_file".*
    fi ;;
  *) echo "usage: $0 start WORKERS 'METHOD:SEED [OPTIONS]' ... | start-file WORKERS FILE | wait SECONDS TAR" \
          "| name LINE | progress | cache-back TAR [KEY ...] | stop 'METHOD:SEED [OPTIONS]' ..." >&2; exit 2 ;;
esac
