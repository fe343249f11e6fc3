# benchlib.sh - measurements shared by bench.sh, bench-cluster.sh and ab.sh (sourced).
# shellcheck shell=bash

# machine_ticks: "busy total" clock ticks of all CPUs so far, from /proc/stat
# (busy excludes idle and iowait).
machine_ticks() { awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t; exit }' /proc/stat; }

# busy_percent BEFORE AFTER: how busy all CPUs were between two machine_ticks.
busy_percent() {
  awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " "); d = y[2] - x[2]; printf "%.0f\n", (d > 0 ? 100 * (y[1] - x[1]) / d : 0) }'
}

# http_get PORT PATH: the body of an HTTP GET on 127.0.0.1 (bash's /dev/tcp, so
# no curl is needed).
http_get() {
  local port=$1 path=$2
  (
    exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$path" >&3
    timeout 10 cat <&3
  ) 2>/dev/null | tr -d '\r' | awk 'body { print } /^$/ { body = 1 }'
}

# rumor_buckets HPORT CMD: rumor's cumulative latency buckets for the RESP
# command CMD, one "le count" pair a line, from its /metrics.
rumor_buckets() {
  http_get "$1" /metrics | awk -v c="$2" '
    index($0, "rumor_request_duration_seconds_bucket{") == 1 && index($0, "command=\"" c "\"") && index($0, "protocol=\"resp\"") {
      match($0, /le="[^"]*"/); le = substr($0, RSTART + 4, RLENGTH - 5); print le, $NF
    }'
}

# bucket_p99 BEFORE AFTER: the upper bound, in ms, of the latency bucket that
# holds the 99th percentile of the requests counted between two
# rumor_buckets snapshots ("<= X").
bucket_p99() {
  awk 'NR == FNR { before[$1] = $2; next }
    { le[n] = $1; c[n] = $2 - before[$1]; n++ }
    END {
      if (n == 0 || c[n - 1] <= 0) { print "n/a"; exit }
      for (i = 0; i < n; i++) if (c[i] >= 0.99 * c[n - 1]) break
      if (le[i] == "+Inf") print "> " le[i - 1] * 1000; else printf "<= %g\n", le[i] * 1000
    }' "$1" "$2"
}

# redis_p99 PORT CMD: redis's own 99th percentile, in ms, of CMD's execution
# since the last CONFIG RESETSTAT (INFO latencystats, redis 7 and later).
redis_p99() {
  timeout 5 redis-cli -h 127.0.0.1 -p "$1" INFO latencystats 2>/dev/null | tr -d '\r' |
    # latency_percentiles_usec_set:p50=1.0,p99=2.0,p99.9=4.0 splits into name:p50, p50, "p99", p99, ...
    awk -F'[=,]' -v c="latency_percentiles_usec_$2:p50" '$1 == c { printf "%.3f\n", $4 / 1000; found = 1 } END { if (!found) print "n/a" }'
}

# free_base: a base port P whose 3-node cluster ports (P.., P+100.., P+200..,
# P+300.., as rumor cluster up lays them out) are free now.
free_base() {
  python3 - <<'PY'
import random, socket
for _ in range(100):
    # below Linux's ephemeral ports (32768 and up), which client connections take
    base = random.randint(10000, 32000)
    ok = True
    for off in (0, 100, 200, 300):
        for i in range(3):
            kinds = (socket.SOCK_STREAM, socket.SOCK_DGRAM) if off == 200 else (socket.SOCK_STREAM,)
            for kind in kinds:  # gossip: UDP too
                s = socket.socket(socket.AF_INET, kind)
                try:
                    s.bind(("127.0.0.1", base + off + i))
                except OSError:
                    ok = False
                finally:
                    s.close()
    if ok:
        print(base)
        break
PY
}

# free_tcp_port: a TCP port on 127.0.0.1 that is free now.
free_tcp_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# wait_pong PORT: wait up to 20 s for a RESP server on 127.0.0.1:PORT to
# answer PING; exit the script if none does.
wait_pong() {
  for _ in $(seq 200); do
    [ "$(redis-cli -p "$1" PING 2>/dev/null)" = PONG ] && return 0
    sleep 0.1
  done
  echo "$(basename "$0"): nothing answers PING on port $1" >&2
  exit 1
}
