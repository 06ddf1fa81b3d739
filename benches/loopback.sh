#!/usr/bin/env bash
# Loopback HTTP comparison: the same axum server with and without the full middleware stack,
# loaded by wrk on 127.0.0.1 only, in alternating pairs. Prints each run and the ratio
# full / bare of mean requests per second.
#
#   bash benches/loopback.sh [pairs] [seconds] [mode]   (defaults: 5 pairs of 8 s runs, mode full)
#
# mode is `full` (auth + scope + rate limit) or `auth` (auth + scope).
#
# Needs wrk (Debian: apt-get install wrk); installs it when run as root with apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${1:-5}
seconds=${2:-8}
mode=${3:-full}
(( seconds <= 10 )) || { echo "runs are at most 10 s"; exit 2; }

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

run() { # mode -> requests/s
  local out key pid rps
  out=$(mktemp)
  ADDR=127.0.0.1:$port "$server" $([ "$1" = bare ] && echo --bare) $([ "$1" = auth ] && echo --auth) >"$out" &
  pid=$!
  for _ in $(seq 50); do grep -q LISTENING "$out" && break; sleep 0.1; done
  key=$(sed -n 's/^KEY=//p' "$out")
  rps=$(wrk -t1 -c32 -d"${seconds}s" -H "Authorization: Bearer $key" "http://127.0.0.1:$port/v1/sessions" \
        | awk '/Requests\/sec/ {print $2}')
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -f "$out"
  echo "$rps"
}

results=""
for i in $(seq "$pairs"); do
  b=$(run bare); f=$(run "$mode")
  echo "pair $i: bare $b req/s, $mode $f req/s"
  results="$results $b $f"
done
echo "$results" | awk '{ for (i = 1; i <= NF; i += 2) { bare += $i; full += $(i + 1) } }
  END { printf "mean bare %.0f req/s, mean '"$mode"' %.0f req/s, '"$mode"'/bare = %.3f\n", bare / (NF / 2), full / (NF / 2), full / bare }'
