#!/usr/bin/env bash
# A three-node MariaDB Galera cluster on this one host, beside (and separate from) the default server on 3306:
# its own data folders, ports and sockets. Idempotent: `up` initialises and starts only what is missing.
#
#   scripts/galera.sh up        start the three nodes: when no cluster runs, the node with the latest committed
#                               state (highest seqno; node 1 after a clean `down`) bootstraps it and the others join
#   scripts/galera.sh down      stop the three nodes (their data stays; --purge removes it too)
#   scripts/galera.sh status    one line per node: name, pid <os pid>, mysql:// URL, state, cluster size
#   scripts/galera.sh urls      the DATABASE_URL list of the three nodes (comma-separated), for txsim
#   scripts/galera.sh stop N | start N | kill N    stop (clean), start again (it rejoins; alone, only the node
#                               with the latest state may start a new cluster), or kill -9 one node
#   scripts/galera.sh isolate N | rejoin N         cut one running node off the others (it stays up and accepts
#                               connections, but is non-Primary and refuses work), or let it back in
#
# Node n (1..3) listens on 127.0.0.1:3310+n (socket $TXSIM_GALERA_DIR/node<n>/mysqld.sock), group communication
# on 4557+10n, incremental state transfer on 4558+10n, full state transfer (rsync) on 4554+10n; data and logs in
# $TXSIM_GALERA_DIR/node<n> (default /var/tmp/txsim-galera). Needs root and Debian's mariadb-server, galera-4
# and rsync; binlog_format=ROW and innodb_autoinc_lock_mode=2, as Galera requires. With Docker instead:
# docker compose -f docker-compose.galera.yml up -d (same ports).
#
# Starting a new cluster never guesses: each node's position comes from its grastate.dat or, after a crash
# (seqno -1), from `mariadbd --wsrep-recover`. When a position cannot be read, or the nodes hold different
# cluster histories, `up` refuses and says what to check; TXSIM_GALERA_BOOTSTRAP=N then forces node N.
#
# Environment: TXSIM_GALERA_DIR, TXSIM_GALERA_WAIT_S (how long to wait for a node, default 120),
# TXSIM_GALERA_BOOTSTRAP (1..3: bootstrap that node without comparing positions; only after checking by hand).
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
  sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
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
  local file pid dir
  dir=$(node_dir "$1")
  file="$dir/mariadbd.pid"
  [[ -s $file ]] || return 1
  pid=$(tr -dc '0-9' <"$file")
  txsim_pid_alive "$pid" || return 1
  # The file outlives a node killed -9 (and a --wsrep-recover run), and its pid may since belong to another
  # process (pids are reused): only this node's own server counts as the node running.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "--defaults-file=$dir/my.cnf" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- '--wsrep-recover' && return 1
  printf '%s' "$pid"
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

ZERO_UUID=00000000-0000-0000-0000-000000000000

