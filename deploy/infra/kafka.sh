#!/usr/bin/env bash
# Single-node Apache Kafka (KRaft) on 127.0.0.1:9092 from Apache's jars: up | down | status.
# LEADROUTER_KAFKA_SECURITY_PROTOCOL=SASL_SSL makes its one client listener SASL_SSL with SCRAM
# (the same LEADROUTER_KAFKA_* variables the services read, plus the broker's PEM keystore in
# LEADROUTER_KAFKA_BROKER_KEYSTORE: key then certificate, as deploy/infra/tls.sh writes it).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
STATE="${LEADROUTER_KAFKA_STATE:-$ROOT/.local/kafka}"
PIDFILE="$STATE/kafka.pid"
# The jars are the same for every instance: a second broker (other port and state) reuses them.
LIBS="${LEADROUTER_KAFKA_LIBS:-$ROOT/.local/kafka/libs}"
PORT=${LEADROUTER_KAFKA_PORT:-9092}
CONTROLLER_PORT=${LEADROUTER_KAFKA_CONTROLLER_PORT:-$((PORT + 1))}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
TIMEOUT_S=${KAFKA_START_TIMEOUT_S:-90}
PROTOCOL=${LEADROUTER_KAFKA_SECURITY_PROTOCOL:-PLAINTEXT}
MECHANISM=${LEADROUTER_KAFKA_SASL_MECHANISM:-SCRAM-SHA-512}

