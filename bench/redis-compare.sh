#!/usr/bin/env bash
# Compares stashnode with Debian's redis-server under redis-benchmark, on
# this machine, in one run, and prints throughput ratios.
#
#   bench/redis-compare.sh [requests] [rounds]
#
# KEYSPACE=N adds -r N (random keys out of N); unset, the command is the
# one the single-node targets are stated with, which reuses one key.
# STASH_ARGS adds flags to stashnode's command line (e.g. "--procs 1").
# Pipelined tests send 5 × requests, so that they last as long.
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

for p in $RPORT $SPORT; do
  if redis-cli -p $p PING >/dev/null 2>&1; then
    echo "port $p is already serving; stop that server first" >&2
    exit 1
  fi
done
go build -o "$work/stashnode" ./cmd/stashnode
redis-server --port $RPORT --bind 127.0.0.1 --dir "$work" --daemonize no --logfile "$work/redis.log" &
pids+=($!)
rpid=$!
# shellcheck disable=SC2086
"$work/stashnode" --port $SPORT --admin-port -1 --data-dir "$work/stash-data" --log-level warn ${STASH_ARGS:-} 2>"$work/stash.log" &
pids+=($!)
spid=$!
declare -A pid=([$RPORT]=$rpid [$SPORT]=$spid)
for p in $RPORT $SPORT; do
  for _ in $(seq 100); do redis-cli -p $p PING >/dev/null 2>&1 && break; sleep 0.1; done
done

# rps <port> <test> <extra args...>: requests per second of one test
rps() {
  local port=$1 test=$2; shift 2
  redis-benchmark -p "$port" -t "$test" -d 1024 -c 50 -n "$(requests "$@")" ${KEYSPACE:+-r "$KEYSPACE"} --csv "$@" 2>/dev/null |
    awk -F, 'NR>1 {gsub(/"/,"",$2); print $2; exit}'
}

# requests <extra args...>: how many requests a test sends
requests() { if (( $# )); then echo $((N * 5)); else echo "$N"; fi; }

# cputicks <pid>: user+system CPU ticks the process has used so far
cputicks() { awk '{print $14+$15}' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)

declare -A sum cpu
for round in $(seq "$ROUNDS"); do
  for mode in "" "-P 16"; do
    for t in set get; do
      # alternate which server goes first to spread the machine's noise
      if (( round % 2 )); then order="$RPORT $SPORT"; else order="$SPORT $RPORT"; fi
      for port in $order; do
        # shellcheck disable=SC2086
        c0=$(cputicks "${pid[$port]}")
        v=$(rps "$port" "$t" $mode)
        c1=$(cputicks "${pid[$port]}")
        key="$port|$t|$mode"
        sum[$key]=$(awk -v a="${sum[$key]:-0}" -v b="$v" 'BEGIN{print a+b}')
        cpu[$key]=$(( ${cpu[$key]:-0} + c1 - c0 ))
      done
    done
  done
done

# Throughput ratios swing with the machine's other load; CPU time per
# request (the server's user+system time over the requests it served) is
# steadier and shows where the servers differ.
printf '%-6s %-8s %11s %11s %6s %12s %12s\n' test pipeline redis_rps stash_rps ratio redis_us/req stash_us/req
for mode in "" "-P 16"; do
  # shellcheck disable=SC2086
  n=$(requests $mode)
  for t in set get; do
    r=$(awk -v s="${sum[$RPORT|$t|$mode]}" -v n="$ROUNDS" 'BEGIN{printf "%.0f", s/n}')
    s=$(awk -v s="${sum[$SPORT|$t|$mode]}" -v n="$ROUNDS" 'BEGIN{printf "%.0f", s/n}')
    rc=$(awk -v c="${cpu[$RPORT|$t|$mode]}" -v t="$TCK" -v n="$((n * ROUNDS))" 'BEGIN{printf "%.2f", c/t*1e6/n}')
    sc=$(awk -v c="${cpu[$SPORT|$t|$mode]}" -v t="$TCK" -v n="$((n * ROUNDS))" 'BEGIN{printf "%.2f", c/t*1e6/n}')
    printf '%-6s %-8s %11s %11s %6s %12s %12s\n' "$t" "${mode:-none}" "$r" "$s" "$(awk -v a="$s" -v b="$r" 'BEGIN{printf "%.2f", a/b}')" "$rc" "$sc"
  done
done
