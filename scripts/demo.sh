#!/usr/bin/env bash
# One-command demo: a local Synapse with Boardroom plugged in and two users to log in as.
#
#   scripts/demo.sh            # Ctrl-C stops everything
#
# Environment:
#   DEMO_HS_PORT     homeserver client port      (default 8008)
#   DEMO_AS_PORT     Boardroom appservice port   (default 9009)
#   DEMO_LOG_LEVEL   Boardroom log level         (default info)
#   BOARDROOM_CACHE  where the venv and demo state live (default ~/.cache/boardroom)
#   CARGO_TARGET_DIR cargo's target dir          (default ~/.cache/boardroom/target)
#   BOARDROOM_BIN    use this boardroom binary instead of building one
#
# State is kept in $BOARDROOM_CACHE/demo between runs: a second run restarts the same
# homeserver, users and boards. Delete that directory to start over.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${BOARDROOM_CACHE:-$HOME/.cache/boardroom}"
DEMO="$CACHE/demo"
HS_PORT="${DEMO_HS_PORT:-8008}"
AS_PORT="${DEMO_AS_PORT:-9009}"
LOG_LEVEL="${DEMO_LOG_LEVEL:-info}"
SERVER_NAME=localhost
PASSWORD=demo-password
USERS=(alice bob)

