#!/usr/bin/env bash
# Run the README's test command N times in a row, each time from a fresh clone (a new .venv installed from the
# lock, no state left by an earlier run), and print one line per run: exit status, wall time, pytest's summary.
# A warm .venv hides install breakage and one lucky run hides a race: this is the check before calling it done.
#
#   bash scripts/repeat_tests.sh [N=10] [REF=HEAD]     # e.g. bash scripts/repeat_tests.sh 10 main
#
# Each run has a hard limit (REPEAT_LIMIT_S, default 1800 s) so a hang is reported, not waited on. The clones
# live under a temporary folder that is removed at the end; logs stay in $REPEAT_LOGS (default /tmp/repeat-tests).
set -uo pipefail
n="${1:-10}"
ref="${2:-HEAD}"
limit="${REPEAT_LIMIT_S:-1800}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
logs="${REPEAT_LOGS:-/tmp/repeat-tests}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$logs"
commit="$(git -C "$repo" rev-parse --short "$ref")"
echo "repeat_tests: $n fresh-clone runs of 'bash scripts/test.sh' at $commit ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores)"
failed=0
for i in $(seq 1 "$n"); do
  clone="$work/run$i/$(basename "$repo")"
  mkdir -p "$(dirname "$clone")"
  # The checkout's ../shared (design notes, peers) sits beside every clone as it does beside the repository.
  [ -d "$repo/../shared" ] && ln -s "$repo/../shared" "$work/run$i/shared"
  git clone -q "$repo" "$clone" && git -C "$clone" checkout -q "$commit"
  start=$(date +%s)
  (cd "$clone" && CI=true timeout --kill-after=30 "$limit" bash scripts/test.sh) >"$logs/run$i.log" 2>&1 </dev/null
  rc=$?
  secs=$(( $(date +%s) - start ))
  summary="$(grep -E '^[0-9]+ (passed|failed)|^=+ .*(passed|failed).* =+$' "$logs/run$i.log" | tail -1)"
  [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && summary="HUNG: killed after ${limit} s"
  printf 'run %2d: exit %3d  %4d s  %s\n' "$i" "$rc" "$secs" "${summary:-no pytest summary (see $logs/run$i.log)}"
  [ "$rc" -eq 0 ] || failed=$((failed + 1))
  rm -rf "$work/run$i"
done
echo "repeat_tests: $((n - failed)) of $n runs passed; logs in $logs"
[ "$failed" -eq 0 ]
