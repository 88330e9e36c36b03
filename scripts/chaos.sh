#!/usr/bin/env bash
# Seeded chaos runs: `npm run test:chaos -- --seed S --duration 120` (one run, 20..600 s) or `--seeds 20` (that
# many consecutive seeds from --seed, in a row, stopping at the first that fails). Each run injects the faults of
# a schedule drawn from its seed while gen publishes through three workers, and ends with verify clean; it prints
# the schedule as a timeline and the verify counts. The same seed replays the same schedule. Stops and starts
# the local RabbitMQ and MariaDB, so it needs root and their tools, like the fault suite: without them it fails
# (exit 3), it never passes having run nothing. Results are appended to .txsim/chaos/results.txt. Exit codes:
# 0 every seed passed, 2 usage, 3 a prerequisite missing, 4 a seed failed.
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
      sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *) txsim_die 2 "unknown argument '$1' (usage: npm run test:chaos -- [--seed S] [--duration seconds] [--seeds N])" ;;
  esac
done
[[ $seed =~ ^[0-9]+$ && $duration =~ ^[0-9]+$ && $seeds =~ ^[0-9]+$ ]] || txsim_die 2 "--seed, --duration and --seeds take whole numbers"
((seeds >= 1)) || txsim_die 2 "--seeds must be at least 1"
# Capped so that one run stays bounded (the test's time budget grows with the duration: about 37 min at most,
# test/chaos/schedule.ts chaosBudget, whose MIN_DURATION_S and MAX_DURATION_S are these bounds); for more
# coverage run more seeds.
((duration >= 20 && duration <= 600)) || txsim_die 2 "--duration must be 20..600 seconds (runs are capped at 600 s; use --seeds for more)"
# Before installing or building anything: the run stops, kills and starts the services.
((EUID == 0)) || txsim_die 3 "a chaos run stops, kills and starts the local RabbitMQ and MariaDB, so it needs root (running as uid $EUID)"

if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then npm ci --no-audit --no-fund; fi
npm run --silent build
bash scripts/services.sh
# The services' admin tools live in sbin, which a non-login shell's PATH may lack (services.sh may just have installed them).
export PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin
missing=()
for tool in rabbitmqctl mariadb-admin rabbitmq-server mariadb start-stop-daemon pidof; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
((${#missing[@]} == 0)) || txsim_die 3 "a chaos run drives the local RabbitMQ and MariaDB with tools missing here: ${missing[*]}"

# Passed only when vitest succeeded AND its one test ran and passed (a skipped test also exits 0).
ran_and_passed() {
  node -e '
    const r = JSON.parse(require("node:fs").readFileSync(process.argv[1], "utf8"));
    process.exit(r.numTotalTests > 0 && r.numPassedTests === r.numTotalTests ? 0 : 1);' "$1" 2>/dev/null
}

mkdir -p .txsim/chaos
for ((s = seed; s < seed + seeds; s++)); do
  txsim_say "seed $s, ${duration} s"
  report=.txsim/chaos/seed-$s.json
  rm -f "$report"
  if CHAOS_SEED=$s CHAOS_DURATION_S=$duration npx vitest run --project chaos --reporter=default --reporter=json --outputFile.json="$report" 2>&1 |
    tee ".txsim/chaos/seed-$s.log"; then
    if ran_and_passed "$report"; then
      printf '%s seed %s duration %ss: passed\n' "$(date -u +%FT%TZ)" "$s" "$duration" >>.txsim/chaos/results.txt
      continue
    fi
    why="ran no test (skipped or not collected; see $report)"
  else
    why=failed
  fi
  printf '%s seed %s duration %ss: FAILED (log: .txsim/chaos/seed-%s.log)\n' "$(date -u +%FT%TZ)" "$s" "$duration" "$s" >>.txsim/chaos/results.txt
  txsim_die 4 "seed $s $why: replay it with npm run test:chaos -- --seed $s --duration $duration"
done
