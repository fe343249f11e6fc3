#!/usr/bin/env bash
# pgo.sh - regenerate cmd/rumor/default.pgo, the CPU profile that `go build`
# optimizes the binary with (profile-guided optimization: -pgo=auto, the
# default, picks default.pgo in the main package's directory).
#
# The profile is of the work the benchmarks measure: one node, and n1 (the
# coordinator) and n2 (a replica) of a 3-node cluster (N=3 R=2 W=2), each
# with and without --sync, under redis-benchmark SET, GET and INCR (-c 50
# -r 100000) in turns, profiled over the same seconds through the node's
# /debug/pprof/profile (--pprof). The profiles are merged into one.
# Regenerate it after a change that moves the hot paths (a stale profile
# still helps what it still matches, and never breaks the build).
#
# Environment: RUMOR (./bin/rumor, the build to profile: make build),
# PROFILE_SECONDS (20: each workload's profile), OUT
# (cmd/rumor/default.pgo). Needs redis-benchmark and redis-cli (make
# bench-deps), curl and python3.
set -euo pipefail
# shellcheck source=scripts/benchlib.sh
. "$(dirname "$0")/benchlib.sh" # free_base, free_tcp_port, wait_pong

RUMOR=${RUMOR:-./bin/rumor}
SECS=${PROFILE_SECONDS:-20}
OUT=${OUT:-cmd/rumor/default.pgo}
GO=${GO:-go}

die() {
  printf 'pgo.sh: %s\n' "$*" >&2
  exit 1
}
[[ $SECS =~ ^[0-9]+$ && $SECS -gt 0 ]] || die "PROFILE_SECONDS must be a positive integer (got '$SECS')"
for tool in redis-benchmark redis-cli curl python3; do
  command -v "$tool" >/dev/null || die "$tool is missing (redis-benchmark and redis-cli: make bench-deps)"
done
[[ -x $RUMOR ]] || die "no $RUMOR (make build)"

TMP=$(mktemp -d)
NODE_PID=""
CLUSTER=""
cleanup() {
  if [[ -n $NODE_PID ]]; then
    kill "$NODE_PID" 2>/dev/null || true
    wait "$NODE_PID" 2>/dev/null || true
  fi
  if [[ -n $CLUSTER ]]; then
    "$RUMOR" cluster down --dir "$CLUSTER" >/dev/null 2>&1 || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT # the EXIT trap cleans up; a signal must also stop the script (a profile half made must not replace default.pgo)
trap 'exit 143' TERM

# profile NAME PORT HPORT...: CPU profiles of the nodes serving HTTP on
# HPORT... ($TMP/NAME-HPORT.pprof) over SECS seconds, while redis-benchmark
# sends SET, GET and INCR in turns to the client port PORT.
profile() {
  local name=$1 port=$2 h
  shift 2
  local -a curls=()
  for h in "$@"; do
    curl -sf -o "$TMP/$name-$h.pprof" "http://127.0.0.1:$h/debug/pprof/profile?seconds=$SECS" &
    curls+=($!)
  done
  # Short runs, so that the load ends with the profiles.
  while kill -0 "${curls[0]}" 2>/dev/null; do
    for t in set get incr; do
      redis-benchmark -p "$port" -t "$t" -n 20000 -c 50 -r 100000 -q >/dev/null 2>&1 || die "redis-benchmark $t failed against port $port"
    done
  done
  for h in "${curls[@]}"; do
    wait "$h" || die "no profile from a node of $name"
  done
  echo "pgo.sh: profiled $name ($# node(s), ${SECS}s)"
}

for sync in false true; do
  port=$(free_tcp_port)
  hport=$(free_tcp_port)
  "$RUMOR" node --name pgo --data-dir "$TMP/node-$sync" --client-addr "127.0.0.1:$port" --http-addr "127.0.0.1:$hport" \
    --sync="$sync" --procs 1 --pprof >"$TMP/node.log" 2>&1 &
  NODE_PID=$!
  wait_pong "$port"
  profile "node-sync-$sync" "$port" "$hport"
  kill "$NODE_PID"
  wait "$NODE_PID" 2>/dev/null || true
  NODE_PID=""

  base=$(free_base)
  [[ -n $base ]] || die "no free ports for a cluster"
  CLUSTER="$TMP/cluster-$sync"
  "$RUMOR" cluster up --nodes 3 --dir "$CLUSTER" --base-port "$base" --node-arg=--sync="$sync" --node-arg=--pprof >"$TMP/cluster.log" 2>&1 ||
    die "the cluster did not start: $(tail -3 "$TMP/cluster.log")"
  profile "cluster-sync-$sync" "$base" $((base + 100)) $((base + 101))
  "$RUMOR" cluster down --dir "$CLUSTER" >/dev/null 2>&1 || true
  CLUSTER=""
done

"$GO" tool pprof -proto "$TMP"/*.pprof >"$TMP/merged.pgo" 2>"$TMP/pprof.log" || die "merging the profiles failed: $(tail -3 "$TMP/pprof.log")"
mv "$TMP/merged.pgo" "$OUT"
echo "pgo.sh: wrote $OUT ($(wc -c <"$OUT") bytes); rebuild (make build) to use it"
