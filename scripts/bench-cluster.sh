#!/usr/bin/env bash
# bench-cluster.sh - a 3-node rumor cluster (N=3, R=2, W=2) against one
# redis-server with matching durability, measured in the same run with
#   redis-benchmark -t set,get,incr -n $N -c $C -P $P -r 100000
# against one node of the cluster, one test at a time. Prints a markdown
# report (also written to $OUT) with each server's CPU time per request,
# whether the replicas hold the same copies right after the SET test, and
# each node's resident memory after the run.
#
# Environment: RUMOR (./bin/rumor), N (200000), C (50), P (1), OUT
# (bench-cluster-results.md), ONLY=durable|fast, NODE_ARGS (more flags for
# every node, space-separated, e.g. --sync-window=300us), ROUNDS (3 rounds,
# each on redis and a cluster started afresh, taking turns test by test, the
# order swapped every round; the report shows the round with the median
# ratio, and every round's ratio). Needs redis-server and
# redis-benchmark (make bench-deps) and a built binary (make build).
set -euo pipefail
# shellcheck source=scripts/benchlib.sh
. "$(dirname "$0")/benchlib.sh"

RUMOR=${RUMOR:-./bin/rumor}
N=${N:-200000}
C=${C:-50}
P=${P:-1} # requests each client pipelines (redis-benchmark -P)
OUT=${OUT:-bench-cluster-results.md}
ONLY=${ONLY:-}
ROUNDS=${ROUNDS:-3}
case $ROUNDS in '' | *[!0-9]* | 0) echo "bench-cluster.sh: ROUNDS must be a positive integer (got '$ROUNDS')" >&2; exit 1 ;; esac

for tool in redis-server redis-benchmark redis-cli python3; do
  command -v "$tool" >/dev/null || { echo "bench-cluster.sh: $tool is missing (make bench-deps)" >&2; exit 1; }
done
[ -x "$RUMOR" ] || { echo "bench-cluster.sh: no $RUMOR (make build)" >&2; exit 1; }
RUMOR=$(cd "$(dirname "$RUMOR")" && pwd)/$(basename "$RUMOR")

TMP=$(mktemp -d)
REDIS_PID=""
cleanup() {
  [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null || true
  [ -f "$TMP/cluster/cluster.json" ] && "$RUMOR" cluster down --dir "$TMP/cluster" >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT # the EXIT trap cleans up; a signal must also stop the script
trap 'exit 143' TERM

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
CLK_TCK=$(getconf CLK_TCK)

# bench TEST PORT PID... -> a CSV row of redis-benchmark for TEST (set, get
# or incr), with four more columns: the CPU time (user + system) the PIDs
# used per request in microseconds, in all (9) and each (10, "a/b/c"); how
# busy the machine's CPUs were, in percent (11); and the server's own p99
# in ms (12: with HPORT set, rumor's histogram bucket for arrival to reply
# on the node benchmarked, else redis's INFO latencystats). CPU per request
# barely moves when other work shares the machine, unlike rps.
bench() {
  local t=$1 port=$2 p row m0 b0 inp99
  shift 2
  {
    local before=() each=() total=0 i=0
    if [ -n "${HPORT:-}" ]; then
      rumor_buckets "$HPORT" "$t" >"$TMP/buckets0"
    else
      redis-cli -p "$port" CONFIG RESETSTAT >/dev/null
    fi
    m0=$(machine_ticks)
    for p in "$@"; do before+=("$(cpu_ticks "$p")"); done
    row=$(redis-benchmark -h 127.0.0.1 -p "$port" -t "$t" -n "$N" -c "$C" -P "$P" -r 100000 --csv 2>/dev/null | tr -d '"' | grep -i "^$t,")
    for p in "$@"; do
      local us
      us=$(awk -v d="$(($(cpu_ticks "$p") - before[i]))" -v hz="$CLK_TCK" -v n="$N" 'BEGIN { printf "%.1f", d / hz / n * 1e6 }')
      each+=("$us")
      total=$(awk -v a="$total" -v b="$us" 'BEGIN { printf "%.1f", a + b }')
      i=$((i + 1))
    done
    b0=$(busy_percent "$m0" "$(machine_ticks)")
    if [ -n "${HPORT:-}" ]; then
      rumor_buckets "$HPORT" "$t" >"$TMP/buckets1"
      inp99=$(bucket_p99 "$TMP/buckets0" "$TMP/buckets1")
    else
      inp99=$(redis_p99 "$port" "$t")
    fi
    echo "$row,$total,$(IFS=/; echo "${each[*]}"),$b0,$inp99"
  }
}

# agree PORT... -> "A of S": of S keys sampled from redis-benchmark's
# keyspace, how many every node holds the same copy of (VGET key R 1 reads
# a node's own copy). Run right after the SET test, before the GET test's
# read repair could hide a replica that missed writes: with every node up,
# every copy of every write must have arrived.
agree() {
  python3 - "$@" <<'PY'
import random, socket, sys

def conn(port):
    s = socket.create_connection(("127.0.0.1", int(port)))
    return s, s.makefile("rb")

def reply(f):
    line = f.readline()
    kind, rest = line[:1], line[1:-2]
    if kind == b"*":
        return [reply(f) for _ in range(int(rest))]
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b"-":
        raise SystemExit("error reply: " + rest.decode())
    return rest

nodes = [conn(p) for p in sys.argv[1:]]
rng = random.Random(7)
sample = 200
same = 0
for _ in range(sample):
    key = b"key:%012d" % rng.randrange(100000)
    cmd = b"*4\r\n$4\r\nVGET\r\n$%d\r\n%s\r\n$1\r\nR\r\n$1\r\n1\r\n" % (len(key), key)
    copies = []
    for s, f in nodes:
        s.sendall(cmd)
        copies.append(reply(f))
    same += all(c == copies[0] for c in copies)
print(f"{same} of {sample}")
PY
}

goal_of() { # TEST: the issue's goal, as a share of redis's rate
  case $1 in SET) echo 0.5 ;; GET) echo 0.6 ;; INCR) echo 0.4 ;; esac
}

