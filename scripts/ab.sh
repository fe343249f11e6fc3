#!/usr/bin/env bash
# ab.sh - compare two rumor builds on one node or a 3-node cluster, in
# alternating rounds.
#
# The machine is shared and noisy: requests per second move by 10-20%
# between runs minutes apart. Comparing two builds in one run, taking turns
# round by round on a fresh node each time, and looking at CPU time per
# request (which moves less), is how a change's effect shows through that.
#
# Environment:
#   BASE    git revision to compare with, built from a clean export of it
#           (default HEAD~1); or OLD, a rumor binary (then BASE is unused)
#   NEW     the build under test (default ./bin/rumor: run `make build` first)
#   ROUNDS  rounds, each running both builds afresh, in turns (default 4)
#   SYNC    the node's --sync: true or false (default false)
#   TESTS   redis-benchmark tests, in order: set, get, incr (default "set get incr")
#   N C R   redis-benchmark -n, -c and -r (default 200000, 50, 100000)
#   NODES   1: one node (default); 3: a 3-node cluster (rumor cluster up,
#           N=3 R=2 W=2), the benchmark against n1 and the CPU summed over
#           the three nodes, as make bench-cluster
#   PROCS   the node's --procs (default 1, as make bench; with NODES=3,
#           default 0: cluster up's share of the CPUs for each node)
#   OLD_ARGS, NEW_ARGS
#           more node flags for each side, split on spaces (default none):
#           with OLD=NEW=./bin/rumor this compares two settings of one build,
#           e.g. OLD=./bin/rumor NEW_ARGS='--memtable-size 4MB'
#   OLD_ENV, NEW_ENV
#           environment for each side's nodes, NAME=VALUE split on spaces
#           (default none), e.g. OLD=./bin/rumor OLD_ENV='GODEBUG=schedtrace=0'
#
# Prints a line per round and build (requests/s, p99 ms and the node's CPU
# µs per request, per test; the mean WAL fsync with SYNC=true), then the
# median of each over the rounds and NEW/OLD.
set -euo pipefail
# shellcheck source=scripts/benchlib.sh
source "$(dirname "$0")/benchlib.sh" # http_get, free_base, free_tcp_port

BASE=${BASE:-HEAD~1}
OLD=${OLD:-}
NEW=${NEW:-./bin/rumor}
ROUNDS=${ROUNDS:-4}
SYNC=${SYNC:-false}
TESTS=${TESTS:-set get incr}
N=${N:-200000}
C=${C:-50}
R=${R:-100000}
NODES=${NODES:-1}
if [[ $NODES == 3 ]]; then PROCS=${PROCS:-0}; else PROCS=${PROCS:-1}; fi
OLD_ARGS=${OLD_ARGS:-}
NEW_ARGS=${NEW_ARGS:-}
OLD_ENV=${OLD_ENV:-}
NEW_ENV=${NEW_ENV:-}

