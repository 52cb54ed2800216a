#!/usr/bin/env bash
# The long quality sweep (bench/quality.py), cell by cell, from a git worktree pinned at one commit.
#
#   bench/run_quality.sh [COMMIT] [WORKTREE]        # defaults: HEAD, /work/bench-wt
#
# Creates the worktree if it is missing (an existing one is used as it is: its commit is the one the
# rows record), then runs the cells in the order below, each in its own process; a finished cell is
# skipped and an unfinished one resumes from its finished students (bench/work/ inside the worktree).
# After the cells, bench/teacher_seeds.py (MRPC and STS-B, 3 teacher seeds). Output goes to
# WORKTREE/bench/logs/quality.log; results to WORKTREE/bench/results/quality.json (teacher_seeds.json) and
# WORKTREE/docs/results.md - copy them to main when a cell finishes. Run nothing else heavy meanwhile:
# two torch processes on two cores slow each other 5-15x.
set -euo pipefail
# One block, read whole before it runs: editing this file while a long run executes it (a commit in main)
# must not change what bash reads next.
{
main="$(cd "$(dirname "$0")/.." && pwd)"
commit="${1:-HEAD}"
wt="${2:-/work/bench-wt}"
python="${PYTHON:-$main/.venv/bin/python}"
if [ ! -d "$wt" ]; then
  git -C "$main" worktree add --detach "$wt" "$commit"
  # Cells finished on main are kept (the sweep skips them).
  cp "$main/bench/results/quality.json" "$wt/bench/results/quality.json"
fi
mkdir -p "$wt/bench/logs"
cd "$wt"
# study NAME [ARGS...]: from the main checkout (a pinned worktree may predate it).
. "$main/bench/study.sh"
cells=(
  "sst2 pruned70" "sst2 layers2" "cola pruned70" "cola layers2"
  "stsb pruned70" "stsb layers2" "mrpc layers2" "rte pruned70" "rte layers2"
)
for c in "${cells[@]}"; do
  set -- $c
  echo "=== $(date -u +%FT%T) start $1/$2 at $(git rev-parse --short HEAD)"
  study quality --tasks "$1" --students "$2" || { echo "FAILED $1/$2"; exit 1; }
  echo "=== $(date -u +%FT%T) done $1/$2"
done
# Then the teacher-seed spread (issue 11: how far the students move with the teacher's own seed).
echo "=== $(date -u +%FT%T) start teacher_seeds mrpc,stsb at $(git rev-parse --short HEAD)"
study teacher_seeds --tasks mrpc,stsb || { echo "FAILED teacher_seeds"; exit 1; }
echo "=== $(date -u +%FT%T) done teacher_seeds"
exit
}
