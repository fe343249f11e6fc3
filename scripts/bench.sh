#!/usr/bin/env bash
# bench.sh - measure one rumor node against redis-server on this machine, in the same run.
#
# Prints a markdown report on stdout (progress goes to stderr) and writes it to $OUT.
# The script builds nothing: build rumor first with `make build`.
#
# Environment:
#   RUMOR        path to the rumor binary                  (default ./bin/rumor)
#   N            requests per redis-benchmark test         (default 200000)
#   C            redis-benchmark parallel clients          (default 50)
#   P            requests each client pipelines (-P)       (default 1, as the issue's command)
#   ROUNDS       rounds, each on both servers started afresh, redis and rumor
#                taking turns test by test; the report shows the round with
#                the median ratio (default 3)
#   KEYS         distinct keys loaded for the memory test  (default 1000000)
#   CACHE        rumor --cache-size                        (default 64MB)
#   PROCS        rumor --procs (GOMAXPROCS): how many threads run the node's
#                Go code; 0 = Go's default, one per CPU (default 1: like
#                single-threaded redis-server, the node leaves the other CPU
#                of a 2-CPU machine to redis-benchmark; see README, "Performance")
#   ONLY         durable | fast: run just that pairing     (default: both)
#   SKIP_MEMORY  1 = skip the memory test
#   SAMPLE       random keys verified after the load       (default 100)
#   OUT          report file                               (default bench-results.md)
#   KEEP_TMP     1 = keep the temp dir (data, logs, raw CSV) for inspection
#   BENCH_TIMEOUT / LOAD_TIMEOUT  seconds before a stuck benchmark / load is aborted (default 900)
#
# Examples:
#   scripts/bench.sh
#   N=20000 KEYS=100000 ROUNDS=1 scripts/bench.sh
#   ONLY=fast SKIP_MEMORY=1 RUMOR=/path/to/rumor scripts/bench.sh
set -euo pipefail
# shellcheck source=scripts/benchlib.sh
. "$(dirname "$0")/benchlib.sh"

RUMOR=${RUMOR:-./bin/rumor}
N=${N:-200000}
C=${C:-50}
P=${P:-1}
ROUNDS=${ROUNDS:-3}
KEYS=${KEYS:-1000000}
CACHE=${CACHE:-64MB}
PROCS=${PROCS:-1}
ONLY=${ONLY:-}
SKIP_MEMORY=${SKIP_MEMORY:-0}
SAMPLE=${SAMPLE:-100}
OUT=${OUT:-bench-results.md}
KEEP_TMP=${KEEP_TMP:-0}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-900}
LOAD_TIMEOUT=${LOAD_TIMEOUT:-900}

readonly KEYSPACE=100000     # redis-benchmark -r
readonly START_TIMEOUT=20    # seconds to wait for PONG
readonly STOP_TIMEOUT=30     # seconds to wait for exit after SIGTERM
readonly RATIO_GOAL=0.7      # rumor rps / redis rps
readonly P99_GOAL_MS=2       # rumor p99, strictly below
readonly MEM_GOAL_MB=256     # rumor VmRSS / VmHWM, strictly below
readonly VALUE_LEN=100
readonly TESTS=(SET GET INCR)

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  printf 'bench.sh: ERROR: %s\n' "$*" >&2
  exit 1
}

# ---------------------------------------------------------------- arguments

is_uint() { [[ $1 =~ ^[0-9]+$ && $1 -gt 0 ]]; }
is_uint "$N" || die "N must be a positive integer (got '$N')"
is_uint "$C" || die "C must be a positive integer (got '$C')"
is_uint "$P" || die "P must be a positive integer (got '$P')"
is_uint "$ROUNDS" || die "ROUNDS must be a positive integer (got '$ROUNDS')"
is_uint "$KEYS" || die "KEYS must be a positive integer (got '$KEYS')"
is_uint "$SAMPLE" || die "SAMPLE must be a positive integer (got '$SAMPLE')"
[[ $PROCS =~ ^[0-9]+$ ]] || die "PROCS must be 0 or a positive integer (got '$PROCS')"
case $ONLY in
  '' | all) PAIRINGS=(durable fast) ;;
  durable | fast) PAIRINGS=("$ONLY") ;;
  *) die "ONLY must be 'durable' or 'fast' (got '$ONLY')" ;;
esac

# ---------------------------------------------------------------- prerequisites

missing=()
for tool in redis-server redis-benchmark redis-cli; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]} > 0)); then
  cat >&2 <<EOF
bench.sh: missing required tool(s): ${missing[*]}
Install them with:
    sudo apt-get install redis-server redis-tools
