#!/usr/bin/env bash
# Run one shard or one worker of a grid in the background-friendly way the study uses, and
# commit its rows (and the source prompts later stages need) into docs/results/<name>/data as
# they finish.
#   nohup scripts/study_shard.sh configs/study.toml worker > runs/study-w0.log 2>&1 &   (x cores)
#   nohup scripts/study_shard.sh configs/study.toml 0/2 sources > runs/study-0.log 2>&1 &
# "worker": `tpv experiment run --worker`, any number of them share the grid (all stages unless
# named), each taking the next job whose sources are recorded. "i/n": a fixed share of each named
# stage. Threads: one per process (one process per core); the commit touches only the data folder.
set -euo pipefail
config=$1 shard=$2; shift 2
stages=()
for s in "$@"; do stages+=(--stage "$s"); done
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=$(.venv/bin/python -c "import sys; from tpv.experiments import ExperimentConfig as C; print(C.load(sys.argv[1]).out)" "$config")
name=$(basename "$out")
dest=docs/results/$name/data
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}

commit_rows() {
  mkdir -p "$dest"
  [ -d "$out/rows" ] && cp -r "$out/rows" "$dest/"
  [ -f "$out/experiment.json" ] && cp "$out/experiment.json" "$dest/"
  # Source prompts: what cross-origin, multi-task and few-shot jobs read (not checkpoints).
  for run in "$out"/runs/sources/*/; do
    [ -f "$run/metrics.json" ] || continue
    d="$dest/sources/$(basename "$run")"; mkdir -p "$d"
    cp "$run"/{metrics.json,config.json,origin.safetensors,prompt.safetensors,vector.safetensors} "$d/" 2>/dev/null || true
  done
  if [ -n "$(git status --porcelain -- "$dest")" ]; then
    git add -- "$dest"
    n=$(find "$dest/rows" -name '*.json' | wc -l)
    git commit -q -m "$name rows: $n recorded ($shard${*:+ of ${*}})" -- "$dest" || true
  fi
}

restore_rows() {
  # A fresh checkout: the committed rows and source prompts go back where the runner reads them
  # (cp -n: never over what this machine already has).
  [ -d "$dest/rows" ] || return 0
  mkdir -p "$out/rows" "$out/runs/sources"
  cp -rn "$dest/rows/." "$out/rows/"
  [ -f "$out/experiment.json" ] || { [ -f "$dest/experiment.json" ] && cp "$dest/experiment.json" "$out/"; }
  if [ -d "$dest/sources" ]; then cp -rn "$dest/sources/." "$out/runs/sources/"; fi
}

restore_rows
if [ "$shard" = worker ]; then split=(--worker); else split=(--shard "$shard"); fi
.venv/bin/tpv experiment run "$config" "${split[@]}" "${stages[@]}" &
pid=$!
while kill -0 "$pid" 2>/dev/null; do
  sleep 300
  commit_rows "$@" || true
done
rc=0; wait "$pid" || rc=$?   # (set -e would end the script here before the last commit)
commit_rows "$@" || true
exit $rc
