#!/usr/bin/env bash
# The whole test suite: unit tests, then integration tests against a live local stack
# (real PostgreSQL, Redis and Kafka broker) started here in its own data directory and database.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh

export CHAT4ALL_HOME=${CHAT4ALL_TEST_HOME:-$PWD/target/test-stack}
export DATABASE_URL=${CHAT4ALL_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/chat4all_test}
# Its own ports and Redis database, so a development stack on the defaults keeps running beside it.
export CHAT4ALL_PORT_OFFSET=${CHAT4ALL_TEST_PORT_OFFSET:-500}
export REDIS_URL=${CHAT4ALL_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}
CTL=$PWD/target/debug/chat4allctl

"$CTL" down >/dev/null 2>&1 || true
rm -rf "$CHAT4ALL_HOME"
# A fresh database too: the broker's data went with the data directory, and a database left by
# an earlier run would point the relay at a topic generation the new broker does not have.
db_name=${DATABASE_URL##*/}
db_name=${db_name%%\?*}
psql "${DATABASE_URL%/*}/postgres" -qc "DROP DATABASE IF EXISTS \"$db_name\" WITH (FORCE)"
# And its own Redis database emptied (rebalance timeline and assignment reports of earlier runs).
redis-cli -u "$REDIS_URL" FLUSHDB >/dev/null
trap '"$CTL" down >/dev/null 2>&1 || true' EXIT

echo "== unit tests"
cargo test --workspace --exclude chat4all-tests

echo "== starting the stack in $CHAT4ALL_HOME"
"$CTL" up --detach

echo "== integration tests"
cargo test -p chat4all-tests --tests -- --test-threads=4 --skip repartition --skip docker_runtime

# Last: it changes the stack for good (more partitions, a new topic generation).
echo "== repartition under traffic"
cargo test -p chat4all-tests --test repartition

# A three-broker cluster on its own stack (ports +700, target/cluster-stack, its own database);
# the test takes its stack down itself. The default stack is stopped first: two cores.
echo "== three-broker cluster (kill the leader of chat-events-0 under 1,000 msg/s)"
"$CTL" down >/dev/null
cargo test -p chat4all-tests --test cluster -- --ignored

# The docker runtime on a real engine (its own stack: Compose project, data directory, database,
# ports); bootstrap installs and starts dockerd only when asked.
echo "== docker runtime"
scripts/bootstrap.sh --docker
cargo test -p chat4all-tests --test docker