# Same pin and path as scripts/setup.sh.
SYNAPSE_VERSION="$(sed -n 's/^SYNAPSE_VERSION=//p' "$ROOT/scripts/setup.sh")"
VENV="${BOARDROOM_SYNAPSE_VENV:-$CACHE/synapse-$SYNAPSE_VERSION}"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/boardroom/target}"
case "$CARGO_TARGET_DIR" in /*) ;; *) CARGO_TARGET_DIR="$ROOT/$CARGO_TARGET_DIR" ;; esac
BIN="${BOARDROOM_BIN:-$CARGO_TARGET_DIR/debug/boardroom}"

HS_URL="http://127.0.0.1:$HS_PORT"
AS_URL="http://127.0.0.1:$AS_PORT"
SYNAPSE_PID=""
BOARDROOM_PID=""

if [ -t 2 ]; then BOLD=$'\033[1m' RED=$'\033[1;31m' PLAIN=$'\033[0m'; else BOLD="" RED="" PLAIN=""; fi
say() { printf '%sdemo:%s %s\n' "$BOLD" "$PLAIN" "$*" >&2; }
fail() { printf '%sdemo: %s%s\n' "$RED" "$*" "$PLAIN" >&2; exit 1; }

port_free() { # can something listen on 127.0.0.1:$1 ?
    python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
}

# shellcheck disable=SC2317 # reached through the EXIT trap
stop_pid() { # SIGTERM, then SIGKILL after 15 s
    local pid="$1" name="$2"
    if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
        return 0
    fi
    say "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    say "$name did not stop in 15 s: killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317
cleanup() {
    trap - EXIT INT TERM
    stop_pid "$BOARDROOM_PID" boardroom
    stop_pid "$SYNAPSE_PID" synapse
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- 0. nothing else on our ports ------------------------------------------------------
command -v python3 >/dev/null || fail "python3 is needed (apt-get install python3 python3-venv)"
command -v curl >/dev/null || fail "curl is needed (apt-get install curl)"
[ -n "${BOARDROOM_BIN:-}" ] || command -v cargo >/dev/null ||
    fail "cargo is needed: install Rust (https://rustup.rs), then run this again"
for port in "$HS_PORT" "$AS_PORT"; do
    port_free "$port" || fail "port $port on 127.0.0.1 is in use (another demo still running?).
      Stop whatever listens there (ss -ltnp 'sport = :$port'), or choose other ports:
      DEMO_HS_PORT=$((HS_PORT + 10000)) DEMO_AS_PORT=$((AS_PORT + 10000)) $0"
done

# ---- 1. dependencies and build ---------------------------------------------------------
say "checking dependencies (scripts/setup.sh)"
"$ROOT/scripts/setup.sh"
if [ -z "${BOARDROOM_BIN:-}" ]; then
    say "building boardroom (cargo build, target dir $CARGO_TARGET_DIR)"
    (cd "$ROOT" && cargo build --bin boardroom)
fi
[ -x "$BIN" ] || fail "$BIN is missing or not executable"

# ---- 2. demo configuration -------------------------------------------------------------
mkdir -p "$DEMO/synapse"
if [ ! -f "$DEMO/secrets.env" ]; then
    say "first run: creating tokens in $DEMO/secrets.env"
    token() { python3 -c 'import secrets;print(secrets.token_urlsafe(32))'; }
    (
        umask 077
        cat >"$DEMO/secrets.env.new" <<EOF
AS_TOKEN=$(token)
HS_TOKEN=$(token)
SHARED_SECRET=$(token)
API_TOKEN=$(token)
EOF
    )
    mv "$DEMO/secrets.env.new" "$DEMO/secrets.env"
fi
# shellcheck source=/dev/null
. "$DEMO/secrets.env"
# Demo state from before the API existed has no client token yet.
if [ -z "${API_TOKEN:-}" ]; then
    API_TOKEN="$(python3 -c 'import secrets;print(secrets.token_urlsafe(32))')"
    echo "API_TOKEN=$API_TOKEN" >>"$DEMO/secrets.env"
fi

# Rewritten on every run (same tokens) so that changed ports take effect.
cat >"$DEMO/boardroom.toml" <<EOF
# Written by scripts/demo.sh on every run: edit the script or its variables, not this file.
[homeserver]
url = "$HS_URL"
server_name = "$SERVER_NAME"

[appservice]
id = "boardroom"
listen = "127.0.0.1:$AS_PORT"
url = "$AS_URL"
as_token = "$AS_TOKEN"
hs_token = "$HS_TOKEN"
bot_localpart = "boardroom"
namespace_prefix = "boardroom_"

[database]
path = "$DEMO/boardroom.db"

[permissions]
board_creators = ["@*:$SERVER_NAME"]

[logging]
level = "$LOG_LEVEL"
format = "pretty"

[[api.clients]]
name = "demo"
token = "$API_TOKEN"
boards = ["*"]
EOF
chmod 600 "$DEMO/boardroom.toml"

"$BIN" registration --config "$DEMO/boardroom.toml" >"$DEMO/registration.yaml.new"
chmod 600 "$DEMO/registration.yaml.new"
mv "$DEMO/registration.yaml.new" "$DEMO/registration.yaml"

# ---- 3. Synapse ------------------------------------------------------------------------
say "starting Synapse $SYNAPSE_VERSION on $HS_URL"
# The database stays on disk (not /dev/shm) so the demo survives a reboot.
"$VENV/bin/python" "$ROOT/scripts/synapse.py" run \
    --dir "$DEMO/synapse" --port "$HS_PORT" --server-name "$SERVER_NAME" \
    --registration "$DEMO/registration.yaml" --shared-secret "$SHARED_SECRET" \
    --database "$DEMO/synapse/homeserver.db" \
    >>"$DEMO/synapse/console.log" 2>&1 &
SYNAPSE_PID=$!

synapse_failed() {
    echo "---- tail of $DEMO/synapse/homeserver.log" >&2
    tail -n 30 "$DEMO/synapse/homeserver.log" >&2 2>/dev/null || true
    echo "---- tail of $DEMO/synapse/console.log" >&2
    tail -n 15 "$DEMO/synapse/console.log" >&2 || true
    fail "$1"
}
for i in $(seq 1 600); do
    curl -sf -o /dev/null "$HS_URL/_matrix/client/versions" && break
    kill -0 "$SYNAPSE_PID" 2>/dev/null || synapse_failed "Synapse exited during start-up"
    [ "$i" -lt 600 ] || synapse_failed "Synapse did not answer within 60 s"
    sleep 0.1
done

for user in "${USERS[@]}"; do
    "$VENV/bin/python" "$ROOT/scripts/synapse.py" register --url "$HS_URL" \
        --shared-secret "$SHARED_SECRET" --user "$user" --password "$PASSWORD" >/dev/null
done

# ---- 4. Boardroom ----------------------------------------------------------------------
say "starting Boardroom on $AS_URL"
"$BIN" serve --config "$DEMO/boardroom.toml" >>"$DEMO/boardroom.log" 2>&1 &
BOARDROOM_PID=$!
for i in $(seq 1 300); do
    code="$(curl -s -o /dev/null -w '%{http_code}' -X POST -d '{}' "$AS_URL/_matrix/app/v1/ping" || true)"
    [ "$code" != 000 ] && break
    if ! kill -0 "$BOARDROOM_PID" 2>/dev/null || [ "$i" -eq 300 ]; then
        echo "---- tail of $DEMO/boardroom.log" >&2
        tail -n 30 "$DEMO/boardroom.log" >&2 || true
        fail "Boardroom did not start"
    fi
    sleep 0.1
done

# ---- 5. ready --------------------------------------------------------------------------
cat <<EOF

  Boardroom demo is running.

  Homeserver:  $HS_URL
               In any Matrix client (Element Web or Desktop, ...), choose "Sign in",
               edit the homeserver and enter $HS_URL
  Users:       ${USERS[0]} and ${USERS[1]}  (@${USERS[0]}:$SERVER_NAME, @${USERS[1]}:$SERVER_NAME)
  Password:    $PASSWORD

  The bot is   @boardroom:$SERVER_NAME
               Start a direct chat with it and send  !help
               then  !board create demo Demo board  and, in its rooms,  !task new Try it

  HTTP API:    $AS_URL/_boardroom/api/v1/openapi.json (docs/API.md)
               client token $API_TOKEN, acting as X-Boardroom-User: <name>

  Logs:        Boardroom  $DEMO/boardroom.log
               Synapse    $DEMO/synapse/homeserver.log
  State:       $DEMO  (kept between runs; delete it to start over)

  Press Ctrl-C to stop.

EOF

# ---- 6. wait until Ctrl-C or until one of them exits -----------------------------------
set +e
wait -n "$SYNAPSE_PID" "$BOARDROOM_PID"
status=$?
set -e
if ! kill -0 "$SYNAPSE_PID" 2>/dev/null; then
    fail "Synapse exited (status $status): see $DEMO/synapse/homeserver.log"
fi
fail "Boardroom exited (status $status): see $DEMO/boardroom.log"