(redis-server provides redis-server; redis-tools provides redis-cli and redis-benchmark.)
EOF
  exit 1
fi
for tool in awk timeout; do
  command -v "$tool" >/dev/null 2>&1 || die "required tool '$tool' not found"
done
[[ -d /proc/self ]] || die "/proc is required (Linux only)"

if [[ ! -x $RUMOR ]]; then
  die "rumor binary not found or not executable at '$RUMOR'. Build it with 'make build' (run from the repo root) or set RUMOR=/path/to/rumor."
fi
RUMOR="$(cd "$(dirname "$RUMOR")" && pwd)/$(basename "$RUMOR")"

# ---------------------------------------------------------------- temp dir, process tracking, cleanup

TMP=""
PIDS=() # processes started by this script and not yet reaped

cleanup() {
  local rc=$? pid i
  trap - EXIT INT TERM
  if ((rc == 130 || rc == 143)); then log "interrupted; stopping the servers started by this run"; fi
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for ((i = 0; i < 50; i++)); do
      alive "$pid" || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ -n $TMP && -d $TMP ]]; then
    if [[ $KEEP_TMP == 1 ]]; then
      log "kept temp dir $TMP"
    else
      rm -rf "$TMP"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

TMP=$(mktemp -d "${TMPDIR:-/tmp}/rumor-bench.XXXXXX")
REPORT="$TMP/report.md"
CMDS="$TMP/commands.md"
RAW="$TMP/raw.md"
: >"$REPORT"
: >"$CMDS"
: >"$RAW"

rep() { printf '%s\n' "$@" >>"$REPORT"; }
# record the exact command line (shell-quoted) in the report
record_cmd() {
  local a line=""
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
      line+="$a "
    else
      line+="'${a//\'/\'\\\'\'}' "
    fi
  done
  printf '%s\n' "${line% }" >>"$CMDS"
}

# alive PID: true while the process exists and is not a zombie
alive() {
  local st
  st=$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null) || return 1
  [[ -n $st && $st != Z ]]
}

# ---------------------------------------------------------------- ports and servers

USED_PORTS=()
# free_port VAR: store an unused TCP port on 127.0.0.1 in VAR
free_port() {
  local p="" try
  for ((try = 0; try < 100; try++)); do
    if command -v python3 >/dev/null 2>&1; then
      p=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
    else
      p=$((20000 + RANDOM % 40000))
      # something answers -> in use
      if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then continue; fi
    fi
    if [[ " ${USED_PORTS[*]} " != *" $p "* ]]; then
      USED_PORTS+=("$p")
      printf -v "$1" '%s' "$p"
      return 0
    fi
  done
  die "could not find a free TCP port"
}

LAST_PID=""
# start_bg LOGFILE CMD...: start CMD in the background, output to LOGFILE; sets LAST_PID
start_bg() {
  local logf=$1
  shift
  record_cmd "$@"
  "$@" >"$logf" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}

show_log() {
  local logf=$1
  if [[ -s $logf ]]; then
    printf -- '--- last lines of %s ---\n' "$logf" >&2
    tail -n 20 "$logf" >&2
    printf -- '---\n' >&2
  fi
}

