#!/usr/bin/env bash
# The standard benchmark matrix. Each run is `txsim bench --json` into .txsim/bench/<name>.json; then
# scripts/bench-report.mjs writes BENCHMARKS.md (table, machine, how to reproduce, what bounds it).
# Run it on an otherwise idle machine: the broker, the database and the workers share its cores.
#   bash scripts/bench.sh            # the full matrix, ~15 minutes
#   BENCH_QUICK=1 bash scripts/bench.sh   # smaller counts, no soak (a smoke run, ~3 minutes)
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
  node dist/cli.js bench --json --seed "bench-$name" "$@" >"$OUT/$name.json"
  node -e 'const r=require(process.argv[1]); console.log(`   ${r.endToEndRatePerS} tx/s end to end, p99 created→committed ${r.endToEndLatencyMs.p99} ms, verify ${r.verifyOk ? "OK" : "FAILED"}`)' "$PWD/$OUT/$name.json"
}

run per-message-3w    --workers 3 --batch-size 1 --transactions 1 --prefetch 50 --count "$N1" --accounts 10000
run batched-1w        --workers 1 --count "$N" --accounts 10000
run batched-2w        --workers 2 --count "$N" --accounts 10000
run batched-3w        --workers 3 --count "$N" --accounts 10000
run batched-3w-100acc --workers 3 --count "$N" --accounts 100
run batched-3w-hot    --workers 3 --count "$N" --accounts 10000 --hot-accounts 0.5
run paced-2000        --workers 3 --rate 2000 --duration "$([[ -n "$QUICK" ]] && echo 10 || echo 30)" --accounts 10000
run profiled-3w       --workers 3 --count "$N" --accounts 10000 --cpu-prof
if [[ -z "$QUICK" ]]; then
  run soak-5000-5min  --workers 3 --rate 5000 --duration 300 --accounts 10000
fi
node scripts/bench-report.mjs "$OUT" .txsim/profiles > BENCHMARKS.md
echo "== wrote BENCHMARKS.md"
