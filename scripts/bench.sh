#!/usr/bin/env bash
# The standard benchmark matrix. Each run is `txsim bench --json` into .txsim/bench/<name>.json; then
# scripts/bench-report.mjs writes BENCHMARKS.md (table, machine, how to reproduce, what bounds it).
# Run it on an otherwise idle machine: the broker, the database and the workers share its cores.
#   bash scripts/bench.sh            # the full matrix, ~45 minutes
#   BENCH_QUICK=1 bash scripts/bench.sh   # smaller counts, no soak, no repeats (a smoke run, ~3 minutes)
#   BENCH_POOL_MB=2048 bash scripts/bench.sh   # adds a soak with MariaDB's buffer pool at 2048 MiB:
#       the script sets the server's innodb_buffer_pool_size (SET GLOBAL, needs the privilege) for
#       that run only and sets it back afterwards, even when interrupted.
# The two headline runs (batched-3w, paced-2000; the latter beside paced-2000-linger20) are repeated three times: on a shared 2-core box
# consecutive runs of the same bench differ by up to ~15 %, and one run would hide that.
# Every run has the relay on (bench's default, as in a deployment) and the v1 mix (--mix v1: bench's
# default is the full mix) unless it says otherwise; each flat-out headline run also measures the machine's ceiling (--ceiling: the same
# messages and rows with no txsim logic), so its efficiency sits beside it; the full mix (transfers
# and card holds) is reported beside the headline, with its own ceiling.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then npm ci --no-audit --no-fund; fi
npm run --silent build
bash scripts/services.sh

OUT=".txsim/bench"
rm -rf "$OUT" .txsim/profiles
mkdir -p "$OUT"
QUICK="${BENCH_QUICK:-}"
N=$([[ -n "$QUICK" ]] && echo 20000 || echo 100000)
N1=$([[ -n "$QUICK" ]] && echo 2000 || echo 10000)

run() { # name, then bench flags
  local name="$1"; shift
  echo "== bench $name: $*"
  node dist/cli.js bench --json --seed "bench-$name" --mix v1 "$@" >"$OUT/$name.json"
  node -e 'const r=require(process.argv[1]); console.log(`   ${r.endToEndRatePerS} tx/s end to end${r.ceiling ? ` (ceiling ${r.ceiling} tx/s, efficiency ${(r.efficiency * 100).toFixed(1)} %)` : ""}, p99 created→committed ${r.endToEndLatencyMs.p99} ms, CPU ${r.cpuUsPerAppliedTx?.total ?? "?"} µs/tx, verify ${r.verifyOk ? "OK" : "FAILED"}`)' "$PWD/$OUT/$name.json"
}

REPEATS=$([[ -n "$QUICK" ]] && echo 1 || echo 3)
run per-message-3w    --workers 3 --batch-size 1 --transactions 1 --prefetch 50 --count "$N1" --accounts 10000
run batched-1w        --workers 1 --count "$N" --accounts 10000
run batched-2w        --workers 2 --count "$N" --accounts 10000
for i in $(seq 1 "$REPEATS"); do
  run "batched-3w$([[ $i -gt 1 ]] && echo "-r$i")" --workers 3 --count "$N" --accounts 10000 --ceiling
done
run batched-3w-full-mix --workers 3 --count "$N" --accounts 10000 --mix full --ceiling
run batched-3w-100acc --workers 3 --count "$N" --accounts 100
run batched-3w-hot    --workers 3 --count "$N" --accounts 10000 --hot-accounts 0.5
# 60 s, not 30: the first ~3 s (JIT, pools filling) have p99s of 60–150 ms, a tenth of a 30 s run, which is
# enough to make them its p99; at 60 s the run's p99 is the steady state's.
# Each paced run beside one whose gen sends in 20 ms groups (gen --linger 20), alternated: what a coarser
# publishing pattern saves every program on the path, and what it costs in latency (counted from the due time).
for i in $(seq 1 "$REPEATS"); do
  run "paced-2000$([[ $i -gt 1 ]] && echo "-r$i")" --workers 3 --rate 2000 --duration "$([[ -n "$QUICK" ]] && echo 10 || echo 60)" --accounts 10000
  # The same seed as the run it is paired with (the later --seed wins): the same stream, sent in groups.
  run "paced-2000-linger20$([[ $i -gt 1 ]] && echo "-r$i")" --workers 3 --rate 2000 --duration "$([[ -n "$QUICK" ]] && echo 10 || echo 60)" --accounts 10000 --linger 20 \
    --seed "bench-paced-2000$([[ $i -gt 1 ]] && echo "-r$i")"
done
run profiled-3w       --workers 3 --count "$N" --accounts 10000 --cpu-prof
if [[ -z "$QUICK" ]]; then
  run soak-5000-5min  --workers 3 --rate 5000 --duration 300 --accounts 10000
  if [[ -n "${BENCH_POOL_MB:-}" ]]; then
    # One SQL statement against the server txsim uses (DATABASE_URL), printing the first value.
    sql() { node -e 'const m=require("mysql2/promise");(async()=>{const c=await m.createConnection(process.env.DATABASE_URL||"mysql://root@127.0.0.1:3306");const [r]=await c.query(process.argv[1]);if(Array.isArray(r)&&r[0])console.log(Object.values(r[0])[0]);await c.end()})().catch(e=>{console.error(e.message);process.exit(1)})' "$1"; }
    # The soak again with a buffer pool that holds the working set (see BENCHMARKS.md, "The database as it grows").
    pool_before=$(sql 'SELECT @@innodb_buffer_pool_size')
    trap 'sql "SET GLOBAL innodb_buffer_pool_size = $pool_before" || echo "could not restore innodb_buffer_pool_size=$pool_before" >&2' EXIT
    sql "SET GLOBAL innodb_buffer_pool_size = $((BENCH_POOL_MB * 1048576))"
    sleep 5 # the resize runs in the background
    echo "   innodb_buffer_pool_size now $(sql 'SELECT @@innodb_buffer_pool_size DIV 1048576') MiB"
    run "soak-5000-5min-pool${BENCH_POOL_MB}m" --workers 3 --rate 5000 --duration 300 --accounts 10000
    sql "SET GLOBAL innodb_buffer_pool_size = $pool_before"
    trap - EXIT
  fi
fi
node scripts/bench-report.mjs "$OUT" .txsim/profiles > BENCHMARKS.md
echo "== wrote BENCHMARKS.md"
# Charts: every run of the matrix in one HTML file, and the headline chart as a PNG for BENCHMARKS.md.
node dist/cli.js bench report "$OUT"/*.json --html "$OUT/report.html"
# The PNG needs Chromium (scripts/browser.sh installs Debian's); without it the runs and BENCHMARKS.md still stand.
if bash scripts/browser.sh; then
  node scripts/bench-chart.mjs docs/bench-headline.png "$OUT"/*.json
  echo "== wrote $OUT/report.html and docs/bench-headline.png"
else
  echo "== wrote $OUT/report.html; docs/bench-headline.png NOT updated (no Chromium, see above)" >&2
fi
