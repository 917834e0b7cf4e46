#!/usr/bin/env bash
# Makes this machine ready to run chat4all, idempotently (a second run does nothing):
#   - PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379: started if installed, installed
#     from Debian's packages if not (skipped when DATABASE_URL / REDIS_URL point elsewhere);
#   - the Kafka-protocol broker nisshi 0.7.0-pre.2, built once into ~/.cache/chat4all/tools
#     (about 12 minutes on 2 cores; skipped when KAFKA_BOOTSTRAP points at an existing Kafka);
#   - tmux, for the dashboard's end-to-end test;
#   - the workspace binaries (cargo build --workspace).
set -euo pipefail
cd "$(dirname "$0")/.."

NISSHI_VERSION=0.7.0-pre.2
TOOLS=${CHAT4ALL_TOOLS:-$HOME/.cache/chat4all/tools}
say() { printf 'bootstrap: %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 0.5; done
  say "nothing listens on 127.0.0.1:$1 after 30s"; return 1
}

apt_ready=0
apt_install() {
  if [ "$apt_ready" = 0 ]; then
    say "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_ready=1
  fi
  say "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  if [ -n "${DATABASE_URL:-}" ] && [[ "$DATABASE_URL" != *"127.0.0.1:5432"* ]]; then return 0; fi
  port_open 5432 && return 0
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt_install postgresql
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n1)
  local hba=/etc/postgresql/$version/main/pg_hba.conf
  # Local development stack: trust loopback connections, as the README's URLs expect.
  if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  fi
  say "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || pg_ctlcluster "$version" main start
  wait_port 5432
}

ensure_redis() {
  if [ -n "${REDIS_URL:-}" ] && [[ "$REDIS_URL" != *"127.0.0.1:6379"* ]]; then return 0; fi
  port_open 6379 && return 0
  command -v redis-server >/dev/null || apt_install redis-server
  say "starting Redis"
  mkdir -p /var/lib/redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no --dir /var/lib/redis
  wait_port 6379
}

ensure_broker() {
  if [ -n "${KAFKA_BOOTSTRAP:-}" ]; then return 0; fi
  if [ -x "$TOOLS/bin/nisshi" ] && "$TOOLS/bin/nisshi" --version 2>/dev/null | grep -q "$NISSHI_VERSION"; then
    return 0
  fi
  command -v cc >/dev/null || apt_install build-essential
  say "building nisshi $NISSHI_VERSION into $TOOLS (about 12 minutes, once)"
  cargo install "nisshi@$NISSHI_VERSION" --locked --features dynostore,libsql,postgres --root "$TOOLS" --quiet
}

ensure_promtool() {
  # promtool and prometheus (Debian's package) check and unit-test alerts/ and run the alert e2e test.
  command -v promtool >/dev/null && command -v prometheus >/dev/null && return 0
  apt_install --no-install-recommends prometheus
}

ensure_tmux() {
  # tmux runs the dashboard's end-to-end test (tests/tests/tui_e2e.rs) in a real terminal.
  command -v tmux >/dev/null || apt_install tmux
}

ensure_postgres
ensure_redis
ensure_broker
ensure_promtool
ensure_tmux
say "building the workspace"
cargo build --workspace --quiet
say "ready"
