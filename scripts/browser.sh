#!/usr/bin/env bash
# Makes Chromium available for the browser tests (test/browser/, the `browser` vitest project) and
# scripts/bench-chart.mjs. Idempotent: nothing happens when it is already there.
#
#   (a) $TXSIM_CHROMIUM (default /usr/bin/chromium) exists           -> leave it alone;
#   (b) Debian/Ubuntu as root                                        -> apt-get install Debian's `chromium` package;
#   (c) otherwise                                                    -> say exactly what to install, exit 3.
# playwright-core drives that binary; nothing here (or in npm install) downloads a browser of its own.
#
# Environment: TXSIM_CHROMIUM (path of the binary), TXSIM_SERVICES_NO_INSTALL=1 (check only, as --check).
# Exit codes (txsim's): 0 Chromium is there, 2 usage, 3 it is missing and could not be installed.
set -euo pipefail

TXSIM_SCRIPT=browser
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

check_only=${TXSIM_SERVICES_NO_INSTALL:-0}
case "${1:-}" in
  '') ;;
  --check) check_only=1 ;;
  -h | --help)
    echo 'Usage: scripts/browser.sh [--check]   (installs Debian'"'"'s chromium as root when /usr/bin/chromium is missing)'
    exit 0
    ;;
  *) txsim_die 2 "unknown argument: $1 (usage: scripts/browser.sh [--check])" ;;
esac

chromium=${TXSIM_CHROMIUM:-/usr/bin/chromium}
if [[ -x $chromium ]]; then
  txsim_say "Chromium: $chromium ($("$chromium" --version 2>/dev/null || echo 'version unknown'))"
  exit 0
fi

how="install Debian's chromium package as root (apt-get install -y chromium), or set TXSIM_CHROMIUM to a Chromium binary"
if [[ $check_only == 1 ]]; then
  txsim_die 3 "Chromium: not found at $chromium (--check: installing nothing); $how"
fi
if [[ $chromium != /usr/bin/chromium ]]; then
  txsim_die 3 "Chromium: not found at TXSIM_CHROMIUM=$chromium; fix the path, or unset it to use Debian's /usr/bin/chromium"
fi
if ! command -v apt-get >/dev/null 2>&1; then
  txsim_die 3 "Chromium: not found at $chromium, and this is not Debian/Ubuntu (no apt-get); $how"
fi
if [[ $(id -u) != 0 ]]; then
  txsim_die 3 "Chromium: not found at $chromium, and installing it with apt-get needs root: sudo apt-get install -y chromium"
fi

log=$(mktemp -t txsim-browser-XXXXXX.log)
txsim_say "Chromium: installing Debian's chromium with apt-get (log: $log)"
if ! { DEBIAN_FRONTEND=noninteractive apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; } >"$log" 2>&1; then
  tail -n 20 "$log" >&2
  txsim_die 3 "Chromium: apt-get install chromium failed (log: $log)"
fi
[[ -x $chromium ]] || txsim_die 3 "Chromium: apt-get installed chromium but $chromium is still missing (log: $log)"
txsim_say "Chromium: installed $("$chromium" --version 2>/dev/null || echo "$chromium")"
