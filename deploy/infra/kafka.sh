#!/usr/bin/env bash
# Single-node Apache Kafka 4.1.1 in KRaft mode (broker + controller in one JVM) for development and tests.
#
#   deploy/infra/kafka.sh up       start it (idempotent), wait until it answers a metadata request
#   deploy/infra/kafka.sh down     stop the broker this script started
#   deploy/infra/kafka.sh status   one line: running or stopped
#
# Broker on 127.0.0.1:9092, controller on 127.0.0.1:9093, all state in .local/kafka/.
# Environment:
#   KAFKA_HOME             use $KAFKA_HOME/libs/* (an unpacked Apache Kafka release) instead of Maven's jars
#   PYTHON                 a Python with aiokafka, for the readiness check (default: .venv/bin/python)
#   KAFKA_START_TIMEOUT_S  how long `up` waits for the broker to answer (default 60)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE="$ROOT/.local/kafka"
LIBS="$STATE/libs"
DATA="$STATE/data"
CONFIG="$STATE/server.properties"
PIDFILE="$STATE/kafka.pid"
OUT="$STATE/kafka.out"
LOG="$STATE/server.log"
LOG4J="$ROOT/deploy/kafka/log4j2.properties"
POM="$ROOT/deploy/kafka/pom.xml"
HOST=127.0.0.1
PORT=9092
CONTROLLER_PORT=9093
BOOTSTRAP="$HOST:$PORT"
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
TIMEOUT_S=${KAFKA_START_TIMEOUT_S:-60}
STOP_TIMEOUT_S=30
SELF="deploy/infra/kafka.sh"

say() { echo "[kafka] $*"; }
die() { echo "[kafka] ERROR: $*" >&2; exit 1; }

[[ "$TIMEOUT_S" =~ ^[0-9]+$ ]] || die "KAFKA_START_TIMEOUT_S must be a whole number of seconds (got '$TIMEOUT_S'); fix or unset it"

# Something listens on this TCP port (any address: 127.0.0.1, 0.0.0.0 or ::).
listening() {
  if command -v ss >/dev/null; then
    [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]
  else
    timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
  fi
}

# "users:((...pid=...))" for whoever listens on the port, when ss can tell (it needs root for other users' processes).
holder() {
  command -v ss >/dev/null || return 0
  ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:(.*)' | head -n 1 || true
}

# Alive and not a zombie.
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]
}

# The pid of the broker this script started, if it still runs (guards against a recycled pid).
our_pid() {
  local pid cmdline
  [[ -f "$PIDFILE" ]] || return 1
  pid=$(<"$PIDFILE")
  [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid" || return 1
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ "$cmdline" == *"kafka.Kafka $CONFIG"* ]] || return 1
  echo "$pid"
}

check_python() {
  [[ -x "$PYTHON" ]] || die "no Python at $PYTHON for the readiness check.
  Create the project's virtualenv ('make venv'), or point PYTHON at a Python that has aiokafka
  (e.g. PYTHON=/path/to/venv/bin/python $SELF up)."
  "$PYTHON" -c 'import aiokafka' 2>/dev/null || die "$PYTHON cannot import aiokafka, which the readiness check uses.
  Install it ('$PYTHON -m pip install aiokafka', or 'make venv'), or point PYTHON at a Python that has it."
}

# The broker answers a metadata request (bounded: about 10 s at most).
PROBE='
import asyncio, sys
from aiokafka.admin import AIOKafkaAdminClient

async def probe(bootstrap):
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await asyncio.wait_for(admin.start(), 5)
        await asyncio.wait_for(admin.list_topics(), 5)
    finally:
        try:
            await admin.close()
        except Exception:
            pass

asyncio.run(probe(sys.argv[1]))
'
answers() { timeout 15 "$PYTHON" -c "$PROBE" "$BOOTSTRAP" >/dev/null 2>&1; }

log_tail() {
  local f
  for f in "$OUT" "$LOG"; do
    [[ -s "$f" ]] || continue
    echo "----- last lines of ${f#"$ROOT/"} -----" >&2
    tail -n 25 "$f" >&2
  done
  echo "-----" >&2
}

