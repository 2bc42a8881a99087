#!/usr/bin/env bash
# PostgreSQL from Debian's package, in a cluster of its own under .local/postgres, for development and tests.
#
#   deploy/infra/postgres.sh up       start it (idempotent); make sure role and database leadrouter exist
#   deploy/infra/postgres.sh down     stop the cluster this script manages
#   deploy/infra/postgres.sh status   one line: running or stopped
#
# Listens on 127.0.0.1:5432 only (socket in .local/postgres/run), trust authentication: local use only.
# The application connects as postgresql://leadrouter:leadrouter@127.0.0.1:5432/leadrouter.
# Environment: POSTGRES_START_TIMEOUT_S (default 60).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE="$ROOT/.local/postgres"
DATA="$STATE/data"
RUN="$STATE/run"
LOG="$STATE/postgres.log"
HOST=127.0.0.1
PORT=5432
APP_URL="postgresql://leadrouter:leadrouter@$HOST:$PORT/leadrouter"
TIMEOUT_S=${POSTGRES_START_TIMEOUT_S:-60}
SELF="deploy/infra/postgres.sh"

say() { echo "[postgres] $*"; }
die() { echo "[postgres] ERROR: $*" >&2; exit 1; }

[[ "$TIMEOUT_S" =~ ^[0-9]+$ ]] || die "POSTGRES_START_TIMEOUT_S must be a whole number of seconds (got '$TIMEOUT_S'); fix or unset it"

is_root() { [[ $(id -u) -eq 0 ]]; }

# PostgreSQL refuses to run as root: as root, its server tools run as the postgres OS user (from /, which it can enter).
as_pg() {
  if is_root; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

listening() {
  if command -v ss >/dev/null; then
    [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]
  else
    timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
  fi
}

holder() {
  command -v ss >/dev/null || return 0
  ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:(.*)' | head -n 1 || true
}

newest_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    if [[ -x "$d/postgres" ]]; then echo "$d"; fi
  done | sort -V | tail -n 1
}

# Sets BIN: the server binaries matching the cluster's version (or the newest installed for a new cluster).
# With "install", installs Debian's package when none is there; otherwise says so and exits 0.
find_bin() {
  BIN=$(newest_bin)
  if [[ -z "$BIN" && "${1:-}" != install ]]; then
    say "stopped (PostgreSQL is not installed; '$SELF up' installs it)"
    exit 0
  fi
  if [[ -z "$BIN" ]]; then
    is_root || die "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres).
  Install Debian's package: sudo apt-get update && sudo apt-get install -y postgresql   then run '$SELF up' again."
    say "PostgreSQL is not installed; installing Debian's postgresql package (apt-get)"
    if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >"${TMPDIR:-/tmp}/leadrouter-apt-postgresql.log" 2>&1; then
      tail -n 20 "${TMPDIR:-/tmp}/leadrouter-apt-postgresql.log" >&2
      die "apt-get could not install postgresql (output above). Fix apt (network, sources), or run:
  apt-get update && apt-get install -y postgresql   then run '$SELF up' again."
    fi
    BIN=$(newest_bin)
    [[ -n "$BIN" ]] || die "postgresql was installed but no /usr/lib/postgresql/*/bin/postgres exists; check 'dpkg -L postgresql-15', then run '$SELF up' again"
    # The package creates and may start Debian's default cluster on port 5432, which is ours to use.
    if command -v pg_lsclusters >/dev/null; then
      local ver name
      while read -r ver name; do
        say "stopping Debian's default cluster $ver/$name that the package just started on port $PORT"
        pg_ctlcluster "$ver" "$name" stop || true
      done < <(pg_lsclusters -h 2>/dev/null | awk -v p="$PORT" '$3 == p && $4 ~ /online/ {print $1, $2}')
    fi
  fi
  if [[ -s "$DATA/PG_VERSION" ]]; then
    local version
    version=$(<"$DATA/PG_VERSION")
    [[ -x "/usr/lib/postgresql/$version/bin/postgres" ]] || die "the cluster in .local/postgres/data was made by PostgreSQL $version, which is not installed (found $BIN).
  Install it (apt-get install -y postgresql-$version), or delete .local/postgres to start a new, empty cluster."
    BIN="/usr/lib/postgresql/$version/bin"
  fi
}

