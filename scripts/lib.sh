# shellcheck shell=bash
# Shared bash helpers for scripts/*.sh. Source it; it defines functions and sets nothing else.
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Every helper is bounded in time (no probe or wait can hang a script) and none prints a URL's password.

# Prints a status line on stdout, prefixed with the calling script's name.
txsim_say() {
  printf '%s: %s\n' "${TXSIM_SCRIPT:-txsim}" "$*"
}

# Prints a warning or error line on stderr.
txsim_warn() {
  printf '%s: %s\n' "${TXSIM_SCRIPT:-txsim}" "$*" >&2
}

# Prints an error on stderr and exits with the given code (txsim's own exit codes: 2 usage, 3 service unreachable).
txsim_die() {
  local code=$1
  shift
  txsim_warn "$*"
  exit "$code"
}

# Decodes %XX escapes (URL user names and passwords may contain them).
txsim_urldecode() {
  local s=${1//\\/\\\\}
  printf '%b' "${s//%/\\x}"
}

# Splits URL into URL_SCHEME URL_USER URL_PASSWORD URL_HOST URL_PORT (globals), using DEFAULT_PORT when the
# URL has none. Returns 1 when the URL has no scheme or a port that is not a number.
# Handles user:password@host:port, [ipv6]:port and a trailing /path?query#fragment.
# shellcheck disable=SC2034 # the URL_* globals are this function's output
txsim_parse_url() {
  local url=$1 default_port=$2 rest auth hostport
  URL_SCHEME='' URL_USER='' URL_PASSWORD='' URL_HOST='' URL_PORT=''
  [[ $url == *://* ]] || return 1
  URL_SCHEME=${url%%://*}
  rest=${url#*://}
  rest=${rest%%[/?#]*}
  if [[ $rest == *@* ]]; then
    auth=${rest%@*}
    hostport=${rest##*@}
  else
    auth=''
    hostport=$rest
  fi
  if [[ $auth == *:* ]]; then
    URL_USER=$(txsim_urldecode "${auth%%:*}")
    URL_PASSWORD=$(txsim_urldecode "${auth#*:}")
  else
    URL_USER=$(txsim_urldecode "$auth")
  fi
  if [[ $hostport == \[* ]]; then
    URL_HOST=${hostport%%]*}
    URL_HOST=${URL_HOST#[}
    URL_PORT=${hostport#*]}
    URL_PORT=${URL_PORT#:}
  elif [[ $hostport == *:* ]]; then
    URL_HOST=${hostport%%:*}
    URL_PORT=${hostport##*:}
  else
    URL_HOST=$hostport
  fi
  URL_HOST=${URL_HOST:-127.0.0.1}
  URL_PORT=${URL_PORT:-$default_port}
  [[ $URL_PORT =~ ^[0-9]{1,5}$ ]] && ((URL_PORT >= 1 && URL_PORT <= 65535))
}

# The URL with its password replaced by ***, for messages.
txsim_redact_url() {
  local url=$1
  if [[ $url =~ ^([a-zA-Z][a-zA-Z0-9+.-]*://[^:/?#@]*):[^/?#]*@(.*)$ ]]; then
    printf '%s:***@%s' "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
  else
    printf '%s' "$url"
  fi
}

# host:port for messages, with brackets around an IPv6 address.
txsim_endpoint() {
  if [[ $1 == *:* ]]; then printf '[%s]:%s' "$1" "$2"; else printf '%s:%s' "$1" "$2"; fi
}

# True when HOST is this machine (the only hosts a script may start or install a service for).
txsim_is_local_host() {
  case $1 in
    localhost | 127.* | ::1 | 0.0.0.0 | ::) return 0 ;;
    *) return 1 ;;
  esac
}

# True when something accepts a TCP connection on HOST PORT within ~3 s. Uses bash's /dev/tcp (no nc needed);
# falls back to node where coreutils' `timeout` is missing (macOS), since an unanswered connect can hang for minutes.
txsim_port_open() {
  local host=$1 port=$2
  if command -v timeout >/dev/null 2>&1; then
    # shellcheck disable=SC2016 # $1 and $2 expand in the child bash, not here
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$host" "$port" 2>/dev/null
  else
    node -e '
      const s = require("node:net").connect({ host: process.argv[1], port: Number(process.argv[2]) });
      s.setTimeout(3000, () => process.exit(1));
      s.on("connect", () => process.exit(0));
      s.on("error", () => process.exit(1));' "$host" "$port" 2>/dev/null
  fi
}

# Runs COMMAND... once a second until it succeeds or SECONDS_MAX pass. Returns 1 on timeout.
txsim_wait_until() {
  local seconds_max=$1
  shift
  local deadline=$((SECONDS + seconds_max))
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 1
  done
}

# Runs COMMAND... with a time limit of SECONDS_MAX where coreutils' `timeout` exists, else without one.
txsim_bounded() {
  local seconds_max=$1
  shift
  if command -v timeout >/dev/null 2>&1; then
    timeout "$seconds_max" "$@"
  else
    "$@"
  fi
}

# Stops process PID (named NAME in the message): runs the given polite stop command, or sends SIGTERM when
# there is none or it fails, waits up to SECONDS for the process to go, then SIGKILLs it.
#   txsim_stop_process NAME PID SECONDS [stop command...]
txsim_stop_process() {
  local name=$1 pid=$2 seconds=$3 i
  shift 3
  txsim_say "stopping $name"
  if (($# == 0)) || ! "$@" >/dev/null 2>&1; then kill -TERM "$pid" 2>/dev/null || true; fi
  for ((i = 0; i < seconds * 2; i++)); do
    txsim_pid_alive "$pid" || return 0
    sleep 0.5
  done
  kill -9 "$pid" 2>/dev/null || true
}

# kill -9 of process PID (named NAME in the message): a crash, for the fault scripts.
txsim_kill_process() {
  txsim_say "kill -9 $1 (pid $2)"
  kill -9 "$2"
}

# Is process PID alive? A killed process that its parent has not reaped yet (a zombie) is not.
txsim_pid_alive() {
  [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

# For the cluster scripts: exits 2 with the script's usage unless $1 is a node number 1..3.
# Needs the calling script's usage function.
txsim_check_node_arg() {
  [[ ${1:-} =~ ^[123]$ ]] || {
    usage >&2
    exit 2
  }
}
