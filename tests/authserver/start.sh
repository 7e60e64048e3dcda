#!/usr/bin/env bash
# Starts the test authorization server (server.mjs, panva's oidc-provider) in
# the background and leaves it running.
#
# Usage:   bash tests/authserver/start.sh
#          eval "$(bash tests/authserver/start.sh)"   # sets ISSUER and PID
#
# Stdout (only these two lines, shell-evaluable):
#   ISSUER=http://127.0.0.1:PORT
#   PID=N                 (the node process; stop it with: kill "$PID")
# Exit status: 0 when the server printed READY; non-zero otherwise, with the
# tail of the log on stderr (and the half-started server killed).
#
# Environment:
#   AUTHSERVER_PORT       fixed port (default: an ephemeral one)
#   AUTHSERVER_LOG        server log file (default /tmp/mailtoken-authserver.log)
#   AUTHSERVER_TTL        access-token lifetime in seconds (default 3600)
#   AUTHSERVER_SHORT_TTL  access-token lifetime of native-short/google-short (default 6)
#   NODE                  node binary (default: node; needs Node.js >= 20.18)
#
# Installs node_modules with `npm ci` first when it is missing or older than
# package-lock.json (needs the npm registry once).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
log=${AUTHSERVER_LOG:-/tmp/mailtoken-authserver.log}
port=${AUTHSERVER_PORT:-0}
node=${NODE:-node}
timeout_s=30

if ! command -v "$node" >/dev/null 2>&1; then
    echo "start.sh: $node not found (Node.js >= 20.18 is needed)" >&2
    exit 1
fi

if [ ! -d "$here/node_modules/oidc-provider" ] \
    || [ "$here/package-lock.json" -nt "$here/node_modules" ]; then
    echo "start.sh: installing node_modules (npm ci)" >&2
    if ! (cd "$here" && npm ci --no-audit --no-fund >&2); then
        echo "start.sh: npm ci failed" >&2
        exit 1
    fi
    touch "$here/node_modules"
fi

: >"$log"
ready=$(mktemp "${TMPDIR:-/tmp}/mailtoken-authserver-ready.XXXXXX")
trap 'rm -f "$ready"' EXIT

# setsid: the server must not die with the caller's terminal or process group.
setsid "$node" "$here/server.mjs" --port "$port" >"$ready" 2>>"$log" </dev/null &
pid=$!

fail() {
    echo "start.sh: $1" >&2
    echo "---- last lines of $log ----" >&2
    tail -n 40 "$log" >&2 || true
    kill "$pid" 2>/dev/null || true
    exit 1
}

deadline=$((SECONDS + timeout_s))
issuer=
while [ "$SECONDS" -lt "$deadline" ]; do
    if line=$(grep -m1 '^READY ' "$ready" 2>/dev/null); then
        issuer=${line#READY }
        break
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
        fail "the server exited before it was ready"
    fi
    sleep 0.1
done
[ -n "$issuer" ] || fail "no READY line within ${timeout_s}s"

echo "ISSUER=$issuer"
echo "PID=$pid"