say() { echo "[kafka] $*"; }
die() { echo "[kafka] ERROR: $*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

our_pid() {
  [[ -f "$PIDFILE" ]] || return 1
  local pid; pid=$(cat "$PIDFILE")
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# The probe connects as the services do (shared.kafka.client_options: TLS and SASL from the
# same LEADROUTER_KAFKA_* variables), so a broker that answers here answers them.
answers_metadata() {
  [[ -x "$PYTHON" ]] || die "no Python with aiokafka at $PYTHON; run 'make venv' or set PYTHON"
  PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" - "$PORT" <<'PY' >/dev/null 2>&1
import asyncio, sys
from shared.kafka import kafka_reachable
from shared.settings import Settings
ok = asyncio.run(asyncio.wait_for(kafka_reachable(Settings(kafka_bootstrap=f"127.0.0.1:{sys.argv[1]}")), 10))
sys.exit(0 if ok else 1)
PY
}

sasl_secret() {  # the SASL password, from LEADROUTER_KAFKA_SASL_PASSWORD(_FILE)
  if [[ -n "${LEADROUTER_KAFKA_SASL_PASSWORD_FILE:-}" ]]; then tr -d '\n' <"$LEADROUTER_KAFKA_SASL_PASSWORD_FILE"
  else echo -n "${LEADROUTER_KAFKA_SASL_PASSWORD:-}"; fi
}

check_sasl_ssl() {
  [[ "$MECHANISM" == SCRAM-SHA-256 || "$MECHANISM" == SCRAM-SHA-512 ]] \
    || die "this script sets up SCRAM-SHA-256 or SCRAM-SHA-512, not $MECHANISM"
  [[ -n "${LEADROUTER_KAFKA_SASL_USERNAME:-}" && -n "$(sasl_secret)" ]] \
    || die "SASL_SSL needs LEADROUTER_KAFKA_SASL_USERNAME and LEADROUTER_KAFKA_SASL_PASSWORD_FILE"
  [[ -f "${LEADROUTER_KAFKA_SSL_CAFILE:-}" && -f "${LEADROUTER_KAFKA_BROKER_KEYSTORE:-}" ]] \
    || die "SASL_SSL needs LEADROUTER_KAFKA_SSL_CAFILE and LEADROUTER_KAFKA_BROKER_KEYSTORE (PEM files; deploy/infra/tls.sh DIR makes both)"
}

classpath() {
  if [[ -n "${KAFKA_HOME:-}" ]]; then
    [[ -d "$KAFKA_HOME/libs" ]] || die "KAFKA_HOME=$KAFKA_HOME has no libs/ folder; unset it to use Maven's jars"
    say "using Kafka from KAFKA_HOME=$KAFKA_HOME" >&2
    echo "$KAFKA_HOME/libs/*"
    return
  fi
  if [[ ! -f "$LIBS/.complete" ]]; then
    command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch Kafka's jars: apt-get install -y maven"
    say "fetching Apache Kafka's jars from Maven Central into $LIBS (once)" >&2
    rm -rf "$LIBS"
    mvn -q -B -f "$ROOT/deploy/kafka/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$LIBS" -DincludeScope=runtime >&2 \
      || die "Maven could not fetch the Kafka jars (see above); check access to Maven Central"
    touch "$LIBS/.complete"
  fi
  echo "$LIBS/*"
}

write_config() {
  local listener=PLAINTEXT
  [[ "$PROTOCOL" == SASL_SSL ]] && listener=SASL_SSL
  [[ "$PROTOCOL" == PLAINTEXT || "$PROTOCOL" == SASL_SSL ]] \
    || die "this script starts PLAINTEXT or SASL_SSL brokers, not $PROTOCOL"
  ( umask 077; cat >"$STATE/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=$listener://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=$listener://127.0.0.1:$PORT
inter.broker.listener.name=$listener
controller.listener.names=CONTROLLER
listener.security.protocol.map=$listener:$listener,CONTROLLER:PLAINTEXT
log.dirs=$STATE/data
num.partitions=3
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
PROPS
  )
  if [[ "$listener" == SASL_SSL ]]; then
    local mech; mech=$(echo "$MECHANISM" | tr 'A-Z' 'a-z')
    # The broker talks to itself over the same listener, as the SCRAM user the services use.
    cat >>"$STATE/server.properties" <<PROPS
sasl.enabled.mechanisms=$MECHANISM
sasl.mechanism.inter.broker.protocol=$MECHANISM
listener.name.sasl_ssl.$mech.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$LEADROUTER_KAFKA_SASL_USERNAME" password="$(sasl_secret)";
ssl.keystore.type=PEM
ssl.keystore.location=$LEADROUTER_KAFKA_BROKER_KEYSTORE
ssl.truststore.type=PEM
ssl.truststore.location=$LEADROUTER_KAFKA_SSL_CAFILE
ssl.endpoint.identification.algorithm=https
PROPS
  fi
}

up() {
  mkdir -p "$STATE"
  if pid=$(our_pid); then
    if answers_metadata; then say "already running (pid $pid) on 127.0.0.1:$PORT"; return 0; fi
  elif port_open "$PORT" || port_open "$CONTROLLER_PORT"; then
    if port_open "$PORT" && answers_metadata; then
      say "a Kafka that this script did not start answers on 127.0.0.1:$PORT; reusing it"
      return 0
    fi
    die "port $PORT or $CONTROLLER_PORT is taken by something that is not a Kafka answering metadata.
  See what holds it: ss -ltnp 'sport = :$PORT or sport = :$CONTROLLER_PORT'; stop it and run again."
  fi

  if [[ -z "${pid:-}" ]]; then
    local cp; cp=$(classpath)
    command -v java >/dev/null || die "Java 17+ is needed to run Kafka: apt-get install -y openjdk-17-jre-headless"
    [[ "$PROTOCOL" == PLAINTEXT ]] || check_sasl_ssl
    write_config
    if [[ ! -f "$STATE/data/meta.properties" ]]; then
      say "formatting the KRaft storage in $STATE/data"
      local cluster_id; cluster_id=$(java -cp "$cp" kafka.tools.StorageTool random-uuid)
      local scram=()
      # SCRAM users live in the cluster metadata: the first one is written at format time.
      [[ "$PROTOCOL" == SASL_SSL ]] && scram=(--add-scram "$MECHANISM=[name=$LEADROUTER_KAFKA_SASL_USERNAME,password=$(sasl_secret)]")
      java -cp "$cp" kafka.tools.StorageTool format -t "$cluster_id" -c "$STATE/server.properties" "${scram[@]}" >/dev/null
    fi
    say "starting Kafka ($PROTOCOL) on 127.0.0.1:$PORT (log: $STATE/server.log)"
    # Every partition holds a few open files; test runs create many topics.
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    setsid nohup java -Xms256m -Xmx768m -XX:+UseG1GC \
      -Dkafka.logs.dir="$STATE" -Dlog4j2.configurationFile="$ROOT/deploy/kafka/log4j2.properties" \
      -cp "$cp" kafka.Kafka "$STATE/server.properties" >"$STATE/kafka.out" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$PIDFILE"
  fi

  echo -n "[kafka] waiting for the broker to answer metadata requests "
  local waited=0
  until answers_metadata; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo; tail -n 30 "$STATE/kafka.out" "$STATE/server.log" 2>/dev/null >&2
      die "Kafka exited while starting (logs above, in $STATE/)"
    fi
    if (( waited >= TIMEOUT_S )); then
      echo; tail -n 30 "$STATE/server.log" 2>/dev/null >&2
      die "Kafka did not answer within ${TIMEOUT_S}s (set KAFKA_START_TIMEOUT_S to wait longer)"
    fi
    echo -n "."; sleep 1; waited=$((waited + 1))
  done
  echo " ready"
}

down() {
  local pid
  if ! pid=$(our_pid); then say "not running (nothing started by this script)"; rm -f "$PIDFILE"; return 0; fi
  say "stopping pid $pid"
  kill -TERM "$pid"
  for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || { rm -f "$PIDFILE"; say "stopped"; return 0; }; sleep 1; done
  say "did not stop in 30s; killing"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$PIDFILE"
}

status() {
  if pid=$(our_pid); then say "running (pid $pid) on 127.0.0.1:$PORT"
  elif port_open "$PORT"; then say "something not started by this script listens on 127.0.0.1:$PORT"
  else say "stopped"; fi
}

case "${1:-}" in
  up) up ;; down) down ;; status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