field() { # CSV TEST COLUMN(2=rps,7=p99,9=CPU us/request in all,10=each,11=CPUs busy %,12=in-server p99)
  echo "$1" | awk -F, -v t="$2" -v c="$3" '$1==t {print $c}'
}

report() {
  echo "$@" | tee -a "$OUT"
}

: > "$OUT"
report "# rumor 3-node cluster vs redis-server"
report ""
report "- $(date -u), $(nproc) cores, $(redis-server --version | cut -d' ' -f1-3), load average $(cut -d' ' -f1-3 /proc/loadavg)"
report "- cluster: 3 nodes, N=3 R=2 W=2, benchmark against n1: redis-benchmark -t set,get,incr -n $N -c $C -P $P -r 100000"
report "- node flags besides --sync: ${NODE_ARGS:-none}"
report "- the machine is shared and noisy: compare the ratios, measured in one run with the servers taking turns ($ROUNDS rounds)"

for pairing in durable fast; do
  [ -n "$ONLY" ] && [ "$ONLY" != "$pairing" ] && continue
  if [ "$pairing" = durable ]; then fsync=always; nodearg=--sync=true; else fsync=everysec; nodearg=--sync=false; fi
  # Each round on redis and a cluster started afresh (empty data, as the
  # issue's command finds them), taking turns test by test, the order
  # swapped every round: what else loads the machine weighs on both alike.
  for round in $(seq "$ROUNDS"); do
    rport=$(free_tcp_port)
    rm -rf "$TMP/redis-$pairing"
    mkdir -p "$TMP/redis-$pairing"
    redis-server --port "$rport" --bind 127.0.0.1 --appendonly yes --appendfsync "$fsync" --save '' --dir "$TMP/redis-$pairing" >/dev/null &
    REDIS_PID=$!
    wait_pong "$rport"

    base=$(free_base)
    rm -rf "$TMP/cluster"
    extra=()
    for a in ${NODE_ARGS:-}; do extra+=("--node-arg=$a"); done
    "$RUMOR" cluster up --nodes 3 --dir "$TMP/cluster" --base-port "$base" --node-arg="$nodearg" "${extra[@]}" >/dev/null
    hport=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["nodes"][0]["http_addr"].rsplit(":", 1)[1])' "$TMP/cluster/cluster.json")
    pids=$(python3 -c 'import json,sys; print(" ".join(str(n["pid"]) for n in json.load(open(sys.argv[1]))["nodes"]))' "$TMP/cluster/cluster.json")
    : >"$TMP/redis-$round.csv"
    : >"$TMP/rumor-$round.csv"
    for t in set get incr; do
      for server in redis rumor; do
        [ $((round % 2)) = 0 ] && server=$([ "$server" = redis ] && echo rumor || echo redis)
        echo "bench-cluster.sh: $pairing round $round/$ROUNDS: $t against $server" >&2
        if [ "$server" = redis ]; then
          HPORT="" bench "$t" "$rport" "$REDIS_PID" >>"$TMP/redis-$round.csv"
        else
          # shellcheck disable=SC2086 # the PIDs, one word each
          HPORT=$hport bench "$t" "$base" $pids >>"$TMP/rumor-$round.csv"
          if [ "$t" = set ] && [ "$round" = 1 ]; then
            agree "$base" $((base + 1)) $((base + 2)) >"$TMP/agree-$pairing"
          fi
        fi
      done
    done
    mem=$(python3 - "$TMP/cluster/cluster.json" <<'PY'
import json, sys
rows = []
for n in json.load(open(sys.argv[1]))["nodes"]:
    st = dict(l.split(":", 1) for l in open(f"/proc/{n['pid']}/status") if ":" in l)
    rows.append(f"{n['name']} {int(st['VmRSS'].split()[0])//1024} MB (peak {int(st['VmHWM'].split()[0])//1024} MB)")
print(", ".join(rows))
PY
)
    "$RUMOR" cluster down --dir "$TMP/cluster" >/dev/null
    kill "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null || true; REDIS_PID=""
  done

  # For each test, the round with the median rumor/redis ratio gives every
  # figure shown (the lower middle one for an even count of rounds).
  redis_csv="" rumor_csv=""
  declare -A each_round=()
  for t in SET GET INCR; do
    pick=$(for round in $(seq "$ROUNDS"); do
      echo "$round $(field "$(cat "$TMP/rumor-$round.csv")" "$t" 2) $(field "$(cat "$TMP/redis-$round.csv")" "$t" 2)"
    done | python3 -c '
import sys
rows = [l.split() for l in sys.stdin if l.strip()]
ratios = [(float(u) / float(r), int(n)) for n, u, r in rows]
print(sorted(ratios)[(len(ratios) - 1) // 2][1], " ".join(f"{x:.2f}" for x, _ in sorted(ratios, key=lambda p: p[1])))')
    best=${pick%% *}
    each_round[$t]=${pick#* }
    redis_csv+=$(grep -i "^$t," "$TMP/redis-$best.csv")$'\n'
    rumor_csv+=$(grep -i "^$t," "$TMP/rumor-$best.csv")$'\n'
  done

  report ""
  report "## $pairing: rumor cluster $nodearg vs redis appendfsync $fsync"
  report ""
  report "$ROUNDS rounds, each on redis and a cluster started afresh, taking turns test by test; the figures are the round with the median rumor/redis ratio, and the last column lists every round's ratio. Memory: the last round's."
  report ""
  report "| op | redis rps | rumor rps | rumor/redis | goal | redis p99 ms | rumor p99 ms (goal < 3) | redis CPU µs/req | rumor CPU µs/req, all nodes (n1/n2/n3) | rumor/redis, each round |"
  report "|---|---:|---:|---:|---|---:|---:|---:|---:|---|"
  for t in SET GET INCR; do
    goal=$(goal_of "$t")
    rr=$(field "$redis_csv" "$t" 2); ur=$(field "$rumor_csv" "$t" 2)
    rp=$(field "$redis_csv" "$t" 7); up=$(field "$rumor_csv" "$t" 7)
    ratio=$(python3 -c "print(f'{float($ur)/float($rr):.2f}')")
    met=$(python3 -c "print('met' if float($ur)/float($rr) >= $goal and float($up) < 3 else 'missed')")
    report "| $t | $rr | $ur | $ratio | >= $goal: $met | $rp | $up | $(field "$redis_csv" "$t" 9) | $(field "$rumor_csv" "$t" 9) ($(field "$rumor_csv" "$t" 10)) | ${each_round[$t]} |"
  done
  report ""
  report "How busy the $(nproc) CPUs were during each test, and each server's own p99 (n1's, from a request's arrival to its reply, as the histogram bucket that holds it; redis's command execution, INFO latencystats):"
  report ""
  report "| op | CPUs busy, redis run (%) | CPUs busy, cluster run (%) | redis in-server p99 (ms) | n1 in-server p99 (ms) |"
  report "|---|---:|---:|---:|---:|"
  for t in SET GET INCR; do
    report "| $t | $(field "$redis_csv" "$t" 11) | $(field "$rumor_csv" "$t" 11) | $(field "$redis_csv" "$t" 12) | $(field "$rumor_csv" "$t" 12) |"
  done
  report ""
  report "The CPU the goal leaves: at the goal's share of redis's rate, the $(nproc) CPUs have (CPUs / goal rate) of CPU per request for everything, the client included; the cluster run used (CPUs busy x CPUs / rumor rate), the client included:"
  report ""
  report "| op | goal rate (req/s) | CPU per request at the goal (µs) | CPU per request used, cluster run (µs) | used / available |"
  report "|---|---:|---:|---:|---:|"
  for t in SET GET INCR; do
    goal=$(goal_of "$t")
    report "$(python3 -c "
rr, ur, busy, g, n = float('$(field "$redis_csv" "$t" 2)'), float('$(field "$rumor_csv" "$t" 2)'), '$(field "$rumor_csv" "$t" 11)', $goal, $(nproc)
try:
    rate = g * rr; avail = n * 1e6 / rate; used = float(busy) / 100 * n * 1e6 / ur
    print(f'| $t | {rate:.0f} | {avail:.1f} | {used:.1f} | {used / avail:.2f} |')
except (ValueError, ZeroDivisionError):
    print('| $t | n/a | n/a | n/a | n/a |')
")"
  done
  report ""
  report "Replicas holding the same copy right after the SET test (keys sampled, VGET key R 1 on each node): $(cat "$TMP/agree-$pairing" 2>/dev/null || echo 'not measured')"
  report ""
  report "Resident memory of each node after the last round: $mem"
done