psql_admin() { PGCONNECT_TIMEOUT=5 "$BIN/psql" -X -q -t -A -h "$HOST" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }
app_answers() { PGCONNECT_TIMEOUT=5 "$BIN/psql" -X -q -t -A "$APP_URL" -c 'select 1' >/dev/null 2>&1; }

# The cluster in .local/postgres/data runs; prints the postmaster's pid.
our_pid() {
  [[ -f "$DATA/postmaster.pid" ]] || return 1
  as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1 || return 1
  head -n 1 "$DATA/postmaster.pid"
}

# Who the postgres OS user cannot enter on the way to $1 (empty if it can reach it).
blocked_dir() {
  local path="" part
  local -a parts
  IFS=/ read -ra parts <<<"${1#/}"
  for part in "${parts[@]}"; do
    path="$path/$part"
    runuser -u postgres -- test -x "$path" 2>/dev/null || { echo "$path"; return 0; }
  done
}

prepare_dirs() {
  mkdir -p "$STATE"
  if is_root; then
    id postgres >/dev/null 2>&1 || die "there is no 'postgres' OS user to run PostgreSQL as (it refuses to run as root).
  Reinstall Debian's package (apt-get install --reinstall -y postgresql-common), then run '$SELF up' again."
    local blocked
    blocked=$(blocked_dir "$STATE")
    if [[ -n "$blocked" ]]; then
      die "the postgres OS user cannot reach .local/postgres: it may not enter $blocked ($(stat -c '%A %U:%G' "$blocked")).
  PostgreSQL refuses to run as root, so this script runs it as 'postgres', which must be able to pass through every folder above $STATE.
  Either allow just that, e.g.  setfacl -m u:postgres:x '$blocked'  (or chmod o+x '$blocked'),
  or put the repository under a path the postgres user can reach (e.g. /srv or /opt); then run '$SELF up' again."
    fi
    if [[ -n $(find "$STATE" ! -user postgres -print -quit) ]]; then
      chown -R postgres:postgres "$STATE"
    fi
  fi
  as_pg mkdir -p "$RUN"
}

# Single quotes doubled, for a postgresql.conf string.
conf_quote() { printf "'%s'" "${1//\'/\'\'}"; }

init_cluster() {
  [[ -s "$DATA/PG_VERSION" ]] && return 0
  if [[ -d "$DATA" && -n $(ls -A "$DATA" 2>/dev/null) ]]; then
    die ".local/postgres/data exists but is not a PostgreSQL cluster (no PG_VERSION).
  Move it away or delete it, then run '$SELF up' again."
  fi
  say "creating a new cluster in .local/postgres/data (once; $("$BIN/postgres" --version))"
  local output
  output=$(as_pg "$BIN/initdb" -D "$DATA" --auth=trust --username=postgres -E UTF8 --locale=C.UTF-8 2>&1) || {
    echo "$output" >&2
    die "initdb failed (output above); fix the cause, delete .local/postgres/data if it was half created, then run '$SELF up' again."
  }
  as_pg tee -a "$DATA/postgresql.conf" >/dev/null <<CONF

# ---- leadrouter: written once by $SELF (a local development cluster; trust authentication) ----
listen_addresses = '$HOST'
port = $PORT
unix_socket_directories = $(conf_quote "$RUN")
max_connections = 200
shared_buffers = 128MB
# fsync stays on (the default): the tests kill services mid-stream and rely on committed data surviving.
CONF
}

start_cluster() {
  # The socket folder is in the configuration; a moved repository would point at the old one.
  grep -qF "unix_socket_directories = $(conf_quote "$RUN")" "$DATA/postgresql.conf" || die "this cluster's postgresql.conf does not use $RUN as its socket folder (was the repository moved?).
  Fix unix_socket_directories in .local/postgres/data/postgresql.conf, or delete .local/postgres for a new cluster; then run '$SELF up' again."
  say "starting PostgreSQL on $HOST:$PORT (log .local/postgres/postgres.log)"
  as_pg "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t "$TIMEOUT_S" start >/dev/null 2>&1 || {
    echo "----- last lines of .local/postgres/postgres.log -----" >&2
    tail -n 25 "$LOG" >&2 || true
    die "PostgreSQL did not start within ${TIMEOUT_S} s; the log above says why. Fix the cause, then run '$SELF up' again."
  }
}

