#!/usr/bin/env bash
# Runs every test (unit, then integration against real RabbitMQ and MariaDB/MySQL) on a fresh clone:
# installs dependencies, builds, type-checks and lints, makes the services reachable, then runs vitest.
# Extra arguments go to vitest, e.g. `npm test -- test/unit`; without any, the unit and integration
# tiers run (the fault suite, which stops and starts the services, is `npm run test:faults`).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "test: installing dependencies (npm ci)"
  npm ci --no-audit --no-fund
fi
npm run --silent build
npm run --silent typecheck   # tests too: vitest itself only strips types
npm run --silent lint        # ESLint (type-checked rules, zero warnings) and Prettier's check
bash scripts/services.sh
bash scripts/browser.sh    # Chromium for the browser tier (Debian's package, as root)
if (($# == 0)); then
  set -- --project unit --project integration --project browser
fi
npx vitest run "$@"
