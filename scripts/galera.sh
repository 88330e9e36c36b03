#!/usr/bin/env bash
# A three-node MariaDB Galera cluster on this one host, beside (and separate from) the default server on 3306:
# its own data folders, ports and sockets. Idempotent: `up` initialises and starts only what is missing.
#
#   scripts/galera.sh up        start the three nodes (node 1 bootstraps the cluster when none runs; 2 and 3 join)
#   scripts/galera.sh down      stop the three nodes (their data stays; --purge removes it too)
#   scripts/galera.sh status    one line per node: name, pid <os pid>, mysql:// URL, state, cluster size
#   scripts/galera.sh urls      the DATABASE_URL list of the three nodes (comma-separated), for txsim
#   scripts/galera.sh stop N | start N | kill N    stop (clean), start again (it rejoins), or kill -9 one node
#   scripts/galera.sh isolate N | rejoin N         cut one running node off the others (it stays up and accepts
#                               connections, but is non-Primary and refuses work), or let it back in
#
# Node n (1..3) listens on 127.0.0.1:3310+n (socket $TXSIM_GALERA_DIR/node<n>/mysqld.sock), group communication
# on 4557+10n, incremental state transfer on 4558+10n, full state transfer (rsync) on 4554+10n; data and logs in
# $TXSIM_GALERA_DIR/node<n> (default /var/tmp/txsim-galera). Needs root and Debian's mariadb-server, galera-4
# and rsync; binlog_format=ROW and innodb_autoinc_lock_mode=2, as Galera requires. With Docker instead:
# docker compose -f docker-compose.galera.yml up -d (same ports).
#
# Environment: TXSIM_GALERA_DIR, TXSIM_GALERA_WAIT_S (how long to wait for a node, default 120).
# Exit codes (txsim's): 0 done, 2 usage, 3 something missing or a node did not come up.
set -euo pipefail

TXSIM_SCRIPT=galera
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin

GALERA_DIR=${TXSIM_GALERA_DIR:-/var/tmp/txsim-galera}
WAIT_S=${TXSIM_GALERA_WAIT_S:-120}
NODES=(1 2 3)
PROVIDER=/usr/lib/galera/libgalera_smm.so

