#!/usr/bin/env bash
# Seeded chaos runs: `npm run test:chaos -- --seed S --duration 120` (one run) or `--seeds 20` (that many
# consecutive seeds from --seed, in a row, stopping at the first that fails). Each run injects the faults of a
# schedule drawn from its seed while gen publishes through three workers, and ends with verify clean; it prints
# the schedule as a timeline and the verify counts. The same seed replays the same schedule. Stops and starts
# the local RabbitMQ and MariaDB, so it needs root, like the fault suite. Results are appended to
# .txsim/chaos/results.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
TXSIM_SCRIPT=chaos
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

seed=1 duration=120 seeds=1
while (($#)); do
  case $1 in
    --seed) seed=${2:?--seed needs a number}; shift 2 ;;
    --duration) duration=${2:?--duration needs seconds}; shift 2 ;;
    --seeds) seeds=${2:?--seeds needs a count}; shift 2 ;;
    -h | --help)
      sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *) txsim_die 2 "unknown argument '$1' (usage: npm run test:chaos -- [--seed S] [--duration seconds] [--seeds N])" ;;
  esac
done
[[ $seed =~ ^[0-9]+$ && $duration =~ ^[0-9]+$ && $seeds =~ ^[0-9]+$ ]] || txsim_die 2 "--seed, --duration and --seeds take whole numbers"
((duration >= 20 && duration <= 3600)) || txsim_die 2 "--duration must be 20..3600 seconds"

if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then npm ci --no-audit --no-fund; fi
npm run --silent build
bash scripts/services.sh
mkdir -p .txsim/chaos
for ((s = seed; s < seed + seeds; s++)); do
  txsim_say "seed $s, ${duration} s"
  if CHAOS_SEED=$s CHAOS_DURATION_S=$duration npx vitest run --project chaos 2>&1 | tee ".txsim/chaos/seed-$s.log"; then
    printf '%s seed %s duration %ss: passed\n' "$(date -u +%FT%TZ)" "$s" "$duration" >>.txsim/chaos/results.txt
  else
    printf '%s seed %s duration %ss: FAILED (log: .txsim/chaos/seed-%s.log)\n' "$(date -u +%FT%TZ)" "$s" "$duration" "$s" >>.txsim/chaos/results.txt
    txsim_die 4 "seed $s failed: replay it with npm run test:chaos -- --seed $s --duration $duration"
  fi
done
