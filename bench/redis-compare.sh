#!/usr/bin/env bash
# Compares stashnode with Debian's redis-server under redis-benchmark, on
# this machine, in one run, and prints throughput ratios.
#
#   bench/redis-compare.sh [requests] [rounds]
#
# Needs redis-server and redis-benchmark (apt-get install redis-server
# redis-tools). Both servers listen on 127.0.0.1 only and are stopped at
# exit. stashnode runs with its defaults (fsync batch, data on disk).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
ROUNDS=${2:-3}
RPORT=16379
SPORT=16380
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

go build -o "$work/stashnode" ./cmd/stashnode
redis-server --port $RPORT --bind 127.0.0.1 --dir "$work" --daemonize no --logfile "$work/redis.log" &
pids+=($!)
"$work/stashnode" --port $SPORT --admin-port -1 --data-dir "$work/stash-data" --log-level warn 2>"$work/stash.log" &
pids+=($!)
for p in $RPORT $SPORT; do
  for _ in $(seq 100); do redis-cli -p $p PING >/dev/null 2>&1 && break; sleep 0.1; done
done

# rps <port> <test> <extra args...>: requests per second of one test
rps() {
  local port=$1 test=$2; shift 2
  redis-benchmark -p "$port" -t "$test" -d 1024 -c 50 -n "$N" -r 100000 --csv "$@" 2>/dev/null |
    awk -F, 'NR>1 {gsub(/"/,"",$2); print $2; exit}'
}

declare -A sum
for round in $(seq "$ROUNDS"); do
  for mode in "" "-P 16"; do
    for t in set get; do
      # alternate which server goes first to spread the machine's noise
      if (( round % 2 )); then order="$RPORT $SPORT"; else order="$SPORT $RPORT"; fi
      for port in $order; do
        # shellcheck disable=SC2086
        v=$(rps "$port" "$t" $mode)
        key="$port|$t|$mode"
        sum[$key]=$(awk -v a="${sum[$key]:-0}" -v b="$v" 'BEGIN{print a+b}')
      done
    done
  done
done

printf '%-8s %-10s %14s %14s %8s\n' test pipeline redis_rps stash_rps ratio
for mode in "" "-P 16"; do
  for t in set get; do
    r=$(awk -v s="${sum[$RPORT|$t|$mode]}" -v n="$ROUNDS" 'BEGIN{printf "%.0f", s/n}')
    s=$(awk -v s="${sum[$SPORT|$t|$mode]}" -v n="$ROUNDS" 'BEGIN{printf "%.0f", s/n}')
    printf '%-8s %-10s %14s %14s %8s\n' "$t" "${mode:-none}" "$r" "$s" "$(awk -v a="$s" -v b="$r" 'BEGIN{printf "%.2f", a/b}')"
  done
done
