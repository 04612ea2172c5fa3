#!/usr/bin/env bash
# End-to-end check of `sportsdet predict --engine ray` on a Ray cluster on 127.0.0.1 (a head and
# one worker node): a few thousand real photos, the job interrupted and resumed, a re-run that
# skips everything, and the results compared with plain `sportsdet predict`.
#
#   bash scripts/ray_cluster_check.sh ['../shared/data/sports100/train/[a-c]*/*'] [SECONDS_BEFORE_CTRL_C]
#
# Stops only the Ray processes it started (by their process ids). About 3-4 minutes on 2 cores.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
INPUT=${1:-../shared/data/sports100/train/[a-c]*/*}
STOP_AFTER=${2:-25}
BIN=${BIN:-$REPO/.venv/bin}
PORT=${PORT:-6379}
WORK=$(mktemp -d /tmp/sportsdet-ray-check-XXXXXX)
OUT=$WORK/labels
export RAY_AUTH_MODE=token  # `ray start --head` turns token auth on; every node and driver must agree

cleanup() {
  for pid_file in "$WORK/worker.pid" "$WORK/head.pid"; do
    [ -f "$pid_file" ] && kill "$(cat "$pid_file")" 2>/dev/null
  done
  wait 2>/dev/null
}
trap cleanup EXIT

"$BIN/ray" start --head --node-ip-address=127.0.0.1 --port="$PORT" --num-cpus=2 \
  --include-dashboard=false --block >"$WORK/head.log" 2>&1 &
echo $! >"$WORK/head.pid"
sleep 12
"$BIN/ray" start --address=127.0.0.1:"$PORT" --node-ip-address=127.0.0.1 --num-cpus=2 \
  --block >"$WORK/worker.log" 2>&1 &
echo $! >"$WORK/worker.pid"
sleep 10
"$BIN/python" -c "import ray; ray.init(address='127.0.0.1:$PORT', logging_level='ERROR'); \
print('cluster:', len([n for n in ray.nodes() if n['Alive']]), 'nodes,', ray.cluster_resources().get('CPU'), 'CPUs')"

RUN=("$BIN/sportsdet" predict --engine ray --address 127.0.0.1:"$PORT" "$INPUT" --output "$OUT" --workers 2)
echo "== 1. the job, interrupted (Ctrl-C) after $STOP_AFTER s"
timeout --preserve-status -s INT "$STOP_AFTER" "${RUN[@]}"; echo "exit code $?"
echo "== 2. the same command again: resumes"
"${RUN[@]}"; echo "exit code $?"
echo "== 3. once more: nothing left to do"
"${RUN[@]}"; echo "exit code $?"
echo "== 4. plain sportsdet predict on the same photos"
"$BIN/sportsdet" predict "$INPUT" --format jsonl >"$WORK/plain.jsonl"; echo "exit code $?"
"$BIN/python" - "$WORK/plain.jsonl" "$OUT" <<'PY'
import json, sys
import pyarrow.parquet as pq
plain = {r["input"]: r for r in map(json.loads, open(sys.argv[1]))}
rows = pq.read_table(sys.argv[2]).to_pylist()
ray = {r["input"]: r for r in rows}
same = sum(ray.get(k, {}).get("label") == v["label"] for k, v in plain.items())
diffs = [abs(ray[k]["score"] - v["score"]) for k, v in plain.items() if k in ray and v["score"] is not None]
print(f"ray rows {len(rows)} (unique inputs {len(ray)}), plain predict {len(plain)}, same inputs {set(ray) == set(plain)}")
print(f"same labels {same} of {len(plain)}, largest score difference {max(diffs, default=0.0):.2e}")
sys.exit(0 if set(ray) == set(plain) and len(rows) == len(ray) and same == len(plain) else 1)
PY
status=$?
echo "work folder: $WORK"
exit $status
