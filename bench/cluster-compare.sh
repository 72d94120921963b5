#!/usr/bin/env bash
# Compares a 3-node stashnode cluster (replicas 3, write quorum 2) with a
# single stashnode (no replication) under redis-benchmark, on this
# machine, in one run, and prints throughput ratios, CPU per request and
# write latency at one client.
#
#   bench/cluster-compare.sh [requests] [rounds]
#
# CLUSTER_ARGS adds flags to the cluster nodes' command lines (e.g.
# "--cluster-profile local"); NODE_ENV sets environment variables of
# every stashnode (e.g. "GOMAXPROCS=2").
#
# KEYSPACE=N adds -r N (keys spread over slots and so over primaries);
# unset, redis-benchmark reuses one key, whose slot has one primary that
# the node under test may or may not be. With many keys, each node's
# checkpoints (every 128 MiB of log) rewrite the working set: use enough
# requests that the single node checkpoints too, or the comparison
# flatters it. The cluster is measured twice:
# "cluster" sends every request to one node, which forwards what it is
# not primary for; "routed" runs redis-benchmark --cluster, which sends
# each request to its slot's primary, as a cluster-aware client
# (go-redis ClusterClient, redis-cli -c) does. Every server listens on
# 127.0.0.1 only and is stopped at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
ROUNDS=${2:-2}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
for p in 17380 17381 17382 17383; do
  if redis-cli -p $p PING >/dev/null 2>&1; then echo "port $p is already serving; stop that server first" >&2; exit 1; fi
done
go build -o "$work/stashnode" ./cmd/stashnode

env ${NODE_ENV:-} "$work/stashnode" --name single --port 17380 --admin-port -1 --data-dir "$work/single" --log-level warn 2>"$work/single.log" &
pids+=($!); single=$!
join=127.0.0.1:17591,127.0.0.1:17592,127.0.0.1:17593
cluster=()
for i in 1 2 3; do
  env ${NODE_ENV:-} "$work/stashnode" --name n$i --port 1738$i --admin-port -1 --gossip-port 1759$i --cluster-port 1769$i \
    --data-dir "$work/n$i" --secret cluster-compare-secret-0123 --join $join --bootstrap-expect 3 \
    --log-level warn ${CLUSTER_ARGS:-} 2>"$work/n$i.log" &
  pids+=($!); cluster+=($!)
done
for p in 17380 17381 17382 17383; do
  for _ in $(seq 150); do redis-cli -p $p SET probe 1 2>/dev/null | grep -q OK && break; sleep 0.2; done
done

cputicks() { local s=0; for p in "$@"; do s=$((s + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo $s; }
TCK=$(getconf CLK_TCK)
# run <port> <test> <clients> <pids...>: prints "rps p50 p99 cpu_us_per_req"
run() {
  local port=$1 test=$2 c=$3; shift 3
  local c0; c0=$(cputicks "$@")
  local out; out=$(redis-benchmark -p "$port" -t "$test" -d 1024 -c "$c" -n "$N" ${KEYSPACE:+-r "$KEYSPACE"} ${ROUTED:+--cluster} --csv 2>/dev/null | awk -F, '/^"(SET|GET)"/ {gsub(/"/,""); print $2, $5, $7; exit}')
  local c1; c1=$(cputicks "$@")
  echo "$out $(awk -v a="$c0" -v b="$c1" -v t="$TCK" -v n="$N" 'BEGIN{printf "%.1f", (b-a)/t*1e6/n}')"
}

declare -A rps cpu
for round in $(seq "$ROUNDS"); do
  for t in set get; do
    read -r r _ _ c <<<"$(run 17380 $t 50 $single)"; rps[single|$t]=$(awk -v a="${rps[single|$t]:-0}" -v b="$r" 'BEGIN{print a+b}'); cpu[single|$t]=$c
    read -r r _ _ c <<<"$(run 17381 $t 50 "${cluster[@]}")"; rps[cluster|$t]=$(awk -v a="${rps[cluster|$t]:-0}" -v b="$r" 'BEGIN{print a+b}'); cpu[cluster|$t]=$c
    read -r r _ _ c <<<"$(ROUTED=1 run 17381 $t 50 "${cluster[@]}")"; rps[routed|$t]=$(awk -v a="${rps[routed|$t]:-0}" -v b="$r" 'BEGIN{print a+b}'); cpu[routed|$t]=$c
  done
done
printf '%-5s %11s %11s %6s %11s %6s %9s %9s %9s\n' test single_rps cluster_rps ratio routed_rps ratio single_us cluster_us routed_us
for t in set get; do
  s=$(awk -v x="${rps[single|$t]}" -v n="$ROUNDS" 'BEGIN{printf "%.0f", x/n}')
  c=$(awk -v x="${rps[cluster|$t]}" -v n="$ROUNDS" 'BEGIN{printf "%.0f", x/n}')
  r=$(awk -v x="${rps[routed|$t]}" -v n="$ROUNDS" 'BEGIN{printf "%.0f", x/n}')
  printf '%-5s %11s %11s %6s %11s %6s %9s %9s %9s\n' "$t" "$s" "$c" "$(awk -v a="$c" -v b="$s" 'BEGIN{printf "%.2f", a/b}')" \
    "$r" "$(awk -v a="$r" -v b="$s" 'BEGIN{printf "%.2f", a/b}')" "${cpu[single|$t]}" "${cpu[cluster|$t]}" "${cpu[routed|$t]}"
done
echo "(*_us: CPU µs per request, all stashnode processes of the setup together)"
echo "write latency at one client (ms):"
read -r _ p50 p99 _ <<<"$(N=$((N / 10)) run 17380 set 1 $single)"; echo "  single  p50 $p50  p99 $p99"
read -r _ p50 p99 _ <<<"$(N=$((N / 10)) run 17381 set 1 "${cluster[@]}")"; echo "  cluster p50 $p50  p99 $p99"
