#!/usr/bin/env bash
# Makes RabbitMQ (with the management console) and a MySQL-compatible database reachable for txsim.
# Idempotent: run it as often as you like; it changes only what is missing.
#
# For each of the two services, in this order:
#   (a) it already answers at the host:port of AMQP_URL / DATABASE_URL  -> leave it alone (for a local RabbitMQ,
#       enable the management plugin if the console at RABBITMQ_API_URL does not answer);
#   (b) a Docker engine runs                                           -> `docker compose up -d rabbitmq|mysql`,
#       then wait for the containers' health checks;
#   (c) Debian/Ubuntu as root                                          -> apt-get install what is missing, start it
#       without systemd, wait until it accepts a real login;
#   (d) otherwise                                                      -> say exactly what to install, exit 3.
# Only services on this machine (localhost, 127.x, ::1) are ever started or installed.
#
# Environment: AMQP_URL, DATABASE_URL, RABBITMQ_API_URL (same defaults as txsim),
#   TXSIM_SERVICES_NO_INSTALL=1  check only: start, install or enable nothing (same as --check)
#   TXSIM_SERVICES_WAIT_S        how long to wait for each service to come up (default 90)
# Exit codes (txsim's): 0 both reachable, 2 usage, 3 a service is unreachable and could not be made reachable.
set -euo pipefail

TXSIM_SCRIPT=services
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
# Daemons and their admin tools live in sbin, which a non-login shell's PATH may lack.
PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin

usage() {
  cat <<'EOF'
Usage: scripts/services.sh [--check]

Makes RabbitMQ (management console on) and MySQL/MariaDB reachable at the hosts and ports of AMQP_URL,
DATABASE_URL and RABBITMQ_API_URL: nothing if they already answer; else Docker Compose where a Docker
engine runs; else, on Debian/Ubuntu as root, installs rabbitmq-server / mariadb-server and starts them
without systemd; else says what to install and exits 3.

  --check   only report; start, install or enable nothing (env: TXSIM_SERVICES_NO_INSTALL=1)

Environment: AMQP_URL, DATABASE_URL, RABBITMQ_API_URL, TXSIM_SERVICES_NO_INSTALL, TXSIM_SERVICES_WAIT_S (default 90).
EOF
}

check_only=0
case ${TXSIM_SERVICES_NO_INSTALL:-} in '' | 0 | false | no) ;; *) check_only=1 ;; esac
for arg in "$@"; do
  case $arg in
    --check) check_only=1 ;;
    -h | --help) usage && exit 0 ;;
    *) usage >&2 && exit 2 ;;
  esac
done
wait_s=${TXSIM_SERVICES_WAIT_S:-90}
[[ $wait_s =~ ^[0-9]{1,4}$ ]] || txsim_die 2 "TXSIM_SERVICES_WAIT_S: \"$wait_s\" must be a whole number of seconds"

# Two runs at once would race on apt's lock or start the same daemon twice, so each run that may change something
# runs under flock(1); a second run waits (at most 15 min, then exits 3) and then finds the work done. flock's -o
# keeps the lock's file descriptor out of this script: a daemon started here (or epmd, which any RabbitMQ CLI
# call may spawn) would otherwise inherit it and hold the lock for as long as it runs.
lock_file=${TMPDIR:-/tmp}/txsim-services.lock
if ((check_only == 0)) && [[ -z ${TXSIM_SERVICES_LOCKED:-} ]] && command -v flock >/dev/null 2>&1 &&
  { : >>"$lock_file"; } 2>/dev/null; then
  export TXSIM_SERVICES_LOCKED=1
  exec flock -o -w 900 -E 3 "$lock_file" "$BASH" "${BASH_SOURCE[0]}" "$@"
fi

# What the commands this script runs print goes to a log, never into $(...): a daemon that inherited the pipe
# (rabbitmq-server, mariadbd, epmd) would keep the command substitution waiting for as long as it runs.
run_log=''
created_policy=0
cleanup() {
  local status=$?
  ((created_policy == 0)) || rm -f /usr/sbin/policy-rc.d
  # Keep the log of a failed run for the user to read; a run that worked leaves nothing behind.
  [[ -z $run_log || $status != 0 ]] || rm -f "$run_log"
}
trap cleanup EXIT

