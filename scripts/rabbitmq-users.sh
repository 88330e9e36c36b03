#!/usr/bin/env bash
# Least-privilege RabbitMQ users for txsim, one per role, limited to one namespace (default txsim):
#   txsim-gen     writes to <ns>.transactions only: cannot read, declare or delete anything
#   txsim-worker  declares the namespace's topology, consumes its process queue, publishes to its
#                 errors/retry/dead queues (via the default exchange) and accounting/stats exchanges
#   txsim-watch   "monitoring" tag for the management API; reads <ns>.stats through its own
#                 server-named queue only
# Idempotent. Needs rabbitmqctl (run it on the broker host, as root or the rabbitmq user).
# Passwords come from TXSIM_GEN_PASSWORD / TXSIM_WORKER_PASSWORD / TXSIM_WATCH_PASSWORD (required;
# never printed); TXSIM_USER_PREFIX (default txsim) names the users <prefix>-gen and so on.
# Usage: scripts/rabbitmq-users.sh [namespace] [vhost]
set -euo pipefail
NS="${1:-txsim}"
VHOST="${2:-/}"
if ! command -v rabbitmqctl >/dev/null; then
  echo "rabbitmq-users: rabbitmqctl not found — run this on the RabbitMQ host (or inside its container)" >&2
  exit 3
fi
if [[ ! "$NS" =~ ^[a-z][a-z0-9_]*$ ]]; then
  echo "rabbitmq-users: namespace \"$NS\" must be lowercase letters, digits or _" >&2
  exit 2
fi
for var in TXSIM_GEN_PASSWORD TXSIM_WORKER_PASSWORD TXSIM_WATCH_PASSWORD; do
  if [[ -z "${!var:-}" ]]; then
    echo "rabbitmq-users: set $var (the password of that user)" >&2
    exit 2
  fi
done

ensure_user() { # name password tags
  if rabbitmqctl -q list_users | awk '{print $1}' | grep -qx "$1"; then
    rabbitmqctl -q change_password "$1" "$2" >/dev/null
  else
    rabbitmqctl -q add_user "$1" "$2" >/dev/null
  fi
  rabbitmqctl -q set_user_tags "$1" $3 >/dev/null
}

ns_re="${NS//./\\.}"
P="${TXSIM_USER_PREFIX:-txsim}"
ensure_user "$P-gen" "$TXSIM_GEN_PASSWORD" ""
rabbitmqctl -q set_permissions -p "$VHOST" "$P-gen" '^$' "^${ns_re}\\.transactions\$" '^$'

ensure_user "$P-worker" "$TXSIM_WORKER_PASSWORD" ""
rabbitmqctl -q set_permissions -p "$VHOST" "$P-worker" "^${ns_re}\\..*" "^(amq\\.default|${ns_re}\\..*)\$" "^${ns_re}\\..*"

ensure_user "$P-watch" "$TXSIM_WATCH_PASSWORD" "monitoring"
rabbitmqctl -q set_permissions -p "$VHOST" "$P-watch" '^amq\.gen-.*' '^amq\.gen-.*' "^(${ns_re}\\.stats|amq\\.gen-.*)\$"

echo "rabbitmq-users: $P-gen, $P-worker, $P-watch ready for namespace $NS on vhost $VHOST"
