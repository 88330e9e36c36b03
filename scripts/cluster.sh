#!/usr/bin/env bash
# A three-node RabbitMQ cluster on this one host, beside (and separate from) the default node on 5672:
# its own node names, data and log folders, AMQP, distribution and management ports. Idempotent: `up` starts
# only what is not running and joins only what is not in the cluster; `down` stops only what runs.
#
#   scripts/cluster.sh up        start the three nodes and cluster them (node 1 first; 2 and 3 join it)
#   scripts/cluster.sh down      stop the three nodes (their data stays; --purge removes it too)
#   scripts/cluster.sh status    one line per node: name, pid <os pid>, AMQP URL, management URL, state
#   scripts/cluster.sh urls      the AMQP_URL list of the three nodes (comma-separated), for txsim
#   scripts/cluster.sh stop N | start N | kill N    stop (clean), start again, or kill -9 one node (for faults)
#
# Node n (1..3) is txsim<n>@localhost with AMQP on 5680+n, distribution on 25680+n, management on 15680+n,
# data and logs under $TXSIM_CLUSTER_DIR/node<n> (default /var/tmp/txsim-rabbitmq-cluster). The plugins
# rabbitmq_management and rabbitmq_consistent_hash_exchange are enabled on every node. Needs RabbitMQ from
# Debian's package (rabbitmq-server) and root, which runs the nodes as the rabbitmq user with its Erlang
# cookie. With Docker instead: docker compose -f docker-compose.cluster.yml up -d (same ports).
#
# `up` resets a node only to join it the first time (its data holds no cluster but itself). A node that does
# not answer cluster_status (after retries), or whose data already names other members, is left untouched and
# `up` fails saying what to check: resetting a member would drop its quorum-queue replicas.
#
# Environment: TXSIM_CLUSTER_DIR, TXSIM_CLUSTER_WAIT_S (how long to wait for a node, default 90),
# TXSIM_CLUSTER_CTL_TIMEOUT_S (how long one rabbitmqctl call may take, default 60).
# Exit codes (txsim's): 0 done, 2 usage, 3 RabbitMQ missing or a node did not come up.
set -euo pipefail

TXSIM_SCRIPT=cluster
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin

CLUSTER_DIR=${TXSIM_CLUSTER_DIR:-/var/tmp/txsim-rabbitmq-cluster}
WAIT_S=${TXSIM_CLUSTER_WAIT_S:-90}
CTL_TIMEOUT_S=${TXSIM_CLUSTER_CTL_TIMEOUT_S:-60}
NODES=(1 2 3)

