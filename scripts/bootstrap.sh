#!/usr/bin/env bash
# Makes this machine ready to run chat4all, idempotently (a second run does nothing):
#   - PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379: started if installed, installed
#     from Debian's packages if not (skipped when DATABASE_URL / REDIS_URL point elsewhere);
#   - a Java 17+ runtime and Maven (Debian's packages) where they are missing, then Apache Kafka
#     (broker and tools) from Maven Central into ~/.cache/chat4all/tools/kafka-<version>/libs,
#     once (about 10 s; scripts/kafka/pom.xml names the artifacts). Installed even when
#     KAFKA_BOOTSTRAP points at an existing Kafka: the tests run Kafka's own tools from it;
#   - tmux, for the dashboard's end-to-end test;
#   - only with CHAT4ALL_DOCKER=1 or --docker (the Docker runtime's tests): Debian's docker.io and
#     docker-compose, and a dockerd started where no engine answers on $DOCKER_HOST (default
#     unix:///var/run/docker.sock). `up` without `--runtime docker` never needs any of it;
#   - the workspace binaries (cargo build --workspace).
set -euo pipefail
cd "$(dirname "$0")/.."

# Keep in step with ctl/src/broker.rs (KAFKA_VERSION) and scripts/kafka/pom.xml.
KAFKA_VERSION=4.1.1
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
  # Several stacks share one server (the tests' own, a cluster's, helpers' at other port
  # offsets), each with a pool per service: 100 connections run out.
  local conf=/etc/postgresql/$version/main/postgresql.conf
  if ! grep -q '^max_connections = 300' "$conf"; then
    sed -i 's/^#\?max_connections = .*/max_connections = 300/' "$conf"
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

java_major() {
  java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1
}

ensure_java() {
  local major
  major=$(command -v java >/dev/null && java_major || echo 0)
  if [ "${major:-0}" -lt 17 ]; then
    apt_install openjdk-17-jre-headless
  fi
  command -v mvn >/dev/null || apt_install maven
}

ensure_kafka() {
  local dir="$TOOLS/kafka-$KAFKA_VERSION"
  [ -f "$dir/installed" ] && return 0
  ensure_java
  say "installing Apache Kafka $KAFKA_VERSION from Maven Central into $dir/libs (once)"
  rm -rf "$dir.partial"
  local log
  log=$(mktemp)
  if ! mvn -B -q -Dstyle.color=never -f scripts/kafka/pom.xml -Dkafka.version="$KAFKA_VERSION" \
    org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$dir.partial/libs" >"$log" 2>&1; then
    cat "$log" >&2
    say "fetching Apache Kafka from Maven Central failed"
    return 1
  fi
  rm -f "$log"
  ls "$dir.partial/libs/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null
  echo "$KAFKA_VERSION" >"$dir.partial/installed"
  rm -rf "$dir"
  mv "$dir.partial" "$dir"
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

docker_answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

ensure_docker() {
  # DESIGN.md section 7: dockerd runs as root here with no iptables (no NAT is needed: nothing is
  # published beyond the host and nothing is pulled); containers talk over a user bridge network.
  # docker-compose is installed even where an engine already answers: the tests run
  # compose/docker-compose.local.yml with it.
  local host=${DOCKER_HOST:-unix:///var/run/docker.sock}
  command -v docker-compose >/dev/null || apt_install docker-compose
  docker_answers && return 0
  command -v dockerd >/dev/null || apt_install docker.io
  docker_answers && return 0
  local log=/var/log/chat4all-dockerd.log
  say "starting dockerd on $host (log $log)"
  # setsid: the engine outlives this script and the shell that ran it.
  setsid dockerd --iptables=false --ip-masq=false --storage-driver=overlay2 -H "$host" \
    >"$log" 2>&1 </dev/null &
  for _ in $(seq 1 60); do docker_answers && return 0; sleep 0.5; done
  tail -n 20 "$log" >&2
  say "dockerd did not answer on $host after 30s"
  return 1
}

want_docker=${CHAT4ALL_DOCKER:-0}
for arg in "$@"; do
  case "$arg" in
    --docker) want_docker=1 ;;
    *) say "unknown argument: $arg (only --docker)"; exit 2 ;;
  esac
done

ensure_postgres
ensure_redis
ensure_kafka
ensure_promtool
ensure_tmux
if [ "$want_docker" = 1 ]; then ensure_docker; fi
say "building the workspace"
cargo build --workspace --quiet
say "ready"
