#!/usr/bin/env bash
# Loopback HTTP comparison: the same axum server with and without the middleware, loaded by
# wrk on 127.0.0.1 only, in alternating pairs. Prints each run and the ratio with / without
# of mean requests per second.
#
#   bash benches/loopback.sh [pairs] [seconds] [mode]   (defaults: 6 pairs of 8 s runs, mode full)
#
# mode is `full` (auth + scope + rate limit) or `auth` (auth + scope).
#
# With two or more CPUs the server runs on CPU 0 with one Tokio worker and wrk on CPU 1, so
# the two never compete for a core and the server's core is the bottleneck.
#
# Needs wrk (Debian: apt-get install wrk); installs it when run as root with apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${1:-6}
seconds=${2:-8}
mode=${3:-full}
(( seconds <= 10 )) || { echo "runs are at most 10 s"; exit 2; }
case $mode in full|auth) ;; *) echo "mode is full or auth"; exit 2 ;; esac

if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq wrk >/dev/null
  else
    echo "wrk is missing: install it (apt-get install wrk)"; exit 2
  fi
fi

cargo build --release --example bench_server -q
server=target/release/examples/bench_server
port=18090
server_cpu=() load_cpu=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  server_cpu=(taskset -c 0) load_cpu=(taskset -c 1)
  export TOKIO_WORKER_THREADS=1
fi

run() { # mode -> requests/s
  local out key pid report
  out=$(mktemp)
  ADDR=127.0.0.1:$port "${server_cpu[@]}" "$server" "--$1" >"$out" &
  pid=$!
  for _ in $(seq 50); do grep -q LISTENING "$out" && break; sleep 0.1; done
  key=$(sed -n 's/^KEY=//p' "$out")
  report=$("${load_cpu[@]}" wrk -t1 -c32 -d"${seconds}s" -H "Authorization: Bearer $key" \
           "http://127.0.0.1:$port/v1/sessions")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -f "$out"
  if grep -q "Non-2xx" <<<"$report"; then echo "answers other than 200 in mode $1" >&2; exit 1; fi
  awk '/Requests\/sec/ { print $2 }' <<<"$report"
}

results=""
for i in $(seq "$pairs"); do
  b=$(run bare); f=$(run "$mode")
  echo "pair $i: bare $b req/s, $mode $f req/s"
  results="$results $b $f"
done
# The figure is the median of the pairs' ratios: a pair shares the machine's state of the
# moment, so its ratio moves less than either run.
echo "$results" | awk -v m="$mode" '{
    n = NF / 2
    for (i = 1; i <= NF; i += 2) { b += $i; f += $(i + 1); r[(i + 1) / 2] = $(i + 1) / $i }
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (r[j] < r[i]) { t = r[i]; r[i] = r[j]; r[j] = t }
    median = n % 2 ? r[(n + 1) / 2] : (r[n / 2] + r[n / 2 + 1]) / 2
    printf "mean bare %.0f req/s, mean %s %.0f req/s, %s/bare: mean %.3f, median of %d pairs %.3f\n",
      b / n, m, f / n, m, f / b, n, median
  }'