# The committed position node n saved in its data folder, read while it is stopped, into POS_UUID, POS_SEQNO
# (-1: unknown) and POS_SAFE (grastate.dat's safe_to_bootstrap). A clean stop writes the seqno to grastate.dat;
# a crash leaves -1 there, and then `mariadbd --wsrep-recover` on the node's own config reads it from InnoDB.
# POS_UUID is $ZERO_UUID for a node that never held a cluster's state.
saved_position() {
  local n=$1 dir grastate recovered
  dir=$(node_dir "$n")
  grastate=$dir/data/grastate.dat
  POS_UUID='' POS_SEQNO='' POS_SAFE=0
  if [[ -f $grastate ]]; then
    POS_UUID=$(awk '$1 == "uuid:" { print $2 }' "$grastate")
    POS_SEQNO=$(awk '$1 == "seqno:" { print $2 }' "$grastate")
    POS_SAFE=$(awk '$1 == "safe_to_bootstrap:" { print $2 }' "$grastate")
  fi
  [[ $POS_SAFE == 1 ]] || POS_SAFE=0
  if [[ $POS_UUID =~ ^[0-9a-f-]{36}$ && $POS_SEQNO =~ ^[0-9]+$ ]]; then return 0; fi
  txsim_say "$(node_name "$n"): grastate.dat has no committed position (seqno ${POS_SEQNO:-missing}): recovering it with mariadbd --wsrep-recover"
  write_config "$n"
  rm -f "$dir/recover.log"
  txsim_bounded "$WAIT_S" mariadbd --defaults-file="$dir/my.cnf" --wsrep-recover --log-error="$dir/recover.log" >/dev/null 2>&1 || true
  recovered=$(sed -n 's/.*WSREP: Recovered position: *\([0-9a-f-]\{36\}\):\(-\{0,1\}[0-9]\{1,\}\).*/\1 \2/p' "$dir/recover.log" 2>/dev/null | tail -n 1)
  if [[ -z $recovered ]]; then
    POS_SEQNO=-1
    POS_UUID=${POS_UUID:-?}
    return 0
  fi
  if [[ ${recovered% *} == "$ZERO_UUID" && $POS_UUID =~ ^[0-9a-f-]{36}$ && $POS_UUID != "$ZERO_UUID" ]]; then
    POS_SEQNO=-1 # grastate.dat names a cluster but InnoDB holds no position of it: unknown, not "empty"
    return 0
  fi
  POS_UUID=${recovered% *}
  POS_SEQNO=${recovered#* }
  RECOVERED_POSITION[$n]=$POS_UUID:$POS_SEQNO
}

declare -A RECOVERED_POSITION=()

# Which node may start a new cluster when none runs: the one holding the latest committed state. Sets
# BOOTSTRAP_NODE, or exits 3 with what to check when that cannot be decided. PREFERRED (default 1) wins ties.
choose_bootstrap_node() {
  local preferred=${1:-1} n dir cluster_uuid='' best='' best_key='' key lines='' unknown=()
  if [[ -n ${TXSIM_GALERA_BOOTSTRAP:-} ]]; then
    [[ $TXSIM_GALERA_BOOTSTRAP =~ ^[123]$ ]] || txsim_die 2 "TXSIM_GALERA_BOOTSTRAP must be 1, 2 or 3"
    BOOTSTRAP_NODE=$TXSIM_GALERA_BOOTSTRAP
    txsim_warn "TXSIM_GALERA_BOOTSTRAP=$BOOTSTRAP_NODE: $(node_name "$BOOTSTRAP_NODE") bootstraps as told, without comparing the nodes' positions"
    return 0
  fi
  for n in "${NODES[@]}"; do
    dir=$(node_dir "$n")
    [[ -d $dir/data/mysql ]] || continue # never initialised: it joins with a full state transfer
    saved_position "$n"
    lines+="  $(node_name "$n"): ${POS_UUID}:${POS_SEQNO} safe_to_bootstrap=${POS_SAFE} ($dir/data/grastate.dat)"$'\n'
    [[ $POS_UUID == "$ZERO_UUID" ]] && continue # never held a cluster's state
    if [[ $POS_UUID == '?' || $POS_SEQNO -lt 0 ]]; then
      unknown+=("$n")
      continue
    fi
    if [[ -n $cluster_uuid && $POS_UUID != "$cluster_uuid" ]]; then
      txsim_die 3 "the nodes hold different cluster histories, so none can be chosen to bootstrap:"$'\n'"$lines""check which one holds the data you want, then run again with TXSIM_GALERA_BOOTSTRAP=<its number> (the others are overwritten from it)"
    fi
    cluster_uuid=$POS_UUID
    # Highest seqno first; then the node Galera marked safe_to_bootstrap (the last to leave); then PREFERRED.
    key=$(printf '%020d%d%d' "$POS_SEQNO" "$POS_SAFE" "$([[ $n == "$preferred" ]] && echo 1 || echo 0)")
    if [[ -z $best || $key > $best_key ]]; then
      best=$n
      best_key=$key
    fi
  done
  if ((${#unknown[@]} > 0)); then
    local who='' u
    for u in "${unknown[@]}"; do who+="${who:+, }$(node_name "$u") (see $(node_dir "$u")/recover.log and error.log)"; done
    txsim_die 3 "cannot tell which node holds the latest commits: no position for $who. Positions found:"$'\n'"$lines""Starting from a stale node would lose the newer commits. Check the logs (a node whose InnoDB does not recover needs repair), or, once you know which node is the most advanced, run again with TXSIM_GALERA_BOOTSTRAP=<its number>"
  fi
  BOOTSTRAP_NODE=${best:-$preferred} # no node holds any state yet: a first start
  if [[ -n $best ]]; then
    txsim_say "latest committed state: $(node_name "$best") (${cluster_uuid}:$((10#${best_key:0:20})))"
  fi
}

# Refuses to start a new cluster beside a node that runs without one (it would be a second, diverging cluster).
refuse_beside_non_primary() {
  local n
  for n in "${NODES[@]}"; do
    if pid_of "$n" >/dev/null; then
      txsim_die 3 "$(node_name "$n") runs but no node is part of a Primary component (status: $(wsrep_status "$n")): starting a new cluster beside it could diverge. Wait for it to rejoin, or run '$0 down' and then '$0 up', which bootstraps the node with the latest state"
    fi
  done
}

# start_node N bootstrap|join
start_node() {
  local n=$1 mode=$2 bootstrap=() dir grastate position=()
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
  grastate=$dir/data/grastate.dat
  if [[ $mode == bootstrap ]]; then
    # choose_bootstrap_node found this node's state to be the latest: Galera's safe_to_bootstrap guard may go.
    bootstrap=(--wsrep-new-cluster)
    if [[ -f $grastate ]]; then sed -i 's/^safe_to_bootstrap: 0/safe_to_bootstrap: 1/' "$grastate"; fi
  fi
  # After a crash grastate.dat says seqno -1: start from the position InnoDB recovered (as galera_recovery does).
  if [[ -n ${RECOVERED_POSITION[$n]:-} ]] && grep -q '^seqno: *-1' "$grastate" 2>/dev/null; then
    position=(--wsrep-start-position="${RECOVERED_POSITION[$n]}")
  fi
  txsim_say "starting $(node_name "$n") on 127.0.0.1:$(sql_port "$n")${bootstrap:+ (bootstrapping a new cluster)}"
  start-stop-daemon --start --background --chuid mysql --pidfile "$dir/mariadbd.pid" \
    --exec /usr/sbin/mariadbd -- --defaults-file="$dir/my.cnf" "${bootstrap[@]}" "${position[@]}"
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

# up: every node; start N: node N. Joins a running Primary component, or starts a new cluster from the node
# with the latest state (for `start N`, only when that is N).
start_nodes() {
  local n
  if primary_running; then
    for n in "$@"; do start_node "$n" join; done
    return 0
  fi
  refuse_beside_non_primary
  choose_bootstrap_node "$1"
  if [[ $# -eq 1 && $1 != "$BOOTSTRAP_NODE" ]]; then
    txsim_die 3 "no cluster runs and $(node_name "$BOOTSTRAP_NODE") holds later commits than $(node_name "$1"): start $BOOTSTRAP_NODE first (or '$0 up')"
  fi
  start_node "$BOOTSTRAP_NODE" bootstrap
  for n in "$@"; do [[ $n == "$BOOTSTRAP_NODE" ]] || start_node "$n" join; done
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
      start_nodes "${NODES[@]}"
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
    start)
      require_galera
      txsim_check_node_arg "${2:-}"
      start_nodes "$2"
      ;;
    stop | kill | isolate | rejoin)
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
