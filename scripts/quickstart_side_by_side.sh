#!/usr/bin/env bash
# The quickstart from two commits at once, each from a fresh clone with an empty MOEAUDIO_CACHE, each
# on one thread, so both meet the same machine (docs/benchmarks.md: "Before and after, side by side").
#
#   scripts/quickstart_side_by_side.sh BEFORE_COMMIT AFTER_COMMIT [WORKDIR]
#
# Uses the active environment (moeaudio's dependencies installed). Writes WORKDIR/{before,after}.log
# with every line timestamped (seconds since start) and prints each run's wall time.
set -euo pipefail
before=$1 after=$2 work=${3:-$(mktemp -d)}
python -c "import deepspeed, typer" 2>/dev/null ||
    { echo "activate an environment with moeaudio's dependencies first (README set-up)" >&2; exit 2; }
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
run() {  # tag commit
    local dir=$work/$1
    rm -rf "$dir" && git clone -q "$repo" "$dir" && git -C "$dir" checkout -q "$2"
    local t0=$SECONDS
    (cd "$dir" && PYTHONPATH=$dir MOEAUDIO_CACHE=$dir/.moeaudio-cache OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
        python -m moeaudio.cli train recipes/quickstart.yaml 2>&1 |
        python -u -c 'import sys, time
t0 = time.time()
for line in sys.stdin: print(f"{time.time() - t0:7.1f} {line.rstrip()}", flush=True)' >"$work/$1.log")
    echo "$1 ($2): $((SECONDS - t0)) s"
}
run before "$before" &
run after "$after" &
wait
echo "logs: $work/before.log $work/after.log"