usage() {
  sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

node_name() { printf 'txsim%s@localhost' "$1"; }
amqp_port() { printf '%s' $((5680 + $1)); }
dist_port() { printf '%s' $((25680 + $1)); }
mgmt_port() { printf '%s' $((15680 + $1)); }
node_dir() { printf '%s/node%s' "$CLUSTER_DIR" "$1"; }

node_env() {
  local n=$1 dir
  dir=$(node_dir "$n")
  printf '%s\n' \
    "RABBITMQ_NODENAME=$(node_name "$n")" \
    "RABBITMQ_NODE_IP_ADDRESS=127.0.0.1" \
    "RABBITMQ_NODE_PORT=$(amqp_port "$n")" \
    "RABBITMQ_DIST_PORT=$(dist_port "$n")" \
    "RABBITMQ_MNESIA_BASE=$dir/mnesia" \
    "RABBITMQ_LOG_BASE=$dir/log" \
    "RABBITMQ_PID_FILE=$dir/rabbitmq.pid" \
    "RABBITMQ_CONFIG_FILE=$dir/rabbitmq.conf" \
    "RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins" \
    "RABBITMQ_ADVANCED_CONFIG_FILE=$dir/advanced.config" \
    "HOME=/var/lib/rabbitmq"
}

require_rabbitmq() {
  [[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]] ||
    txsim_die 3 "RabbitMQ is not installed: as root, 'apt-get install rabbitmq-server' (or use docker-compose.cluster.yml with a Docker engine)"
  [[ $(id -u) -eq 0 ]] || txsim_die 3 "run as root: the nodes run as the rabbitmq user with its Erlang cookie"
  id rabbitmq >/dev/null 2>&1 || txsim_die 3 "no rabbitmq user: is Debian's rabbitmq-server installed?"
}

# rabbitmqctl for node n, as the rabbitmq user.
nodectl() {
  local n=$1
  shift
  txsim_bounded "$CTL_TIMEOUT_S" runuser -u rabbitmq -- env HOME=/var/lib/rabbitmq /usr/lib/rabbitmq/bin/rabbitmqctl -q -n "$(node_name "$n")" "$@"
}

pid_of() {
  local file
  file="$(node_dir "$1")/rabbitmq.pid"
  [[ -s $file ]] || return 1
  local pid
  pid=$(tr -dc '0-9' <"$file")
  txsim_pid_alive "$pid" && printf '%s' "$pid"
}

is_running() {
  nodectl "$1" status >/dev/null 2>&1
}

write_files() {
  local n=$1 dir
  dir=$(node_dir "$n")
  mkdir -p "$dir/mnesia" "$dir/log"
  cat >"$dir/rabbitmq.conf" <<EOF
listeners.tcp.local = 127.0.0.1:$(amqp_port "$n")
management.tcp.ip = 127.0.0.1
management.tcp.port = $(mgmt_port "$n")
loopback_users.guest = true
EOF
  printf '[rabbitmq_management,rabbitmq_consistent_hash_exchange].\n' >"$dir/enabled_plugins"
  printf '[].\n' >"$dir/advanced.config"
  chown -R rabbitmq:rabbitmq "$dir"
}

start_node() {
  local n=$1
  # A live pid counts too: a node too busy to answer `status` must not be started a second time.
  if pid_of "$n" >/dev/null || is_running "$n"; then
    return 0
  fi
  write_files "$n"
  txsim_say "starting $(node_name "$n") (AMQP 127.0.0.1:$(amqp_port "$n"), management :$(mgmt_port "$n"))"
  local -a envs
  mapfile -t envs < <(node_env "$n")
  runuser -u rabbitmq -- env "${envs[@]}" /usr/lib/rabbitmq/bin/rabbitmq-server -detached \
    >"$(node_dir "$n")/log/startup.log" 2>&1 ||
    txsim_die 3 "$(node_name "$n") did not start: see $(node_dir "$n")/log/"
  # await_startup fails at once while the node is not yet known to epmd: poll until it answers, then wait for boot.
  local deadline=$((SECONDS + WAIT_S))
  until nodectl "$n" await_startup --timeout 10 >/dev/null 2>&1; do
    ((SECONDS < deadline)) || txsim_die 3 "$(node_name "$n") did not come up within ${WAIT_S}s: see $(node_dir "$n")/log/"
    sleep 1
  done
}

# Node n's own view of its cluster, into VIEW_DISK (every member its data names, stopped ones too) and
# VIEW_RUNNING (the members running now), space-separated. Returns 1 when the node did not answer
# cluster_status or its answer could not be read: that says nothing about membership.
cluster_view() {
  local json parsed
  VIEW_DISK='' VIEW_RUNNING=''
  json=$(nodectl "$1" cluster_status --formatter json 2>/dev/null) || return 1
  parsed=$(printf '%s' "$json" | node -e '
    let s = "";
    process.stdin.on("data", (d) => (s += d)).on("end", () => {
      let j;
      try { j = JSON.parse(s); } catch { process.exit(1); }
      const list = (k) => (Array.isArray(j[k]) ? j[k] : []);
      if (!Array.isArray(j.running_nodes)) process.exit(1);
      console.log([...list("disk_nodes"), ...list("ram_nodes")].join(" "));
      console.log(list("running_nodes").join(" "));
    });') || return 1
  VIEW_DISK=$(sed -n 1p <<<"$parsed")
  VIEW_RUNNING=$(sed -n 2p <<<"$parsed")
}

# cluster_view, tried up to 3 times (a busy node can time out once).
cluster_view_retry() {
  local attempt
  for attempt in 1 2 3; do
    cluster_view "$1" && return 0
    ((attempt < 3)) && sleep 2
  done
  return 1
}

has_word() { [[ " $1 " == *" $2 "* ]]; }

join_node() {
  local n=$1 self first log
  self=$(node_name "$n")
  first=$(node_name 1)
  cluster_view_retry "$n" ||
    txsim_die 3 "$self did not answer cluster_status (3 tries, ${CTL_TIMEOUT_S}s each): left as it is, not reset. Check it with 'rabbitmqctl -n $self cluster_status' and its logs in $(node_dir "$n")/log/, then run up again"
  if has_word "$VIEW_DISK" "$first"; then
    # Already a member (its data says so). Node 1 may be reconnecting after a restart: give it a moment.
    local deadline=$((SECONDS + WAIT_S))
    until has_word "$VIEW_RUNNING" "$first"; do
      ((SECONDS < deadline)) ||
        txsim_die 3 "$self is a member of $first's cluster (its data says so) but does not see $first running (running: ${VIEW_RUNNING:-none}): left as it is, not reset. Check both nodes' logs under $CLUSTER_DIR (a partition, or $first's data replaced?)"
      sleep 2
      cluster_view_retry "$n" || txsim_die 3 "$self stopped answering cluster_status: left as it is, not reset; see $(node_dir "$n")/log/"
    done
    return 0
  fi
  if [[ $VIEW_DISK != "$self" ]]; then
    txsim_die 3 "$self already belongs to another cluster (members: ${VIEW_DISK:-unknown}), not $first's: not resetting it, which would drop its data. Check which cluster holds the data you want; '$0 down --purge' starts over"
  fi
  cluster_view_retry 1 || txsim_die 3 "$first did not answer cluster_status: cannot join $self to it; see $(node_dir 1)/log/"
  txsim_say "joining $self to $first"
  # A fresh node alone in its own cluster: reset (it holds nothing) and join. rabbitmqctl prints the joining
  # node's boot warnings on stderr: kept in the node's log folder, not shown.
  log="$(node_dir "$n")/log/join.log"
  {
    nodectl "$n" stop_app &&
      nodectl "$n" reset &&
      nodectl "$n" join_cluster "$first" &&
      nodectl "$n" start_app
  } >"$log" 2>&1 || txsim_die 3 "$self could not join $first: see $log"
}

stop_node() {
  local pid
  if pid=$(pid_of "$1"); then txsim_stop_process "$(node_name "$1")" "$pid" 30 nodectl "$1" shutdown; fi
}

kill_node() {
  local pid
  pid=$(pid_of "$1") || txsim_die 3 "$(node_name "$1") is not running"
  txsim_kill_process "$(node_name "$1")" "$pid"
}

status_line() {
  local n=$1 pid state
  pid=$(pid_of "$n" || printf '-')
  if is_running "$n"; then
    if ! cluster_view "$n"; then
      state='running not-answering-cluster_status'
    elif has_word "$VIEW_RUNNING" "$(node_name 1)" && { [[ $n -eq 1 ]] || has_word "$VIEW_DISK" "$(node_name 1)"; }; then
      state="running in-cluster($(wc -w <<<"$VIEW_RUNNING" | tr -d ' ') running)"
    else
      state='running not-in-cluster'
    fi
  else
    state='stopped'
  fi
  printf '%s pid %s amqp://127.0.0.1:%s http://127.0.0.1:%s %s\n' "$(node_name "$n")" "$pid" "$(amqp_port "$n")" "$(mgmt_port "$n")" "$state"
}

urls() {
  local out='' n
  for n in "${NODES[@]}"; do out+="${out:+,}amqp://guest:guest@127.0.0.1:$(amqp_port "$n")"; done
  printf '%s\n' "$out"
}

main() {
  local cmd=${1:-}
  case $cmd in
    up)
      require_rabbitmq
      for n in "${NODES[@]}"; do start_node "$n"; done
      for n in 2 3; do join_node "$n"; done
      for n in "${NODES[@]}"; do status_line "$n"; done
      ;;
    down)
      require_rabbitmq
      for n in 3 2 1; do stop_node "$n"; done
      if [[ ${2:-} == --purge ]]; then
        rm -rf "$CLUSTER_DIR"
        txsim_say "removed $CLUSTER_DIR"
      fi
      ;;
    status)
      require_rabbitmq
      for n in "${NODES[@]}"; do status_line "$n"; done
      ;;
    urls) urls ;;
    stop)
      require_rabbitmq
      txsim_check_node_arg "${2:-}"
      stop_node "$2"
      ;;
    start)
      require_rabbitmq
      txsim_check_node_arg "${2:-}"
      start_node "$2"
      ;;
    kill)
      require_rabbitmq
      txsim_check_node_arg "${2:-}"
      kill_node "$2"
      ;;
    -h | --help | help) usage ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
}

main "$@"