# wait_ready NAME PORT PID LOGFILE: poll PING until PONG (deadline START_TIMEOUT s)
wait_ready() {
  local name=$1 port=$2 pid=$3 logf=$4 reply deadline
  deadline=$((SECONDS + START_TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! alive "$pid"; then
      show_log "$logf"
      die "$name (pid $pid) exited during startup"
    fi
    reply=$(timeout 2 redis-cli -h 127.0.0.1 -p "$port" PING 2>/dev/null || true)
    if [[ $reply == PONG ]]; then
      log "$name is up on port $port (pid $pid)"
      return 0
    fi
    sleep 0.2
  done
  show_log "$logf"
  die "$name did not answer PING with PONG on 127.0.0.1:$port within ${START_TIMEOUT}s"
}

# untrack PID: forget a reaped process
untrack() {
  local i keep=()
  for i in "${PIDS[@]}"; do [[ $i == "$1" ]] || keep+=("$i"); done
  PIDS=("${keep[@]}")
}

# run_tracked IN OUT ERR CMD...: run CMD to completion, tracked so that the trap can kill it.
# (A background job + wait lets INT/TERM interrupt the script at once instead of after CMD ends.)
run_tracked() {
  local in=$1 out=$2 err=$3 pid rc=0
  shift 3
  "$@" <"$in" >"$out" 2>"$err" &
  pid=$!
  PIDS+=("$pid")
  wait "$pid" || rc=$?
  untrack "$pid"
  return "$rc"
}

STOP_NOTE=""
# stop_server NAME PID: SIGTERM, wait up to STOP_TIMEOUT s, then SIGKILL; sets STOP_NOTE
stop_server() {
  local name=$1 pid=$2 rc=0 i
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    STOP_NOTE="did NOT exit within ${STOP_TIMEOUT}s of SIGTERM (killed)"
  else
    wait "$pid" 2>/dev/null || rc=$?
    if ((rc == 0)); then
      STOP_NOTE="clean (exit 0 on SIGTERM)"
    else
      STOP_NOTE="exit status $rc on SIGTERM"
    fi
  fi
  log "$name stopped: $STOP_NOTE"
  untrack "$pid"
}

# sanity NAME PORT: SET/GET/INCR must behave before we trust benchmark numbers
sanity() {
  local name=$1 port=$2 r
  local cli=(timeout 5 redis-cli -h 127.0.0.1 -p "$port")
  r=$("${cli[@]}" SET bench:sanity hello 2>&1 || true)
  [[ $r == OK ]] || die "$name: SET bench:sanity hello returned '$r' (want OK)"
  r=$("${cli[@]}" GET bench:sanity 2>&1 || true)
  [[ $r == hello ]] || die "$name: GET bench:sanity returned '$r' (want hello)"
  "${cli[@]}" DEL bench:ctr >/dev/null 2>&1 || true
  r=$("${cli[@]}" INCR bench:ctr 2>&1 || true)
  [[ $r == 1 ]] || die "$name: INCR on a fresh key returned '$r' (want 1)"
  r=$("${cli[@]}" INCR bench:ctr 2>&1 || true)
  [[ $r == 2 ]] || die "$name: second INCR returned '$r' (want 2)"
}

# ---------------------------------------------------------------- benchmark

declare -A RPS=() P99=() CPU=() BUSY=() INP99=() STOPPED=()

# cpu_ticks PID: the CPU time (user + system, in clock ticks) PID has used so far.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
CLK_TCK=$(getconf CLK_TCK)
readonly CLK_TCK

# bench_one PAIRING SERVER PORT PID HPORT TEST ROUND: one redis-benchmark run
# of TEST, so that the server's CPU time per request (from /proc/PID/stat,
# user + system) is measured for each: unlike requests per second, it barely
# moves when other work shares the machine, so it compares servers across
# noisy runs. Each run also records how busy the whole machine was (BUSY:
# all CPUs, in percent) and the server's own view of its latency (INP99:
# from the arrival of a request to its reply; rumor's histogram buckets,
# redis's latencystats, which times the command alone): a client p99 far
# above the server's, with the CPUs busy, is time spent waiting for a CPU.
# Results go under the key PAIRING,SERVER,TEST,ROUND.
bench_one() {
  local pairing=$1 server=$2 port=$3 pid=$4 hport=$5 t=$6 round=$7 csv T rps p99 c0 c1 m0 m1 k
  k="$pairing,$server,$t,$round"
  csv="$TMP/$pairing-$server-$t-$round.csv"
  local cmd=(redis-benchmark -h 127.0.0.1 -p "$port" -t "${t,,}" -n "$N" -c "$C" -P "$P" -r "$KEYSPACE" --csv)
  ((round == 1)) && record_cmd "${cmd[@]}"
  log "$pairing/$server round $round/$ROUNDS: ${cmd[*]}"
  if [[ $server == rumor ]]; then
    rumor_buckets "$hport" "${t,,}" >"$csv.b0" || true
  else
    timeout 5 redis-cli -h 127.0.0.1 -p "$port" CONFIG RESETSTAT >/dev/null 2>&1 || true
  fi
  m0=$(machine_ticks)
  c0=$(cpu_ticks "$pid")
  if ! run_tracked /dev/null "$csv" "$csv.err" timeout "$BENCH_TIMEOUT" "${cmd[@]}"; then
    cat "$csv" "$csv.err" >&2 || true
    die "$pairing/$server: redis-benchmark failed or timed out after ${BENCH_TIMEOUT}s"
  fi
  alive "$pid" || die "$pairing/$server: server died during the benchmark"
  c1=$(cpu_ticks "$pid")
  m1=$(machine_ticks)
  BUSY[$k]=$(busy_percent "$m0" "$m1")
  if [[ $server == rumor ]]; then
    rumor_buckets "$hport" "${t,,}" >"$csv.b1" || true
    INP99[$k]=$(bucket_p99 "$csv.b0" "$csv.b1")
  else
    INP99[$k]=$(redis_p99 "$port" "${t,,}")
  fi
  CPU[$k]=$(awk -v d="$((c1 - c0))" -v hz="$CLK_TCK" -v n="$N" 'BEGIN { printf "%.1f", d / hz / n * 1e6 }')
  {
    printf '%s/%s %s, round %d:\n\n```\n' "$pairing" "$server" "$t" "$round"
    cat "$csv"
    printf '```\n\n'
  } >>"$RAW"
  # Redis 7 --csv: header "test","rps",...,"p99_latency_ms",...; older versions: "TEST","rps" rows, no header.
  while read -r T rps p99; do
    [[ $T == "$t" ]] || continue
    RPS[$k]=$rps
    P99[$k]=$p99
  done < <(awk -F',' '
    { gsub(/"/, ""); gsub(/\r/, "") }
    tolower($1) == "test" {
      for (i = 1; i <= NF; i++) { if ($i == "rps") r = i; if ($i == "p99_latency_ms") p = i }
      next
    }
    NF >= 2 && $1 ~ /^[A-Za-z]/ {
      if (!r) r = 2
      split($1, name, " ")
      print toupper(name[1]), $r, (p ? $p : "n/a")
    }' "$csv")
  if [[ ! ${RPS[$k]:-} =~ ^[0-9]+(\.[0-9]+)?$ ]]; then
    cat "$csv" "$csv.err" >&2 || true
    die "$pairing/$server: could not parse the $t result from redis-benchmark --csv output"
  fi
  log "$pairing/$server round $round: $t ${RPS[$k]} rps, p99 ${P99[$k]} ms, CPU ${CPU[$k]} us/request"
}

declare -A ROUND_RATIOS=()

# pick_median PAIRING: for each test, the round whose rumor/redis ratio is
# the median of the rounds' (the lower middle one for an even count) gives
# the figures the report shows, all from that one round; ROUND_RATIOS keeps
# every round's ratio, in round order.
pick_median() {
  local pairing=$1 t r best s
  for t in "${TESTS[@]}"; do
    local list=""
    for ((r = 1; r <= ROUNDS; r++)); do
      list+="$r $(awk -v a="${RPS[$pairing,rumor,$t,$r]}" -v b="${RPS[$pairing,redis,$t,$r]}" 'BEGIN { printf "%.4f", (b > 0 ? a / b : 0) }')"$'\n'
    done
    best=$(printf '%s' "$list" | sort -k2,2g | awk -v n="$ROUNDS" 'NR == int((n + 1) / 2) { print $1 }')
    ROUND_RATIOS[$pairing,$t]=$(printf '%s' "$list" | awk '{ printf "%s%.2f", (NR > 1 ? " " : ""), $2 }')
    for s in redis rumor; do
      RPS[$pairing,$s,$t]=${RPS[$pairing,$s,$t,$best]}
      P99[$pairing,$s,$t]=${P99[$pairing,$s,$t,$best]}
      CPU[$pairing,$s,$t]=${CPU[$pairing,$s,$t,$best]}
      BUSY[$pairing,$s,$t]=${BUSY[$pairing,$s,$t,$best]}
      INP99[$pairing,$s,$t]=${INP99[$pairing,$s,$t,$best]}
    done
  done
}

# run_pairing NAME RUMOR_SYNC REDIS_APPENDFSYNC: ROUNDS rounds, each on both
# servers started afresh (empty data, as the issue's command finds them:
# rumor's SETs over keys it already holds cost more than the first ones,
# so later rounds on the same data would measure something else), with
# each test run on one and then the other, the order swapped every round:
# what else loads the machine then weighs on both alike.
run_pairing() {
  local pairing=$1 sync=$2 fsync=$3 rport rpid uport hport upid rdir udir round t
  printf '\n### %s\n\n' "$pairing" >>"$CMDS"
  printf '```\n' >>"$CMDS"
  for ((round = 1; round <= ROUNDS; round++)); do
    free_port rport
    rdir="$TMP/$pairing-redis-$round"
    mkdir -p "$rdir"
    start_bg "$rdir.log" redis-server --port "$rport" --bind 127.0.0.1 --appendonly yes --appendfsync "$fsync" --save "" --dir "$rdir"
    rpid=$LAST_PID
    wait_ready "redis ($pairing)" "$rport" "$rpid" "$rdir.log"
    sanity "redis ($pairing)" "$rport"

    free_port uport
    free_port hport
    udir="$TMP/$pairing-rumor-$round"
    mkdir -p "$udir"
    start_bg "$udir.log" "$RUMOR" node --name bench --data-dir "$udir" --client-addr "127.0.0.1:$uport" \
      --http-addr "127.0.0.1:$hport" --sync="$sync" --cache-size "$CACHE" --procs "$PROCS"
    upid=$LAST_PID
    wait_ready "rumor ($pairing)" "$uport" "$upid" "$udir.log"
    sanity "rumor ($pairing)" "$uport"

    for t in "${TESTS[@]}"; do
      if ((round % 2 == 1)); then
        bench_one "$pairing" redis "$rport" "$rpid" "" "$t" "$round"
        bench_one "$pairing" rumor "$uport" "$upid" "$hport" "$t" "$round"
      else
        bench_one "$pairing" rumor "$uport" "$upid" "$hport" "$t" "$round"
        bench_one "$pairing" redis "$rport" "$rpid" "" "$t" "$round"
      fi
    done

    stop_server "redis ($pairing)" "$rpid"
    [[ ${STOPPED[$pairing,redis]:-} == *clean* || $round == 1 ]] && STOPPED[$pairing,redis]=$STOP_NOTE
    stop_server "rumor ($pairing)" "$upid"
    [[ ${STOPPED[$pairing,rumor]:-} == *clean* || $round == 1 ]] && STOPPED[$pairing,rumor]=$STOP_NOTE
    [[ $KEEP_TMP == 1 ]] || rm -rf "$rdir" "$udir" # a round's data is not needed after it
  done
  pick_median "$pairing"
  printf '```\n' >>"$CMDS"
}

GOALS_MET=0
GOALS_TOTAL=0

# pairing_table PAIRING TITLE
pairing_table() {
  local pairing=$1 title=$2 t rr ur rp up ratio ok
  rep "## $title" ""
  rep "$ROUNDS rounds, each on both servers started afresh, the servers taking turns test by test; the figures are the round with the median rumor/redis ratio, and the last column lists every round's ratio." ""
  rep "| op | redis rps | rumor rps | rumor/redis | redis p99 (ms) | rumor p99 (ms) | goal (ratio >= $RATIO_GOAL, rumor p99 < $P99_GOAL_MS ms) | redis CPU µs/req | rumor CPU µs/req | rumor/redis, each round |"
  rep "|---|---:|---:|---:|---:|---:|---|---:|---:|---|"
  for t in "${TESTS[@]}"; do
    rr=${RPS[$pairing,redis,$t]}
    ur=${RPS[$pairing,rumor,$t]}
    rp=${P99[$pairing,redis,$t]}
    up=${P99[$pairing,rumor,$t]}
    ratio=$(awk -v a="$ur" -v b="$rr" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
    ok=$(awk -v r="$ratio" -v p="$up" -v rg="$RATIO_GOAL" -v pg="$P99_GOAL_MS" \
      'BEGIN { print ((r != "n/a" && p != "n/a" && r + 0 >= rg && p + 0 < pg) ? "met" : "**missed**") }')
    GOALS_TOTAL=$((GOALS_TOTAL + 1))
    [[ $ok == met ]] && GOALS_MET=$((GOALS_MET + 1))
    rep "| $t | $(fmt_rps "$rr") | $(fmt_rps "$ur") | $ratio | $rp | $up | $ok | ${CPU[$pairing,redis,$t]} | ${CPU[$pairing,rumor,$t]} | ${ROUND_RATIOS[$pairing,$t]} |"
  done
  rep ""
  rep "Where the client's p99 comes from: how busy the machine's $(nproc) CPUs were during each test, and each server's own p99" \
    "(rumor: arrival of a request to its reply, as the histogram bucket that holds it; redis: the command's execution alone, INFO latencystats)." ""
  rep "| op | CPUs busy, redis run (%) | CPUs busy, rumor run (%) | redis in-server p99 (ms) | rumor in-server p99 (ms) |"
  rep "|---|---:|---:|---:|---:|"
  for t in "${TESTS[@]}"; do
    rep "| $t | ${BUSY[$pairing,redis,$t]} | ${BUSY[$pairing,rumor,$t]} | ${INP99[$pairing,redis,$t]} | ${INP99[$pairing,rumor,$t]} |"
  done
  rep ""
  rep "The CPU the goal leaves: at $RATIO_GOAL x redis's rate, the $(nproc) CPUs have (CPUs / goal rate) of CPU per request for" \
    "everything, the client included; the rumor run used (CPUs busy x CPUs / rumor rate), the client included." ""
  rep "| op | goal rate (req/s) | CPU per request at the goal (µs) | CPU per request used, rumor run (µs) | used / available |"
  rep "|---|---:|---:|---:|---:|"
  for t in "${TESTS[@]}"; do
    rep "$(awk -v t="$t" -v rr="${RPS[$pairing,redis,$t]}" -v ur="${RPS[$pairing,rumor,$t]}" -v busy="${BUSY[$pairing,rumor,$t]}" \
      -v g="$RATIO_GOAL" -v n="$(nproc)" 'BEGIN {
        if (rr <= 0 || ur <= 0 || busy == "" || busy == "n/a") { printf "| %s | n/a | n/a | n/a | n/a |", t; exit }
        goal = g * rr; avail = n * 1e6 / goal; used = busy / 100 * n * 1e6 / ur
        printf "| %s | %.0f | %.1f | %.1f | %.2f |", t, goal, avail, used, used / avail }')"
  done
  rep ""
}

fmt_rps() { awk -v x="$1" 'BEGIN { printf "%.0f", x }'; }

# ---------------------------------------------------------------- memory

KEY_WIDTH=${#KEYS}
((KEY_WIDTH < 7)) && KEY_WIDTH=7
FILLER=$(printf 'abcdefghij%.0s' {1..10})

key_name() { printf 'key:%0*d' "$KEY_WIDTH" "$1"; }
expected_value() {
  local p
  printf -v p 'val:%0*d:' "$KEY_WIDTH" "$1"
  printf '%s' "$p${FILLER:0:$((VALUE_LEN - ${#p}))}"
}

# RESP SET commands for key:0000001..key:$KEYS, each with a 100-byte value derived from the index.
# Written to a file once so that the load measures the server, not the generator.
LOAD_FILE=""
gen_load() {
  awk -v n="$KEYS" -v w="$KEY_WIDTH" -v filler="$FILLER" -v vlen="$VALUE_LEN" 'BEGIN {
    kf = "key:%0" w "d"; vf = "val:%0" w "d:"
    for (i = 1; i <= n; i++) {
      k = sprintf(kf, i); p = sprintf(vf, i)
      v = p substr(filler, 1, vlen - length(p))
      printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, length(v), v
    }
  }'
}

declare -A MEM=()

# mem_one SERVER PORT PID DATADIR
mem_one() {
  local server=$1 port=$2 pid=$3 dir=$4 out t0 t1 last want got deadline idx bad=0 checked=0 rss hwm
  out="$TMP/mem-$server.pipe"
  if [[ -z $LOAD_FILE ]]; then
    LOAD_FILE="$TMP/load.resp"
    log "memory: generating $KEYS RESP SET commands into $LOAD_FILE"
    if ! run_tracked /dev/null "$LOAD_FILE" "$LOAD_FILE.err" gen_load; then
      cat "$LOAD_FILE.err" >&2 || true
      die "memory: generating the load file failed"
    fi
  fi
  log "memory/$server: loading $KEYS keys with ${VALUE_LEN}-byte values via redis-cli --pipe"
  printf '%s\n' "# $server load: $(basename "$LOAD_FILE") = RESP 'SET key:%0${KEY_WIDTH}d <${VALUE_LEN}-byte value>' for 1..$KEYS (awk generator)" >>"$CMDS"
  record_cmd redis-cli -h 127.0.0.1 -p "$port" --pipe
  sed -i '$ s/$/ < '"$(basename "$LOAD_FILE")"'/' "$CMDS"
  t0=$(date +%s.%N)
  if ! run_tracked "$LOAD_FILE" "$out.stdout" "$out.stderr" timeout "$LOAD_TIMEOUT" redis-cli -h 127.0.0.1 -p "$port" --pipe; then
    cat "$out.stdout" "$out.stderr" >&2 || true
    die "memory/$server: redis-cli --pipe load failed or timed out"
  fi
  t1=$(date +%s.%N)
  cat "$out.stdout" "$out.stderr" >"$out"
  log "memory/$server: load done in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')s: $(grep -m1 'errors:' "$out" || echo 'no summary from redis-cli')"
  if ! grep -Eq "errors: 0, replies: $KEYS\$" "$out"; then
    cat "$out" >&2
    die "memory/$server: load reported errors or a wrong reply count (want 'errors: 0, replies: $KEYS')"
  fi

  # wait until the last key is readable
  last=$(key_name "$KEYS")
  want=$(expected_value "$KEYS")
  deadline=$((SECONDS + 60))
  while :; do
    got=$(timeout 5 redis-cli -h 127.0.0.1 -p "$port" GET "$last" 2>/dev/null || true)
    [[ $got == "$want" ]] && break
    ((SECONDS < deadline)) || die "memory/$server: GET $last did not return the loaded value within 60s (got '${got:0:120}')"
    sleep 0.2
  done

  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
  hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")
  [[ -n $rss && -n $hwm ]] || die "memory/$server: could not read VmRSS/VmHWM from /proc/$pid/status"

  # verify a random sample plus the first and last key
  while read -r idx; do
    want=$(expected_value "$idx")
    got=$(timeout 5 redis-cli -h 127.0.0.1 -p "$port" GET "$(key_name "$idx")" 2>&1 || true)
    checked=$((checked + 1))
    if [[ $got != "$want" || ${#got} -ne $VALUE_LEN ]]; then
      bad=$((bad + 1))
      printf 'memory/%s: GET %s returned %q (want %s)\n' "$server" "$(key_name "$idx")" "${got:0:120}" "$want" >&2
    fi
  done < <(awk -v n="$KEYS" -v s="$SAMPLE" -v seed="$RANDOM" 'BEGIN {
      srand(seed); print 1; print n
      for (i = 0; i < s; i++) print int(rand() * n) + 1
    }')
  ((bad == 0)) || die "memory/$server: $bad of $checked sampled keys did not return their ${VALUE_LEN}-byte value"
  alive "$pid" || die "memory/$server: server died during the memory test"

  MEM[$server,rss]=$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')
  MEM[$server,hwm]=$(awk -v k="$hwm" 'BEGIN { printf "%.1f", k / 1024 }')
  MEM[$server,load_s]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  MEM[$server,load_rate]=$(awk -v a="$t0" -v b="$t1" -v n="$KEYS" 'BEGIN { d = b - a; printf "%.0f", (d > 0 ? n / d : 0) }')
  MEM[$server,checked]=$checked
  MEM[$server,disk]=$(du -sk "$dir" | awk '{ printf "%.1f", $1 / 1024 }')
  log "memory/$server: VmRSS ${MEM[$server,rss]} MB, VmHWM ${MEM[$server,hwm]} MB, $checked keys verified"
}

run_memory() {
  local port hport dir pid
  printf '\n### memory\n\n```\n' >>"$CMDS"

  free_port port
  dir="$TMP/mem-redis"
  mkdir -p "$dir"
  start_bg "$dir.log" redis-server --port "$port" --bind 127.0.0.1 --appendonly yes --appendfsync everysec --save "" --dir "$dir"
  pid=$LAST_PID
  wait_ready "redis (memory)" "$port" "$pid" "$dir.log"
  mem_one redis "$port" "$pid" "$dir"
  stop_server "redis (memory)" "$pid"
  STOPPED[memory,redis]=$STOP_NOTE

  free_port port
  free_port hport
  dir="$TMP/mem-rumor"
  mkdir -p "$dir"
  start_bg "$dir.log" "$RUMOR" node --name bench --data-dir "$dir" --client-addr "127.0.0.1:$port" \
    --http-addr "127.0.0.1:$hport" --sync=false --cache-size "$CACHE" --procs "$PROCS"
  pid=$LAST_PID
  wait_ready "rumor (memory)" "$port" "$pid" "$dir.log"
  mem_one rumor "$port" "$pid" "$dir"
  stop_server "rumor (memory)" "$pid"
  STOPPED[memory,rumor]=$STOP_NOTE

  printf '```\n' >>"$CMDS"
}

memory_table() {
  local s goal rss_ok hwm_ok
  rep "## memory ($KEYS keys x ${VALUE_LEN}-byte values, rumor --sync=false --cache-size $CACHE)" ""
  rep "Raw payload: $(awk -v n="$KEYS" -v w="$KEY_WIDTH" -v v="$VALUE_LEN" 'BEGIN { printf "%.1f", n * (4 + w + v) / 1048576 }') MB of keys+values. VmRSS/VmHWM read from /proc/PID/status after the load, once a GET of the last key succeeded." ""
  rep "| server | VmRSS (MB) | VmHWM (MB) | data dir on disk (MB) | load time (s) | load rate (keys/s) | keys verified | goal (rumor < $MEM_GOAL_MB MB) |"
  rep "|---|---:|---:|---:|---:|---:|---:|---|"
  for s in redis rumor; do
    goal="-"
    if [[ $s == rumor ]]; then
      rss_ok=$(awk -v x="${MEM[$s,rss]}" -v g="$MEM_GOAL_MB" 'BEGIN { print (x + 0 < g ? "met" : "**missed**") }')
      hwm_ok=$(awk -v x="${MEM[$s,hwm]}" -v g="$MEM_GOAL_MB" 'BEGIN { print (x + 0 < g ? "met" : "**missed**") }')
      goal="RSS $rss_ok, HWM $hwm_ok"
      GOALS_TOTAL=$((GOALS_TOTAL + 1))
      [[ $rss_ok == met && $hwm_ok == met ]] && GOALS_MET=$((GOALS_MET + 1))
    fi
    rep "| $s | ${MEM[$s,rss]} | ${MEM[$s,hwm]} | ${MEM[$s,disk]} | ${MEM[$s,load_s]} | ${MEM[$s,load_rate]} | ${MEM[$s,checked]}/${MEM[$s,checked]} | $goal |"
  done
  rep ""
}

# ---------------------------------------------------------------- run

START_DATE=$(date)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
FS_TYPE=$(stat -f -c %T "$TMP" 2>/dev/null || echo unknown)
log "rumor: $RUMOR; temp dir: $TMP ($FS_TYPE)"

for p in "${PAIRINGS[@]}"; do
  case $p in
    durable) run_pairing durable true always ;;
    fast) run_pairing fast false everysec ;;
  esac
done
if [[ $SKIP_MEMORY != 1 ]]; then
  run_memory
fi

END_DATE=$(date)
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report

rep "# rumor vs redis-server benchmark" ""
rep "- date: $START_DATE (finished $END_DATE)"
rep "- host: $(uname -srm), nproc=$(nproc), cpu: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), RAM $(awk '/^MemTotal:/ {printf "%.1f GB", $2 / 1048576}' /proc/meminfo)"
rep "- redis: $(redis-server --version)"
rep "- redis-benchmark: $(redis-benchmark --version 2>/dev/null || echo unknown)"
rep "- rumor: $RUMOR"
rep "- data dirs: $TMP (filesystem: $FS_TYPE)"
rep "- load average (1/5/15 min): $LOAD_START at start, $LOAD_END at end"
rep "- parameters: N=$N requests per test, C=$C clients, P=$P pipelined, -r $KEYSPACE random keys, CACHE=$CACHE, PROCS=$PROCS, KEYS=$KEYS, pairings: ${PAIRINGS[*]}, memory: $([[ $SKIP_MEMORY == 1 ]] && echo skipped || echo yes)"
rep ""
rep "> **Note:** this machine is shared and noisy (other builds/tests may be running; $(nproc) CPUs shared by client and server)."
rep "> Both servers ran in the same run with the same parameters, taking turns test by test ($ROUNDS rounds, fresh servers each), so compare the"
rep "> ratios rather than the absolute numbers, and look at every round's ratio before drawing conclusions from small differences."
if awk -v a="${LOAD_START%% *}" -v b="${LOAD_END%% *}" -v n="$(nproc)" 'BEGIN { exit !(a + 0 > n || b + 0 > n) }'; then
  rep "> **Warning:** the 1-minute load average exceeded nproc ($(nproc)) during this run; other work competed for the CPUs and these numbers are unreliable."
fi
if [[ $FS_TYPE == tmpfs ]]; then
  rep "> **Warning:** the data dirs are on tmpfs, where fsync is free; the durable numbers do not reflect a real disk. Set TMPDIR to a disk-backed directory."
fi
rep ""

for p in "${PAIRINGS[@]}"; do
  case $p in
    durable) pairing_table durable "durable: rumor --sync=true --procs=$PROCS vs redis appendonly yes, appendfsync always" ;;
    fast) pairing_table fast "fast: rumor --sync=false --procs=$PROCS vs redis appendonly yes, appendfsync everysec" ;;
  esac
done
if [[ $SKIP_MEMORY != 1 ]]; then
  memory_table
fi

rep "## shutdown on SIGTERM" ""
for k in "${!STOPPED[@]}"; do
  printf '%s\n' "- ${k/,//}: ${STOPPED[$k]}"
done | sort >>"$REPORT"
rep ""

rep "## summary" ""
rep "Goals met: $GOALS_MET of $GOALS_TOTAL (throughput ratio >= $RATIO_GOAL with rumor p99 < $P99_GOAL_MS ms per operation; rumor memory < $MEM_GOAL_MB MB)." ""

rep "## exact commands" ""
rep "Each server was started, waited for with \`redis-cli -p PORT PING\`, sanity-checked (SET/GET/INCR), benchmarked, then stopped with SIGTERM; $ROUNDS rounds, each on both servers started afresh, the servers taking turns test by test (the commands below, once per round)."
cat "$CMDS" >>"$REPORT"
rep ""
if [[ -s $RAW ]]; then
  rep "## raw redis-benchmark --csv output" ""
  cat "$RAW" >>"$REPORT"
fi

cp "$REPORT" "$OUT"
cat "$REPORT"
log "report written to $OUT"