# Sets CP, the broker's classpath.
classpath() {
  if [[ -n "${KAFKA_HOME:-}" ]]; then
    compgen -G "$KAFKA_HOME/libs/kafka_2.13-*.jar" >/dev/null || die "KAFKA_HOME=$KAFKA_HOME has no libs/kafka_2.13-*.jar.
  Point KAFKA_HOME at an unpacked Apache Kafka 4.x release, or unset it to use the jars fetched by Maven."
    say "using Kafka's jars from KAFKA_HOME=$KAFKA_HOME"
    CP="$KAFKA_HOME/libs/*"
    return
  fi
  if [[ ! -f "$LIBS/.complete" ]]; then
    command -v mvn >/dev/null || die "Maven (mvn) is needed once to fetch Kafka's jars.
  Install it (apt-get install -y maven), or set KAFKA_HOME to an unpacked Apache Kafka 4.x release."
    local partial="$STATE/libs.partial" started=$SECONDS
    say "fetching Apache Kafka 4.1.1 and its dependencies from Maven Central into .local/kafka/libs (once)"
    rm -rf "$partial"
    if ! mvn -q -B -f "$POM" dependency:copy-dependencies \
        -DoutputDirectory="$partial" -DincludeScope=runtime >"$STATE/mvn.log" 2>&1; then
      tail -n 30 "$STATE/mvn.log" >&2
      die "Maven could not fetch Kafka's jars (output above, all of it in .local/kafka/mvn.log).
  Check that Maven Central is reachable (proxies go in ~/.m2/settings.xml), then run '$SELF up' again;
  or set KAFKA_HOME to an unpacked Apache Kafka 4.x release."
    fi
    compgen -G "$partial/kafka_2.13-*.jar" >/dev/null \
      || die "Maven finished but fetched no kafka_2.13 jar; see .local/kafka/mvn.log and $POM, then run '$SELF up' again"
    touch "$partial/.complete"
    rm -rf "$LIBS"
    mv "$partial" "$LIBS"
    say "fetched $(find "$LIBS" -name '*.jar' | wc -l) jars in $((SECONDS - started)) s"
  fi
  CP="$LIBS/*"
}

check_java() {
  command -v java >/dev/null || die "Java 17 or newer is needed to run Kafka 4.
  Install it (apt-get install -y openjdk-17-jre-headless), then run '$SELF up' again."
  local version
  version=$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ && !found {print $2; found = 1}')
  [[ "${version%%.*}" =~ ^[0-9]+$ ]] && (( ${version%%.*} >= 17 )) || die "Kafka 4 needs Java 17 or newer, but 'java' is version ${version:-unknown} ($(command -v java)).
  Install openjdk-17-jre-headless (or newer) and put it first on PATH, then run '$SELF up' again."
}

write_config() {
  cat >"$CONFIG.tmp" <<PROPS
# Written by $SELF on every start; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$DATA
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
num.partitions=3
auto.create.topics.enable=false
PROPS
  mv "$CONFIG.tmp" "$CONFIG"
}

java_tool() {
  java -Dkafka.logs.dir="$STATE" -Dlog4j2.configurationFile="$LOG4J" -cp "$CP" "$@"
}

format_storage() {
  [[ -f "$DATA/meta.properties" ]] && return 0
  say "formatting the KRaft storage in .local/kafka/data (once)"
  local cluster_id output
  cluster_id=$(java_tool kafka.tools.StorageTool random-uuid 2>&1 | tail -n 1) \
    && [[ "$cluster_id" =~ ^[A-Za-z0-9_-]{22}$ ]] \
    || die "could not generate a cluster id with kafka.tools.StorageTool (it said: $cluster_id).
  Check the jars in ${CP%/\*} (delete .local/kafka/libs to fetch them again), then run '$SELF up' again."
  output=$(java_tool kafka.tools.StorageTool format -t "$cluster_id" -c "$CONFIG" 2>&1) || {
    echo "$output" >&2
    die "formatting .local/kafka/data failed (output above).
  If .local/kafka/data holds something else, move it away or delete it, then run '$SELF up' again."
  }
}

