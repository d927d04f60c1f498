#!/usr/bin/env bash
# Cluster check: the study of configs/study-cluster-check.json (192 sweep jobs) on one machine, then on a loopback
# Orleans cluster with Redis clustering and persistence, with 1, 2 and 3 silo processes; in the 3-silo run one silo
# (not the coordinator's) is killed (SIGKILL) midway. Checks that every cluster run's records (records.json: every
# field, exact FLOPs included) equal the single-machine run's, and prints the sweep throughput per silo count.
#   bench/cluster-check.sh            (installs redis-server with apt-get if it is absent)
# Environment: REDIS_PORT (6399), THREADS per process (1), KILL_AFTER records before the kill (64).
set -euo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
PORT=${REDIS_PORT:-6399}
REDIS=127.0.0.1:$PORT
THREADS=${THREADS:-1}
KILL_AFTER=${KILL_AFTER:-64}
OUT=out/cluster-check
CONFIG=configs/study-cluster-check.json
CLI=(dotnet src/Ponder.Cli/bin/Release/net10.0/Ponder.Cli.dll)
mkdir -p "$OUT"
rm -f "$OUT"/*-records.jsonl* "$OUT"/*.log

dotnet build src/Ponder.Cli -c Release -nologo -v q >/dev/null
if ! command -v redis-server >/dev/null; then
  echo "installing redis-server (apt-get)"
  apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
fi

SILOS=()
cleanup() {
  for pid in "${SILOS[@]}"; do kill "$pid" 2>/dev/null || true; done
  redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || true
}
trap cleanup EXIT
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes --logfile "$PWD/$OUT/redis.log"
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$PORT" flushall >/dev/null
echo "redis-server $(redis-server --version | grep -o 'v=[0-9.]*') on $REDIS; $(nproc) cores ($(grep -m1 -o 'avx512f' /proc/cpuinfo || grep -m1 -o 'avx2' /proc/cpuinfo || echo 'no AVX2'))"

# A copy of the config per run, with its own record cache (the oracle samples are shared: computed by the first run).
config_for() {
  python3 - "$CONFIG" "$OUT/$1.json" "$OUT/$1-records.jsonl" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["recordCache"] = sys.argv[3]; json.dump(c, open(sys.argv[2], "w"), indent=1)
PY
}

sweep_seconds() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['wallSeconds']['sweep'])" "$1/summary.json"; }

start_silo() { # index
  local i=$1
  "${CLI[@]}" silo --model weights/policy-small --prm weights/prm-small --cluster "$REDIS" --name "silo-$i" \
    --silo-port $((11110 + i)) --gateway-port $((30000 + i)) --threads "$THREADS" --slots 4 --kv-tokens 16384 --lease-timeout 10 \
    >"$OUT/silo-$i.log" 2>&1 &
  SILOS+=($!)
  for _ in $(seq 600); do grep -q "silo silo-$i up" "$OUT/silo-$i.log" && return 0; sleep 0.2; done
  echo "silo-$i did not start:"; cat "$OUT/silo-$i.log"; exit 1
}

stop_silos() {
  for pid in "${SILOS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${SILOS[@]}"; do wait "$pid" 2>/dev/null || true; done
  SILOS=()
  redis-cli -p "$PORT" flushall >/dev/null # a fresh cluster (membership) and fresh sweep progress for the next run
}

echo "== single machine (reference)"
config_for single
start=$(date +%s.%N)
"${CLI[@]}" sweep --config "$OUT/single.json" --out "$OUT/single" --threads "$THREADS" >"$OUT/single.log" 2>&1
jobs=$(wc -l <"$OUT/single-records.jsonl")
single=$(sweep_seconds "$OUT/single")
echo "single machine: $jobs jobs, sweep $single s, $(python3 -c "print(f'{$jobs/$single:.2f}')") jobs/s (whole command $(python3 -c "print(f'{$(date +%s.%N)-$start:.0f}')") s, oracle samples included)"

declare -A RATE
for n in 1 2 3; do
  echo "== cluster, $n silo(s)"
  for i in $(seq 1 "$n"); do start_silo "$i"; done
  config_for "cluster-$n"
  "${CLI[@]}" sweep --config "$OUT/cluster-$n.json" --out "$OUT/cluster-$n" --threads "$THREADS" --cluster "$REDIS" >"$OUT/cluster-$n.log" 2>&1 &
  client=$!
  if [ "$n" = 3 ]; then
    # Kill a silo midway: one that does not hold the coordinator (see README: what a coordinator's death costs).
    until [ -f "$OUT/cluster-3-records.jsonl" ] && [ "$(wc -l <"$OUT/cluster-3-records.jsonl")" -ge "$KILL_AFTER" ]; do
      kill -0 $client 2>/dev/null || break; sleep 0.2; done
    coord=$(grep -o 'coordinator sweep-[0-9a-f]* on silo S[0-9.]*:[0-9]*' "$OUT/cluster-3.log" | grep -o '[0-9]*$' || true)
    for i in 3 2 1; do
      if [ "$((11110 + i))" != "$coord" ]; then
        echo "killing silo-$i (SIGKILL) after $(wc -l <"$OUT/cluster-3-records.jsonl") records; the coordinator is on the silo at port $coord"
        kill -9 "${SILOS[$((i - 1))]}"; break
      fi
    done
  fi
  wait $client || { echo "client failed:"; tail -20 "$OUT/cluster-$n.log"; exit 1; }
  grep -E '^Cluster sweep|^  silo |reassigned' "$OUT/cluster-$n.log" || true
  RATE[$n]=$(python3 -c "print(f'{$jobs/$(sweep_seconds "$OUT/cluster-$n"):.2f}')")
  if cmp -s "$OUT/single/records.json" "$OUT/cluster-$n/records.json"; then
    echo "records: identical to the single-machine run ($jobs jobs, every field)"
  else
    echo "records DIFFER from the single-machine run"; exit 1
  fi
  python3 - "$OUT/cluster-$n-records.jsonl" "$jobs" <<'PY'
import json, sys
keys = [json.loads(l)["Key"] for l in open(sys.argv[1]) if l.strip()]
assert len(keys) == len(set(keys)) == int(sys.argv[2]), f"{len(keys)} records, {len(set(keys))} distinct, {sys.argv[2]} jobs"
print(f"exactly once: {len(keys)} records, {len(set(keys))} distinct keys")
PY
  stop_silos
done

echo "== throughput (sweep phase, jobs/s; $(nproc) cores shared by every process)"
echo "single machine: $(python3 -c "print(f'{$jobs/$single:.2f}')")"
for n in 1 2 3; do echo "$n silo(s): ${RATE[$n]}$([ "$n" = 3 ] && echo ' (one silo killed midway)')"; done