wait_ready() {
  local started=$SECONDS
  printf '[postgres] waiting up to %ss for %s:%s to answer a query ' "$TIMEOUT_S" "$HOST" "$PORT"
  until psql_admin -c 'select 1' >/dev/null 2>&1; do
    if (( SECONDS - started >= TIMEOUT_S )); then
      echo
      tail -n 25 "$LOG" >&2 || true
      die "PostgreSQL did not answer within ${TIMEOUT_S} s (log above); raise POSTGRES_START_TIMEOUT_S or fix the cause, then run '$SELF up' again."
    fi
    printf '.'
    sleep 1
  done
  echo " ready ($((SECONDS - started)) s)"
}

ensure_app_database() {
  psql_admin >/dev/null <<'SQL' || die "could not create role/database leadrouter (error above); fix it, then run '$SELF up' again."
SELECT 'CREATE ROLE leadrouter LOGIN CREATEDB PASSWORD ''leadrouter'''
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'leadrouter')\gexec
ALTER ROLE leadrouter LOGIN CREATEDB PASSWORD 'leadrouter';
SELECT 'CREATE DATABASE leadrouter OWNER leadrouter'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'leadrouter')\gexec
-- The tests drop their databases WITH (FORCE), which must be able to stop an autovacuum worker.
GRANT pg_signal_backend TO leadrouter;
SQL
  app_answers || die "the leadrouter database does not answer at $APP_URL; see .local/postgres/postgres.log, then run '$SELF up' again."
  say "database ready: $APP_URL"
}

up() {
  find_bin install
  local pid
  if pid=$(our_pid); then
    say "already running (pid $pid) on $HOST:$PORT"
    wait_ready
    ensure_app_database
    return 0
  fi

  if listening "$PORT"; then
    if app_answers; then
      say "port $PORT is held by a PostgreSQL that this script did not start ($(holder "$PORT")); $APP_URL answers, so reusing it"
      say "(to run this script's own cluster instead, stop that one first; '$SELF down' leaves it alone)"
      return 0
    fi
    local hint="" debian
    if command -v pg_lsclusters >/dev/null; then
      debian=$(pg_lsclusters -h 2>/dev/null | awk -v p="$PORT" '$3 == p && $4 ~ /online/ && !found {print $1, $2; found = 1}')
      [[ -n "$debian" ]] && hint="
  It is Debian's cluster ${debian/ //}; stop it with: pg_ctlcluster $debian stop   (and keep it off: systemctl disable postgresql)"
    fi
    die "port $PORT on $HOST is taken by a process that is not a PostgreSQL with the leadrouter database ($(holder "$PORT")).$hint
  Find it with: ss -ltnp 'sport = :$PORT'   (Debian's default cluster? pg_ctlcluster 15 main stop), free the port, then run '$SELF up' again."
  fi

  prepare_dirs
  init_cluster
  start_cluster
  wait_ready
  ensure_app_database
}

down() {
  find_bin
  local pid
  if ! pid=$(our_pid); then
    if listening "$PORT"; then
      say "not running; port $PORT is held by a process this script did not start ($(holder "$PORT")), left alone"
    else
      say "not running"
    fi
    return 0
  fi
  say "stopping PostgreSQL (pid $pid, fast shutdown)"
  as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null || die "pg_ctl could not stop the cluster within 60 s.
  See .local/postgres/postgres.log; force it with: runuser -u postgres -- $BIN/pg_ctl -D $DATA -m immediate stop"
  say "stopped"
}

status() {
  find_bin
  local pid
  if pid=$(our_pid); then
    say "running (pid $pid) on $HOST:$PORT, data .local/postgres/data"
  elif listening "$PORT"; then
    say "stopped (not started by this script); another process listens on $HOST:$PORT ($(holder "$PORT"))"
  else
    say "stopped ($HOST:$PORT is free)"
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $SELF up|down|status" >&2; exit 2 ;;
esac