start_broker() {
  say "starting Kafka on $BOOTSTRAP (controller $HOST:$CONTROLLER_PORT; log .local/kafka/server.log, stdout/stderr .local/kafka/kafka.out)"
  rm -f "$PIDFILE"
  : >"$OUT"
  # A new session (setsid) and nohup: the broker outlives this shell and ignores its terminal's hangup and Ctrl-C.
  # The launcher writes its own pid, then exec's into nohup, which exec's into java: the pid file names the JVM.
  (cd "$STATE" && setsid bash -c 'echo $$ >"$1"; shift; exec nohup "$@"' kafka-launcher "$PIDFILE" \
    java -Xms256m -Xmx768m \
      -Dkafka.logs.dir="$STATE" -Dlog4j2.configurationFile="$LOG4J" \
      -cp "$CP" kafka.Kafka "$CONFIG" \
    >>"$OUT" 2>&1 </dev/null &)
  local i
  for i in $(seq 1 50); do
    [[ -s "$PIDFILE" ]] && break
    sleep 0.1
  done
  [[ -s "$PIDFILE" ]] || die "the broker's launcher did not write .local/kafka/kafka.pid; see .local/kafka/kafka.out, then run '$SELF up' again"
  say "broker pid $(<"$PIDFILE")"
}

wait_ready() {
  local pid=$1 started=$SECONDS
  printf '[kafka] waiting up to %ss for %s to answer a metadata request ' "$TIMEOUT_S" "$BOOTSTRAP"
  while :; do
    if answers; then
      echo " ready ($((SECONDS - started)) s)"
      return 0
    fi
    if ! alive "$pid"; then
      echo
      log_tail
      rm -f "$PIDFILE"
      die "the broker (pid $pid) exited while starting; the log above (.local/kafka/kafka.out, .local/kafka/server.log) says why.
  Fix the cause, then run '$SELF up' again."
    fi
    if (( SECONDS - started >= TIMEOUT_S )); then
      echo
      log_tail
      die "the broker (pid $pid) did not answer on $BOOTSTRAP within ${TIMEOUT_S} s; it is still running.
  Look at the log above; wait longer with KAFKA_START_TIMEOUT_S=120 $SELF up, or stop it with '$SELF down'."
    fi
    printf '.'
    sleep 1
  done
}

up() {
  mkdir -p "$STATE"
  check_python
  local pid
  if pid=$(our_pid); then
    if answers; then
      say "already running (pid $pid) on $BOOTSTRAP"
      return 0
    fi
    say "the broker started earlier (pid $pid) runs but does not answer yet"
    wait_ready "$pid"
    return 0
  fi
  rm -f "$PIDFILE"

  if listening "$PORT"; then
    if answers; then
      say "port $PORT is held by a Kafka that this script did not start ($(holder "$PORT")); it answers metadata requests on $BOOTSTRAP, so reusing it"
      say "(to run this script's own broker instead, stop that one first; '$SELF down' leaves it alone)"
      return 0
    fi
    die "port $PORT on $HOST is taken by a process that does not answer as Kafka ($(holder "$PORT")).
  Find it with: ss -ltnp 'sport = :$PORT'   then stop it (or free the port) and run '$SELF up' again."
  fi
  if listening "$CONTROLLER_PORT"; then
    die "port $CONTROLLER_PORT (the KRaft controller's) on $HOST is taken by another process ($(holder "$CONTROLLER_PORT")).
  Find it with: ss -ltnp 'sport = :$CONTROLLER_PORT'   then stop it (or free the port) and run '$SELF up' again."
  fi

  classpath
  check_java
  write_config
  format_storage
  start_broker
  wait_ready "$(<"$PIDFILE")"
}

down() {
  local pid i
  if ! pid=$(our_pid); then
    rm -f "$PIDFILE"
    if listening "$PORT"; then
      say "not running; port $PORT is held by a process this script did not start ($(holder "$PORT")), left alone"
    else
      say "not running"
    fi
    return 0
  fi
  say "stopping the broker (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT_S * 2; i++)); do
    alive "$pid" || break
    sleep 0.5
  done
  if alive "$pid"; then
    say "still running after ${STOP_TIMEOUT_S} s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 20; i++)); do
      alive "$pid" || break
      sleep 0.5
    done
    alive "$pid" && die "pid $pid survived SIGKILL; see 'ps -o pid,stat,args -p $pid', then run '$SELF down' again"
  fi
  rm -f "$PIDFILE"
  say "stopped"
}

status() {
  local pid
  if pid=$(our_pid); then
    say "running (pid $pid) on $BOOTSTRAP, controller $HOST:$CONTROLLER_PORT, data .local/kafka/data"
  elif listening "$PORT"; then
    say "stopped (not started by this script); another process listens on $BOOTSTRAP ($(holder "$PORT"))"
  else
    say "stopped ($BOOTSTRAP is free)"
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $SELF up|down|status" >&2; exit 2 ;;
esac