# Runs COMMAND... with its output appended to this run's log. On failure, shows the log's tail on stderr.
logged() {
  [[ -n $run_log ]] || run_log=$(mktemp "${TMPDIR:-/tmp}/txsim-services.XXXXXX")
  printf '$ %s\n' "$*" >>"$run_log"
  "$@" >>"$run_log" 2>&1 && return 0
  local status=$?
  tail -n 20 "$run_log" | sed 's/^/    /' >&2
  txsim_warn "(full output: $run_log)"
  return "$status"
}

# --- Where the services should be: the same defaults as src/config/config.ts ------------------------------------

amqp_url=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672}
# A cluster's node list (comma-separated): the first node is checked; scripts/cluster.sh starts the others.
amqp_url=${amqp_url%%,*}
database_url=${DATABASE_URL:-mysql://root@127.0.0.1:3306}
api_url=${RABBITMQ_API_URL:-http://guest:guest@127.0.0.1:15672}

parse_or_die() {
  local key=$1 url=$2 default_port=$3
  txsim_parse_url "$url" "$default_port" ||
    txsim_die 2 "$key: \"$(txsim_redact_url "$url")\" is not a URL like scheme://[user[:password]@]host[:port]"
}
parse_or_die AMQP_URL "$amqp_url" "$([[ $amqp_url == amqps:* ]] && echo 5671 || echo 5672)"
rabbit_host=$URL_HOST rabbit_port=$URL_PORT
parse_or_die DATABASE_URL "$database_url" 3306
db_host=$URL_HOST db_port=$URL_PORT db_user=${URL_USER:-root} db_password=$URL_PASSWORD
parse_or_die RABBITMQ_API_URL "$api_url" "$([[ $api_url == https:* ]] && echo 443 || echo 80)"
api_scheme=$URL_SCHEME api_host=$URL_HOST api_port=$URL_PORT

rabbit_at=$(txsim_endpoint "$rabbit_host" "$rabbit_port")
db_at=$(txsim_endpoint "$db_host" "$db_port")
console_at="$api_scheme://$(txsim_endpoint "$api_host" "$api_port")"

# The ports a distribution install listens on; the apt path only helps when the URLs ask for these.
readonly STANDARD_RABBIT_PORT=5672 STANDARD_DB_PORT=3306

rabbit_up() { txsim_port_open "$rabbit_host" "$rabbit_port"; }
db_up() { txsim_port_open "$db_host" "$db_port"; }
console_up() { txsim_port_open "$api_host" "$api_port"; }

# --- (a) Management plugin of a RabbitMQ that already runs here -------------------------------------------------

# Enables rabbitmq_management (and rabbitmq_consistent_hash_exchange, which `txsim setup --partitions` needs) on
# the local node when the console does not answer. Returns 1 when the console is still unreachable (the caller
# decides whether that is fatal).
ensure_console() {
  console_up && return 0
  ((check_only == 0)) || return 1
  txsim_is_local_host "$rabbit_host" && txsim_is_local_host "$api_host" || return 1
  command -v rabbitmq-plugins >/dev/null 2>&1 || return 1
  txsim_say "RabbitMQ: enabling the management and consistent-hash exchange plugins"
  if ! logged txsim_bounded 60 rabbitmq-plugins enable rabbitmq_management rabbitmq_consistent_hash_exchange; then
    txsim_warn "RabbitMQ: 'rabbitmq-plugins enable rabbitmq_management rabbitmq_consistent_hash_exchange' failed (it needs root or the rabbitmq user)"
    return 1
  fi
  txsim_wait_until 30 console_up
}

# The consistent-hash exchange type of the ordered topology, on a node whose console was already up: enabled
# the same way as the console (best effort; only `setup --partitions` needs it).
ensure_hash_exchange() {
  ((check_only == 0)) || return 0
  txsim_is_local_host "$rabbit_host" || return 0
  command -v rabbitmq-plugins >/dev/null 2>&1 || return 0
  txsim_bounded 30 rabbitmq-plugins list -e -m 2>/dev/null | grep -qx rabbitmq_consistent_hash_exchange && return 0
  txsim_say "RabbitMQ: enabling the consistent-hash exchange plugin (txsim setup --partitions)"
  logged txsim_bounded 60 rabbitmq-plugins enable rabbitmq_consistent_hash_exchange ||
    txsim_warn "RabbitMQ: 'rabbitmq-plugins enable rabbitmq_consistent_hash_exchange' failed (it needs root or the rabbitmq user); only setup --partitions needs it"
}

# One line saying where RabbitMQ is, and whether its console answers.
report_rabbit() {
  local how=$1
  if ensure_console; then
    txsim_say "RabbitMQ: $how at $rabbit_at (AMQP_URL), console at $console_at"
    return 0
  fi
  txsim_say "RabbitMQ: $how at $rabbit_at (AMQP_URL); the console at $console_at (RABBITMQ_API_URL) does not answer"
  return 1
}

db_tool() { command -v "$1" 2>/dev/null || command -v "$2" 2>/dev/null; }
db_client=$(db_tool mariadb mysql || true)

# Tries the credentials txsim will use: DATABASE_URL's user and password, over TCP like txsim (never the socket).
# The password goes through the environment, so no process listing shows it. Fails only on a refused login
# (errno 1045 access denied, 1698 access denied without a password, 1130 host not allowed); anything else (say,
# a client that lacks the server's auth plugin) is not this check's business.
db_login_output=''
db_login_works() {
  local env=()
  [[ -z $db_password ]] || env=(MYSQL_PWD="$db_password")
  db_login_output=$(txsim_bounded 10 env "${env[@]}" "$db_client" --no-defaults --protocol=TCP -h "$db_host" -P "$db_port" \
    -u "$db_user" -e 'select 1' 2>&1 >/dev/null) && return 0
  ! [[ $db_login_output =~ ERROR\ (1045|1698|1130) ]]
}

explain_login_failure() {
  txsim_warn "Database: the server answers at $db_at, but refuses user '$db_user' with $([[ -n $db_password ]] && echo "DATABASE_URL's password" || echo 'an empty password') over TCP."
  if [[ $db_user == root && -z $db_password ]]; then
    txsim_warn "  (Debian's MariaDB lets root in only through the local socket.) Either give txsim its own user:"
  else
    txsim_warn "  Check DATABASE_URL's user and password, or give txsim its own user:"
  fi
  txsim_warn "    sudo mariadb -e \"CREATE USER 'txsim'@'localhost' IDENTIFIED BY '<password>'; CREATE USER 'txsim'@'127.0.0.1' IDENTIFIED BY '<password>';"
  txsim_warn "      GRANT ALL PRIVILEGES ON *.* TO 'txsim'@'localhost'; GRANT ALL PRIVILEGES ON *.* TO 'txsim'@'127.0.0.1'\""
  txsim_warn "    export DATABASE_URL='mysql://txsim:<password>@$db_at'"
  if [[ $db_user == root && -z $db_password ]]; then
    txsim_warn "  or, on a development machine only, let root in over TCP with an empty password:"
    txsim_warn "    sudo mariadb -e \"ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('')\""
  fi
  exit 3
}

# One line saying where the database is. A local client (when there is one) first tells a server that merely
# answers from one that txsim can log in to.
report_db() {
  if [[ -n $db_client ]] && ! db_login_works; then explain_login_failure; fi
  txsim_say "Database: $1 at $db_at (DATABASE_URL)"
}

missing=()
if rabbit_up; then
  ensure_hash_exchange
  report_rabbit reachable ||
    txsim_warn "RabbitMQ: to turn the console on, run as root: rabbitmq-plugins enable rabbitmq_management"
else
  missing+=(rabbitmq)
fi
if db_up; then
  report_db reachable
else
  missing+=(database)
fi
((${#missing[@]} > 0)) || exit 0

# --- (d) What to tell the user when a service stays unreachable -------------------------------------------------

# Prints why SERVICE is unreachable and every way to fix it, on stderr. REMOTE=1: the URL names another host,
# where installing anything here would not help.
explain_unreachable() {
  local service=$1 reason=$2 remote=${3:-0} name key at host package compose_service brew
  if [[ $service == rabbitmq ]]; then
    name=RabbitMQ key=AMQP_URL at=$rabbit_at host=$rabbit_host package=rabbitmq-server compose_service=rabbitmq brew=rabbitmq
  else
    name='The database (MySQL/MariaDB)' key=DATABASE_URL at=$db_at host=$db_host package=mariadb-server
    compose_service=mysql brew=mariadb
  fi
  txsim_warn "$name is not reachable at $at ($key): $reason."
  if ((remote)); then
    txsim_warn "  To fix it, start it on $host (and check that this machine may connect), or set $key to a server that runs."
    return 0
  fi
  txsim_warn "  To fix it, do one of:"
  txsim_warn "  - Docker: start a Docker engine (with the compose plugin), then re-run this script, or run"
  txsim_warn "      docker compose up -d $compose_service      (in $ROOT)"
  txsim_warn "  - Debian/Ubuntu: re-run this script as root, or install and start it yourself:"
  txsim_warn "      sudo apt-get install $package"
  txsim_warn "  - macOS: brew install $brew && brew services start $brew"
  txsim_warn "  - or set $key to a server that runs"
}

fail_unreachable() {
  local reason=$1 service
  for service in "${missing[@]}"; do explain_unreachable "$service" "$reason"; done
  exit 3
}

((check_only == 0)) || fail_unreachable "TXSIM_SERVICES_NO_INSTALL=1 (or --check) forbids starting or installing anything"
for service in "${missing[@]}"; do
  if [[ $service == rabbitmq ]] && ! txsim_is_local_host "$rabbit_host"; then
    explain_unreachable rabbitmq "that host is not this machine, and this script only starts services here" 1
    exit 3
  fi
  if [[ $service == database ]] && ! txsim_is_local_host "$db_host"; then
    explain_unreachable database "that host is not this machine, and this script only starts services here" 1
    exit 3
  fi
done

# --- (b) Docker Compose -------------------------------------------------------------------------------------------

docker_available() {
  # `docker info` fails both without an engine and without permission to use it: either way, not this path.
  command -v docker >/dev/null 2>&1 && txsim_bounded 20 docker info >/dev/null 2>&1 || return 1
  # Compose v2 only: v1 (`docker-compose`, end of life since 2023) rejects the file's top-level `name`.
  if ! txsim_bounded 20 docker compose version >/dev/null 2>&1; then
    txsim_warn "a Docker engine runs, but the compose plugin ('docker compose') is not installed; trying apt"
    return 1
  fi
}

compose() {
  docker compose --project-directory "$ROOT" -f "$ROOT/docker-compose.yml" "$@"
}

# healthy, starting, unhealthy, or the container state when it has no health check.
container_health() {
  local id
  id=$(compose ps -q "$1" 2>/dev/null | head -n 1)
  [[ -n $id ]] || return 1
  docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id" 2>/dev/null
}
container_healthy() { [[ $(container_health "$1") == healthy ]]; }

start_with_docker() {
  local services=() service
  for service in "${missing[@]}"; do
    if [[ $service == rabbitmq ]]; then services+=(rabbitmq); else services+=(mysql); fi
  done
  # docker-compose.yml publishes on these host ports, so the containers answer where the URLs point.
  export TXSIM_RABBITMQ_PORT=$rabbit_port TXSIM_RABBITMQ_API_PORT=$api_port TXSIM_MYSQL_PORT=$db_port
  txsim_say "starting ${services[*]} with docker compose (first run pulls the images)"
  logged compose up -d "${services[@]}" || txsim_die 3 "docker compose up -d ${services[*]} failed"
  for service in "${services[@]}"; do
    # The image's own first start (MySQL initialises its data directory) takes longer than a restart.
    txsim_wait_until $((wait_s * 2)) container_healthy "$service" ||
      txsim_die 3 "docker compose: $service is '$(container_health "$service" || echo missing)' after $((wait_s * 2)) s; see: docker compose logs $service"
  done
  for service in "${missing[@]}"; do
    if [[ $service == rabbitmq ]]; then
      txsim_wait_until 10 rabbit_up || txsim_die 3 "RabbitMQ's container is healthy, but nothing answers at $rabbit_at"
      report_rabbit "started with docker compose, reachable" ||
        txsim_die 3 "RabbitMQ's container is healthy, but its console does not answer at $console_at"
    else
      txsim_wait_until 10 db_up || txsim_die 3 "MySQL's container is healthy, but nothing answers at $db_at"
      txsim_say "Database: started MySQL with docker compose, reachable at $db_at (DATABASE_URL)"
      if [[ $db_user != root || -n $db_password ]]; then
        txsim_warn "Database: the compose MySQL has user root with an empty password; DATABASE_URL names another user or a password, so txsim will not log in. Use DATABASE_URL=mysql://root@$db_at"
      fi
    fi
  done
}

if docker_available; then
  start_with_docker
  exit 0
fi

# --- (c) Debian/Ubuntu as root: install from the distribution, start without systemd ------------------------------

if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    fail_unreachable "no Docker engine answers (docker info), and installing with apt-get needs root (re-run with sudo)"
  fi
  fail_unreachable "no Docker engine answers (docker info), and this is not Debian/Ubuntu (no apt-get)"
fi
for service in "${missing[@]}"; do
  if [[ $service == rabbitmq && $rabbit_port != "$STANDARD_RABBIT_PORT" ]]; then
    explain_unreachable rabbitmq "no Docker engine answers (docker info), and a distribution install listens on $STANDARD_RABBIT_PORT, not $rabbit_port"
    exit 3
  fi
  if [[ $service == database && $db_port != "$STANDARD_DB_PORT" ]]; then
    explain_unreachable database "no Docker engine answers (docker info), and a distribution install listens on $STANDARD_DB_PORT, not $db_port"
    exit 3
  fi
done

# Without systemd, a package's postinst would try to start its daemon through an init script, which fails in
# containers and leaves the package half-configured. A policy-rc.d that says "no" (exit 101) makes dpkg skip
# that; we start the daemons ourselves below. Never replace a policy the machine already has.
block_daemon_autostart() {
  [[ ! -d /run/systemd/system && ! -e /usr/sbin/policy-rc.d ]] || return 0
  printf '#!/bin/sh\n# Temporary, from txsim scripts/services.sh: no daemon starts during apt-get install.\nexit 101\n' \
    >/usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  created_policy=1
}

apt_updated=0
apt_install() {
  block_daemon_autostart
  if ((apt_updated == 0)); then
    txsim_say "apt-get update"
    logged env DEBIAN_FRONTEND=noninteractive apt-get update || txsim_die 3 "apt-get update failed"
    apt_updated=1
  fi
  txsim_say "installing $* with apt-get"
  logged env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" ||
    txsim_die 3 "apt-get install $* failed"
}

rabbit_node_up() { txsim_bounded 20 rabbitmq-diagnostics -q ping >/dev/null 2>&1; }

start_rabbitmq() {
  command -v rabbitmq-server >/dev/null 2>&1 || apt_install rabbitmq-server
  local hint="see /var/log/rabbitmq/ (if the host name does not resolve, put NODENAME=rabbit@localhost in /etc/rabbitmq/rabbitmq-env.conf)"
  if rabbit_node_up; then
    txsim_say "RabbitMQ: the node already runs; waiting for $rabbit_at"
  else
    txsim_say "RabbitMQ: starting (rabbitmq-server -detached)"
    # The Debian wrapper switches to the rabbitmq user itself; -detached returns once the VM is spawned.
    logged rabbitmq-server -detached || txsim_die 3 "RabbitMQ: rabbitmq-server -detached failed; $hint"
  fi
  txsim_wait_until "$wait_s" rabbit_node_up || txsim_die 3 "RabbitMQ: the node does not answer a ping after $wait_s s; $hint"
  txsim_bounded "$wait_s" rabbitmqctl -q await_startup >/dev/null 2>&1 ||
    txsim_die 3 "RabbitMQ: the node did not finish starting within $wait_s s; $hint"
  txsim_wait_until 15 rabbit_up ||
    txsim_die 3 "RabbitMQ: the node runs, but nothing answers at $rabbit_at; check listeners in /etc/rabbitmq/rabbitmq.conf"
  report_rabbit "started, reachable" || txsim_die 3 "RabbitMQ: the management console does not answer at $console_at"
}

# The server binary: MariaDB's, or MySQL's where MySQL (or an old MariaDB) is installed instead.
db_daemon() {
  local daemon
  for daemon in /usr/sbin/mariadbd /usr/sbin/mysqld; do
    [[ -x $daemon ]] && printf '%s' "$daemon" && return 0
  done
  return 1
}

# `ping` exits 0 as soon as the server answers, even when it refuses the login: readiness, not credentials.
db_ready() {
  db_up && txsim_bounded 10 "$db_admin" --no-defaults --protocol=TCP -h "$db_host" -P "$db_port" ping >/dev/null 2>&1
}

start_database() {
  local installed_now=0
  db_daemon >/dev/null || { apt_install mariadb-server; installed_now=1; }
  local daemon
  daemon=$(db_daemon) || txsim_die 3 "Database: mariadb-server is installed, but neither /usr/sbin/mariadbd nor /usr/sbin/mysqld exists"
  db_client=$(db_tool mariadb mysql) || txsim_die 3 "Database: no mariadb or mysql client (apt-get install mariadb-client)"
  db_admin=$(db_tool mariadb-admin mysqladmin) || txsim_die 3 "Database: no mariadb-admin or mysqladmin (apt-get install mariadb-client)"
  if start-stop-daemon --status --exec "$daemon"; then
    txsim_say "Database: $(basename "$daemon") already runs; waiting for $db_at"
  else
    txsim_say "Database: starting $daemon (start-stop-daemon --background)"
    # The server puts its socket and pid file here; /run is a tmpfs, emptied at every boot.
    install -d -o mysql -g mysql -m 0755 /run/mysqld
    mkdir -p /var/log/mysql
    local output=()
    # Keep the server's stderr (its error log unless log_error is set) where a failed start can be read.
    if start-stop-daemon --help 2>&1 | grep -q -- '--output'; then output=(--output /var/log/mysql/txsim-mariadbd.log); fi
    # --user=mysql: the server refuses to run as root, and not every my.cnf says `user = mysql`.
    logged start-stop-daemon --start --oknodo --background "${output[@]}" --exec "$daemon" -- --user=mysql ||
      txsim_die 3 "Database: start-stop-daemon could not start $daemon"
  fi
  txsim_wait_until "$wait_s" db_ready ||
    txsim_die 3 "Database: nothing answers at $db_at after $wait_s s; see /var/log/mysql/ (txsim-mariadbd.log or error.log)"
  # A server this script has just installed, for txsim, on this machine: let root in over TCP with the empty
  # password of the default DATABASE_URL, so the demo runs unattended on a fresh machine. An existing server's
  # users are never changed (there the script explains the fixes instead).
  if ((installed_now == 1)) && [[ $db_user == root && -z $db_password ]] && ! db_login_works; then
    txsim_say "Database: letting root in over TCP with an empty password (a server installed just now, for development)"
    logged "$db_client" -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('')" ||
      txsim_warn "Database: could not change root's login; see the fixes below"
  fi
  report_db "started, reachable"
}

for service in "${missing[@]}"; do
  if [[ $service == rabbitmq ]]; then start_rabbitmq; else start_database; fi
done