die() {
  printf 'ab.sh: %s\n' "$*" >&2
  exit 1
}
is_uint() { [[ $1 =~ ^[0-9]+$ && $1 -gt 0 ]]; }
is_uint "$ROUNDS" || die "ROUNDS must be a positive integer (got '$ROUNDS')"
is_uint "$N" || die "N must be a positive integer (got '$N')"
is_uint "$C" || die "C must be a positive integer (got '$C')"
is_uint "$R" || die "R must be a positive integer (got '$R')"
[[ $NODES == 1 || $NODES == 3 ]] || die "NODES must be 1 or 3 (got '$NODES')"
[[ $PROCS =~ ^[0-9]+$ ]] || die "PROCS must be 0 or a positive integer (got '$PROCS')"
[[ $SYNC == true || $SYNC == false ]] || die "SYNC must be true or false (got '$SYNC')"
read -r -a tests <<<"$TESTS"
((${#tests[@]} > 0)) || die "TESTS is empty"
for t in "${tests[@]}"; do
  [[ $t == set || $t == get || $t == incr ]] || die "TESTS may hold set, get and incr (got '$t')"
done
for tool in redis-benchmark redis-cli awk python3 git go; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is needed (make bench-deps)"
done
[[ -x $NEW ]] || die "NEW build '$NEW' not found: run make build"

TMP=$(mktemp -d)
NODE_PID=""
CLUSTER_BIN=""
cleanup() {
  if [[ -n $NODE_PID ]]; then
    kill "$NODE_PID" 2>/dev/null || true
    wait "$NODE_PID" 2>/dev/null || true
  fi
  if [[ -n $CLUSTER_BIN ]]; then
    "$CLUSTER_BIN" cluster down --dir "$TMP/cluster" >/dev/null 2>&1 || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -z $OLD ]]; then
  rev=$(git rev-parse --verify --quiet "$BASE^{commit}") || die "BASE '$BASE' is not a git revision"
  printf 'building %s (%s) ...\n' "$BASE" "${rev:0:12}" >&2
  mkdir "$TMP/src"
  git archive "$rev" | tar -x -C "$TMP/src"
  (cd "$TMP/src" && go build -o "$TMP/rumor-old" ./cmd/rumor) || die "could not build $BASE"
  OLD=$TMP/rumor-old
  oldname="$BASE"
else
  [[ -x $OLD ]] || die "OLD build '$OLD' not found"
  oldname=$OLD
fi

tck=$(getconf CLK_TCK)
# cpu_of PID...: the clock ticks (user + system) the processes have used.
cpu_of() {
  local p s=0
  for p in "$@"; do s=$((s + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done
  echo "$s"
}

# run_node BIN LABEL ARGS ENV: one round on a fresh node (or cluster)
# started with the extra flags ARGS and the environment ENV; appends
# "label test rps p99 cpu" lines to $TMP/results
run_node() {
  local bin=$1 label=$2 port hport dir line t c0 c1 csv rps p99 cpu fsync a
  local -a extra pids envs
  read -r -a extra <<<"$3"
  read -r -a envs <<<"$4"
  for a in "${envs[@]}"; do
    [[ $a == [A-Za-z_]*=* ]] || die "OLD_ENV and NEW_ENV hold NAME=VALUE words (got '$a')"
  done
  if [[ $NODES == 3 ]]; then
    local -a nodeargs=("--node-arg=--sync=$SYNC")
    for a in "${extra[@]}"; do nodeargs+=("--node-arg=$a"); done
    port=$(free_base)
    [[ -n $port ]] || die "no free ports for a cluster"
    hport=$((port + 100))
    CLUSTER_BIN=$bin
    env "${envs[@]}" "$bin" cluster up --nodes 3 --dir "$TMP/cluster" --base-port "$port" --procs "$PROCS" "${nodeargs[@]}" >"$TMP/node.log" 2>&1 ||
      die "the $label cluster did not start: $(tail -3 "$TMP/node.log")"
    read -r -a pids <<<"$(python3 -c 'import json,sys; print(" ".join(str(n["pid"]) for n in json.load(open(sys.argv[1]))["nodes"]))' "$TMP/cluster/cluster.json")"
  else
    port=$(free_tcp_port)
    hport=$(free_tcp_port)
    dir="$TMP/data-$label"
    rm -rf "$dir"
    env "${envs[@]}" "$bin" node --name ab --data-dir "$dir" --client-addr "127.0.0.1:$port" --http-addr "127.0.0.1:$hport" \
      --sync="$SYNC" --procs "$PROCS" "${extra[@]}" >"$TMP/node.log" 2>&1 &
    NODE_PID=$!
    pids=("$NODE_PID")
  fi
  for ((i = 0; i < 100; i++)); do
    [[ $(redis-cli -p "$port" PING 2>/dev/null) == PONG ]] && break
    for a in "${pids[@]}"; do
      kill -0 "$a" 2>/dev/null || die "the $label node exited: $(tail -3 "$TMP/node.log")"
    done
    sleep 0.1
  done
  line="$label"
  for t in "${tests[@]}"; do
    c0=$(cpu_of "${pids[@]}")
    csv=$(redis-benchmark -p "$port" -t "$t" -n "$N" -c "$C" -r "$R" --csv | tail -1 | tr -d '"')
    c1=$(cpu_of "${pids[@]}")
    rps=$(cut -d, -f2 <<<"$csv")
    p99=$(cut -d, -f7 <<<"$csv")
    cpu=$(awk -v a="$c0" -v b="$c1" -v t="$tck" -v n="$N" 'BEGIN { printf "%.1f", (b - a) / t * 1e6 / n }')
    printf '%s %s %s %s %s\n' "$label" "$t" "$rps" "$p99" "$cpu" >>"$TMP/results"
    line+=$(printf ' | %s %.0f/s p99 %s ms cpu %s µs' "${t^^}" "$rps" "$p99" "$cpu")
  done
  if [[ $SYNC == true ]]; then
    fsync=$(http_get "$hport" /metrics | awk '/^rumor_store_wal_fsync_seconds_sum/ { s = $2 } /^rumor_store_wal_fsync_seconds_count/ { c = $2 } END { if (c > 0) printf "%.0f", s / c * 1e6 }')
    line+=" | mean WAL fsync ${fsync:-?} µs"
  fi
  if [[ $NODES == 3 ]]; then
    "$bin" cluster down --dir "$TMP/cluster" >/dev/null 2>&1 || true
    CLUSTER_BIN=""
    rm -rf "$TMP/cluster"
  else
    kill "$NODE_PID"
    wait "$NODE_PID" 2>/dev/null || true
    NODE_PID=""
  fi
  printf '%s\n' "$line"
}

printf 'old: %s %s %s\nnew: %s %s %s\nnodes=%s sync=%s procs=%s: redis-benchmark -t <test> -n %s -c %s -r %s, %s rounds\n\n' \
  "$oldname" "$OLD_ENV" "$OLD_ARGS" "$NEW" "$NEW_ENV" "$NEW_ARGS" "$NODES" "$SYNC" "$PROCS" "$N" "$C" "$R" "$ROUNDS"
for ((round = 1; round <= ROUNDS; round++)); do
  # Who goes first alternates, so that neither always runs on a warmer or a busier machine.
  if ((round % 2)); then order=(old new); else order=(new old); fi
  for who in "${order[@]}"; do
    if [[ $who == old ]]; then bin=$OLD args=$OLD_ARGS envs=$OLD_ENV; else bin=$NEW args=$NEW_ARGS envs=$NEW_ENV; fi
    printf 'round %d ' "$round"
    run_node "$bin" "$who" "$args" "$envs"
  done
done

printf '\nmedians over %d rounds (new/old):\n' "$ROUNDS"
for t in "${tests[@]}"; do
  awk -v t="$t" '
    function median(a, n,   i, j, x) {
      for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    $2 == t { k = $1; n[k]++; rps[k, n[k]] = $3; p99[k, n[k]] = $4; cpu[k, n[k]] = $5 }
    END {
      for (s = 1; s <= 3; s++) {
        split("", o); split("", w)
        for (i = 1; i <= n["old"]; i++) o[i] = (s == 1 ? rps["old", i] : s == 2 ? p99["old", i] : cpu["old", i])
        for (i = 1; i <= n["new"]; i++) w[i] = (s == 1 ? rps["new", i] : s == 2 ? p99["new", i] : cpu["new", i])
        mo[s] = median(o, n["old"]); mw[s] = median(w, n["new"])
      }
      printf "%-5s requests/s %.0f -> %.0f (%.2fx) | p99 %.3f -> %.3f ms | CPU %.1f -> %.1f µs/request (%.2fx)\n",
        toupper(t), mo[1], mw[1], mw[1] / mo[1], mo[2], mw[2], mo[3], mw[3], mw[3] / mo[3]
    }' "$TMP/results"
done
