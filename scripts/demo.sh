#!/usr/bin/env bash
# The demo, on a fresh machine: installs dependencies, makes RabbitMQ and the database reachable,
# sets up, seeds 100 accounts, starts 3 worker replicas and the accounting system, publishes a few
# thousand transactions with some poison, shows statement lines arriving, waits until everything is
# processed, prints the verify report (ledger and statements) and stops everything.
# Idempotent: run it again and it does a new run (new seed) on the same books.
# While it runs, `txsim serve` shows the live dashboard at http://127.0.0.1:$DEMO_PORT/ (admin token printed).
#   DEMO_COUNT=5000 DEMO_SEED=7 DEMO_PORT=8080 DEMO_RATE=500 npm run demo
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT="${DEMO_COUNT:-3000}"
PORT="${DEMO_PORT:-8080}"
# Paced, so the run lasts long enough to watch it on the dashboard (0 = as fast as the broker confirms).
RATE="${DEMO_RATE:-500}"
SEED="${DEMO_SEED:-demo-$(date +%s)}"
LOG_DIR=".txsim/demo"
TXSIM="node dist/cli.js"

if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "demo: installing dependencies (npm ci)"
  npm ci --no-audit --no-fund
fi
npm run --silent build
bash scripts/services.sh

echo "== txsim setup"
$TXSIM setup
echo "== txsim accounts seed --count 100"
$TXSIM accounts seed --count 100

mkdir -p "$LOG_DIR"
pids=()
stop_workers() {
  if ((${#pids[@]})); then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
    pids=()
  fi
}
trap stop_workers EXIT INT TERM

echo "== starting 3 workers (logs in $LOG_DIR/)"
for id in w1 w2 w3; do
  # The worker's heap cap (src/worker/node-options.ts), as the compose file and bench start workers.
  NODE_OPTIONS=--max-old-space-size=96 $TXSIM worker --id "$id" >"$LOG_DIR/$id.log" 2>&1 &
  pids+=("$!")
done
$TXSIM accounting >"$LOG_DIR/accounting.out" 2>"$LOG_DIR/accounting.log" &
pids+=("$!")
TOKEN="$($TXSIM tokens create --admin --ttl 1d --label demo)"
$TXSIM serve --port "$PORT" >"$LOG_DIR/serve.out" 2>"$LOG_DIR/serve.log" &
pids+=("$!")
for _ in $(seq 1 50); do grep -q 'listening on' "$LOG_DIR/serve.out" 2>/dev/null && break; sleep 0.2; done
if grep -q 'listening on' "$LOG_DIR/serve.out" 2>/dev/null; then
  echo "== dashboard: http://127.0.0.1:$PORT/  (admin token: $TOKEN)"
else
  echo "== txsim serve did not start (port $PORT taken? set DEMO_PORT); see $LOG_DIR/serve.log"
fi
sleep 1

API="http://127.0.0.1:$PORT"
# POST one transaction with curl and poll its status until it is final; prints the status each time it changes.
post_and_follow() {
  local body=$1 id status last='' answer
  answer=$(curl -sS -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d "$body" "$API/v1/transactions")
  id=$(printf '%s' "$answer" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{try{console.log(JSON.parse(s).id??"")}catch{console.log("")}})')
  if [[ -z $id ]]; then
    echo "   POST answered: $answer" >&2
    return 1
  fi
  # The POST's own answer: 202 once the broker confirmed it, status queued.
  echo "   $id: $(printf '%s' "$answer" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).status))') (the POST's answer)" >&2
  for _ in $(seq 1 100); do
    status=$(curl -sS -H "Authorization: Bearer $TOKEN" "$API/v1/transactions/$id" |
      node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const v=JSON.parse(s);console.log(v.status+(v.reason?" ("+v.reason+")":"")+(v.balanceAfterMinor?" balance after "+v.balanceAfterMinor:""))})')
    [[ $status != "$last" ]] && echo "   $id: $status" >&2
    last=$status
    [[ $status == applied* || $status == rejected* ]] && break
    sleep 0.1
  done
  printf '%s' "$id"
}
if grep -q 'listening on' "$LOG_DIR/serve.out" 2>/dev/null; then
  echo "== one deposit through the HTTP API, with curl, followed to its final state"
  echo "   curl -H 'Authorization: Bearer …' -d '{\"type\":\"deposit\",\"accountId\":1,\"amountMinor\":2500,\"currency\":\"EUR\"}' $API/v1/transactions"
  post_and_follow '{"type":"deposit","accountId":1,"amountMinor":2500,"currency":"EUR"}' >/dev/null || true
  echo "== a card flow: authorize 90.00 on account 2 (held, not yet posted), then capture 75.00 of it (final: the rest is released)"
  AUTH_ID=$(post_and_follow '{"type":"card_authorization","accountId":2,"amountMinor":9000,"currency":"EUR","merchant":"Corner Cafe"}' || true)
  $TXSIM accounts show 2 | head -n 3 || true
  if [[ -n $AUTH_ID ]]; then
    CAPTURE_ID=$(post_and_follow "{\"type\":\"card_capture\",\"accountId\":2,\"authorizationId\":\"$AUTH_ID\",\"amountMinor\":7500,\"currency\":\"EUR\",\"final\":true}" || true)
    if [[ -n $CAPTURE_ID ]]; then
      echo "== and a refund of 25.00 of that capture, naming the capture (captureId)"
      post_and_follow "{\"type\":\"card_refund\",\"accountId\":2,\"captureId\":\"$CAPTURE_ID\",\"amountMinor\":2500,\"currency\":\"EUR\"}" >/dev/null || true
    fi
    $TXSIM tx show "$AUTH_ID" | head -n 12 || true
  fi
fi

echo "== txsim gen $COUNT --seed $SEED --invalid 0.02 --rate $RATE"
$TXSIM gen "$COUNT" --seed "$SEED" --invalid 0.02 --rate "$RATE" | tee "$LOG_DIR/gen.out"
RUN_ID="$(sed -n 's/^run \([0-9a-f-]\{36\}\).*/\1/p' "$LOG_DIR/gen.out")"

echo "== a few worker log lines (pino JSON; pretty when a worker runs on a terminal)"
head -n 3 "$LOG_DIR/w1.log" | cut -c1-240 || true
echo "== statement lines as txsim accounting prints them (all in $LOG_DIR/accounting.out)"
sleep 2
tail -n 8 "$LOG_DIR/accounting.out" || true

echo "== txsim verify --run $RUN_ID --wait 120"
status=0
$TXSIM verify --run "$RUN_ID" --wait 120 || status=$?

echo "== the statement of account 1"
$TXSIM accounting statement 1 --limit 8 || true
echo "== where to look next: txsim watch · txsim inspect-errors · txsim accounts show 1"
$TXSIM inspect-errors --limit 5 || true
stop_workers
echo "== demo finished (verify exit code $status). The RabbitMQ console: http://127.0.0.1:15672 (guest/guest)"
exit "$status"