usage() {
  sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

node_name() { printf 'txsim-galera%s' "$1"; }
sql_port() { printf '%s' $((3310 + $1)); }
gcomm_port() { printf '%s' $((4557 + 10 * $1)); }
ist_port() { printf '%s' $((4558 + 10 * $1)); }
sst_port() { printf '%s' $((4554 + 10 * $1)); }
node_dir() { printf '%s/node%s' "$GALERA_DIR" "$1"; }
socket_of() { printf '%s/mysqld.sock' "$(node_dir "$1")"; }

require_galera() {
  [[ $(id -u) -eq 0 ]] || txsim_die 3 "run as root: the nodes run as the mysql user in their own folders"
  command -v mariadbd >/dev/null 2>&1 || txsim_die 3 "MariaDB is not installed: as root, 'apt-get install mariadb-server'"
  [[ -f $PROVIDER ]] || txsim_die 3 "Galera is not installed ($PROVIDER is missing): as root, 'apt-get install galera-4'"
  command -v rsync >/dev/null 2>&1 || txsim_die 3 "rsync is missing (the state transfer uses it): as root, 'apt-get install rsync'"
}

cluster_address() {
  local out='' n
  for n in "${NODES[@]}"; do out+="${out:+,}127.0.0.1:$(gcomm_port "$n")"; done
  printf 'gcomm://%s' "$out"
}

write_config() {
  local n=$1 dir
  dir=$(node_dir "$n")
  mkdir -p "$dir/data"
  cat >"$dir/my.cnf" <<EOF
[mariadbd]
user = mysql
datadir = $dir/data
socket = $(socket_of "$n")
pid-file = $dir/mariadbd.pid
log-error = $dir/error.log
bind-address = 127.0.0.1
port = $(sql_port "$n")
skip-name-resolve
innodb_buffer_pool_size = 128M
innodb_log_file_size = 64M
innodb_flush_log_at_trx_commit = 1
# Galera's requirements.
binlog_format = ROW
default_storage_engine = InnoDB
innodb_autoinc_lock_mode = 2
wsrep_on = ON
wsrep_provider = $PROVIDER
wsrep_cluster_name = txsim-galera
wsrep_cluster_address = $(cluster_address)
wsrep_node_name = $(node_name "$n")
wsrep_node_address = 127.0.0.1:$(gcomm_port "$n")
wsrep_provider_options = "base_port=$(gcomm_port "$n");ist.recv_addr=127.0.0.1:$(ist_port "$n");gcache.size=128M"
wsrep_sst_method = rsync
wsrep_sst_receive_address = 127.0.0.1:$(sst_port "$n")
# A read on any node sees every write committed before it, on whichever node.
wsrep_sync_wait = 1
EOF
  chown -R mysql:mysql "$dir"
}

pid_of() {
  local file pid
  file="$(node_dir "$1")/mariadbd.pid"
  [[ -s $file ]] || return 1
  pid=$(tr -dc '0-9' <"$file")
  txsim_pid_alive "$pid" && printf '%s' "$pid"
}

# A query on node n through its socket (as root, no password needed there).
node_sql() {
  local n=$1
  shift
  txsim_bounded 10 mariadb --protocol=socket -S "$(socket_of "$n")" -uroot -N -B -e "$*" 2>/dev/null
}

wsrep_status() {
  # A node that is starting or dying does not answer: say so rather than fail the status.
  node_sql "$1" "SHOW STATUS WHERE Variable_name IN ('wsrep_local_state_comment','wsrep_cluster_size','wsrep_cluster_status')" |
    awk '{ printf "%s=%s ", $1, $2 }' || printf 'not-answering'
}

is_synced() {
  [[ $(node_sql "$1" "SHOW STATUS LIKE 'wsrep_local_state_comment'" | awk '{ print $2 }') == Synced ]]
}

# Is any node up and part of a primary component (so a starting node can join it)?
primary_running() {
  local n
  for n in "${NODES[@]}"; do
    [[ $(node_sql "$n" "SHOW STATUS LIKE 'wsrep_cluster_status'" | awk '{ print $2 }') == Primary ]] && return 0
  done
  return 1
}

start_node() {
  local n=$1 bootstrap=() dir
  dir=$(node_dir "$n")
  if pid_of "$n" >/dev/null; then
    return 0
  fi
  write_config "$n"
  if [[ ! -d $dir/data/mysql ]]; then
    txsim_say "initialising $(node_name "$n") in $dir/data"
    mariadb-install-db --defaults-file="$dir/my.cnf" --user=mysql --auth-root-authentication-method=normal \
      --skip-test-db >"$dir/install.log" 2>&1 || txsim_die 3 "$(node_name "$n"): mariadb-install-db failed, see $dir/install.log"
  fi
  if ! primary_running; then
    # No cluster to join: this node starts a new one. Galera refuses to bootstrap from a node that may not
    # have the latest state unless told so; after a clean `down` every node has it.
    bootstrap=(--wsrep-new-cluster)
    if [[ -f $dir/data/grastate.dat ]]; then sed -i 's/^safe_to_bootstrap: 0/safe_to_bootstrap: 1/' "$dir/data/grastate.dat"; fi
  fi
  txsim_say "starting $(node_name "$n") on 127.0.0.1:$(sql_port "$n")${bootstrap:+ (bootstrapping a new cluster)}"
  start-stop-daemon --start --background --chuid mysql --pidfile "$dir/mariadbd.pid" \
    --exec /usr/sbin/mariadbd -- --defaults-file="$dir/my.cnf" "${bootstrap[@]}"
  local deadline=$((SECONDS + WAIT_S))
  until is_synced "$n"; do
    ((SECONDS < deadline)) || txsim_die 3 "$(node_name "$n") did not reach Synced within ${WAIT_S}s: see $dir/error.log"
    sleep 1
  done
  # TCP logins as root with no password, like the default server's, for txsim's DATABASE_URL (loopback only).
  if [[ ${#bootstrap[@]} -gt 0 ]]; then
    node_sql "$n" "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION" ||
      txsim_die 3 "$(node_name "$n"): could not allow root on 127.0.0.1"
  fi
}

stop_node() {
  local pid
  if pid=$(pid_of "$1"); then txsim_stop_process "$(node_name "$1")" "$pid" 60; fi
}

kill_node() {
  local pid
  pid=$(pid_of "$1") || txsim_die 3 "$(node_name "$1") is not running"
  txsim_kill_process "$(node_name "$1")" "$pid"
}

# Galera's own switch for this (gmcast.isolate): the node drops its group connections and refuses new ones, so
# it sees a component of one out of three — non-Primary, wsrep_ready OFF — while the other two go on as Primary.
isolate_node() {
  pid_of "$1" >/dev/null || txsim_die 3 "$(node_name "$1") is not running"
  node_sql "$1" "SET GLOBAL wsrep_provider_options = 'gmcast.isolate=1'" || txsim_die 3 "$(node_name "$1"): could not isolate it"
  local deadline=$((SECONDS + WAIT_S))
  until [[ $(node_sql "$1" "SHOW STATUS LIKE 'wsrep_cluster_status'" | awk '{ print $2 }') == non-Primary ]]; do
    ((SECONDS < deadline)) || txsim_die 3 "$(node_name "$1") did not become non-Primary within ${WAIT_S}s"
    sleep 1
  done
  txsim_say "$(node_name "$1") isolated: non-Primary, refusing work"
}

rejoin_node() {
  pid_of "$1" >/dev/null || txsim_die 3 "$(node_name "$1") is not running"
  node_sql "$1" "SET GLOBAL wsrep_provider_options = 'gmcast.isolate=0'" || txsim_die 3 "$(node_name "$1"): could not end its isolation"
  local deadline=$((SECONDS + WAIT_S))
  until is_synced "$1" && [[ $(node_sql "$1" "SHOW STATUS LIKE 'wsrep_cluster_status'" | awk '{ print $2 }') == Primary ]]; do
    ((SECONDS < deadline)) || txsim_die 3 "$(node_name "$1") did not rejoin within ${WAIT_S}s: see $(node_dir "$1")/error.log"
    sleep 1
  done
  txsim_say "$(node_name "$1") rejoined: Primary, Synced"
}

status_line() {
  local n=$1 pid state
  pid=$(pid_of "$n" || printf '-')
  if [[ $pid != - ]]; then state="running $(wsrep_status "$n")"; else state='stopped'; fi
  printf '%s pid %s mysql://root@127.0.0.1:%s %s\n' "$(node_name "$n")" "$pid" "$(sql_port "$n")" "${state% }"
}

urls() {
  local out='' n
  for n in "${NODES[@]}"; do out+="${out:+,}mysql://root@127.0.0.1:$(sql_port "$n")"; done
  printf '%s\n' "$out"
}

main() {
  case ${1:-} in
    up)
      require_galera
      for n in "${NODES[@]}"; do start_node "$n"; done
      for n in "${NODES[@]}"; do status_line "$n"; done
      ;;
    down)
      require_galera
      for n in 3 2 1; do stop_node "$n"; done
      if [[ ${2:-} == --purge ]]; then
        rm -rf "$GALERA_DIR"
        txsim_say "removed $GALERA_DIR"
      fi
      ;;
    status)
      require_galera
      for n in "${NODES[@]}"; do status_line "$n"; done
      ;;
    urls) urls ;;
    stop | start | kill | isolate | rejoin)
      require_galera
      txsim_check_node_arg "${2:-}"
      "$1_node" "$2"
      ;;
    -h | --help | help) usage ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
}

main "$@"
