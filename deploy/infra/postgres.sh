#!/usr/bin/env bash
# PostgreSQL from Debian's package, its own cluster in .local/postgres, on 127.0.0.1:5432: up | down | status.
# With LEADROUTER_POSTGRES_SSL_CERTFILE and _SSL_KEYFILE (PEM) a new cluster takes TLS only:
# connections without TLS are refused (clients: ?ssl=verify-full and PGSSLROOTCERT, see docs/security.md).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
STATE="${LEADROUTER_POSTGRES_STATE:-$ROOT/.local/postgres}"
DATA="$STATE/data"
RUN="$STATE/run"
PORT=${LEADROUTER_POSTGRES_PORT:-5432}
APP_URL="postgresql://leadrouter:leadrouter@127.0.0.1:$PORT/leadrouter"
TIMEOUT_S=${POSTGRES_START_TIMEOUT_S:-60}
# pg_ctl's shutdown mode for `down`: fast (default), smart, or immediate (a crash: recovery on start).
STOP_MODE=${LEADROUTER_POSTGRES_STOP_MODE:-fast}
SSL_CERTFILE=${LEADROUTER_POSTGRES_SSL_CERTFILE:-}
SSL_KEYFILE=${LEADROUTER_POSTGRES_SSL_KEYFILE:-}

say() { echo "[postgres] $*"; }
die() { echo "[postgres] ERROR: $*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

bindir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [[ -z "$dir" || ! -x "$dir/postgres" ]]; then
    if [[ $(id -u) -eq 0 ]]; then
      say "installing Debian's postgresql package" >&2
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) >&2 \
        || die "apt-get could not install postgresql"
      dir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
      # The package may start Debian's default cluster on our port; ours is the one we want.
      pg_ctlcluster "$(basename "$(dirname "$dir")")" main stop >/dev/null 2>&1 || true
    else
      die "PostgreSQL is not installed; run: sudo apt-get install -y postgresql"
    fi
  fi
  echo "$dir"
}

# Postgres refuses to run as root: as root, run its tools as the postgres user.
as_owner() {
  if [[ $(id -u) -eq 0 ]]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

app_answers() { psql "$APP_URL" -qtAc 'select 1' >/dev/null 2>&1; }

running_here() { [[ -f "$DATA/postmaster.pid" ]] && as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

# As root, the server runs as the postgres user, who may not reach a clone under a 0700 home
# (/root): then the data lives under /var/lib/leadrouter/<clone hash>, linked from .local.
place_state() {
  [[ $(id -u) -eq 0 ]] || { mkdir -p "$STATE"; return 0; }
  if [[ -L "$STATE" ]]; then STATE=$(readlink -f "$STATE")
  else
    mkdir -p "$STATE"; chown postgres: "$STATE"
    if ! runuser -u postgres -- test -x "$STATE"; then
      local home; home="/var/lib/leadrouter/$(echo -n "$STATE" | sha1sum | cut -c1-12)/postgres"
      rmdir "$STATE" 2>/dev/null || die "the postgres user cannot reach $STATE, which already holds files.
  Move them away (or chmod o+x every folder above it) and run again."
      mkdir -p "$home"; chown postgres: "$home"
      ln -s "$home" "$STATE"
      say "the postgres user cannot reach $(dirname "$STATE"); the data lives in $home (linked from $STATE)"
      STATE=$home
    fi
  fi
  DATA="$STATE/data"; RUN="$STATE/run"
}

up() {
  BIN=$(bindir)
  place_state
  if running_here; then
    say "already running on 127.0.0.1:$PORT (data: $DATA)"
  elif port_open "$PORT"; then
    if app_answers; then
      say "a PostgreSQL that this script did not start answers on 127.0.0.1:$PORT with the leadrouter database; reusing it"
      return 0
    fi
    die "port $PORT is taken by something else (Debian's default cluster? try: pg_ctlcluster 15 main stop).
  See what holds it: ss -ltnp 'sport = :$PORT'; stop it and run again."
  else
    if [[ ! -f "$DATA/PG_VERSION" ]]; then
      say "creating a cluster in $DATA"
      as_owner mkdir -p "$DATA" "$RUN"
      as_owner "$BIN/initdb" -D "$DATA" --auth=trust --username=postgres -E UTF8 --locale=C.UTF-8 >/dev/null
      cat >>"$DATA/postgresql.conf" <<CONF
# leadrouter development cluster (local only: trust auth on 127.0.0.1)
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$RUN'
max_connections = 200
shared_buffers = 128MB
CONF
      if [[ -n "$SSL_CERTFILE" ]]; then
        [[ -f "$SSL_CERTFILE" && -f "${SSL_KEYFILE:-}" ]] \
          || die "LEADROUTER_POSTGRES_SSL_CERTFILE needs LEADROUTER_POSTGRES_SSL_KEYFILE (PEM files; deploy/infra/tls.sh DIR makes both)"
        say "TLS only: server.crt/server.key copied into the cluster, plaintext connections refused"
        # The server reads its key only when the postgres user owns it with mode 0600.
        cat "$SSL_CERTFILE" | as_owner tee "$DATA/server.crt" >/dev/null
        cat "$SSL_KEYFILE" | as_owner tee "$DATA/server.key" >/dev/null
        as_owner chmod 600 "$DATA/server.key"
        cat >>"$DATA/postgresql.conf" <<CONF
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
ssl_min_protocol_version = 'TLSv1.2'
CONF
        as_owner tee "$DATA/pg_hba.conf" >/dev/null <<HBA
local all all trust
hostssl all all 127.0.0.1/32 trust
hostnossl all all 0.0.0.0/0 reject
HBA
      fi
    fi
    as_owner mkdir -p "$RUN"
    say "starting PostgreSQL on 127.0.0.1:$PORT (log: $STATE/postgres.log)"
    as_owner "$BIN/pg_ctl" -D "$DATA" -l "$STATE/postgres.log" -w -t "$TIMEOUT_S" start >/dev/null \
      || { tail -n 20 "$STATE/postgres.log" >&2; die "PostgreSQL did not start (log above)"; }
  fi

  echo -n "[postgres] waiting for queries "
  local waited=0
  until psql -h 127.0.0.1 -p "$PORT" -U postgres -qtAc 'select 1' >/dev/null 2>&1; do
    (( waited >= TIMEOUT_S )) && { echo; die "PostgreSQL did not accept a query within ${TIMEOUT_S}s"; }
    echo -n "."; sleep 1; waited=$((waited + 1))
  done
  echo " ready"
  psql -h 127.0.0.1 -p "$PORT" -U postgres -qtA -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
SELECT 'CREATE ROLE leadrouter LOGIN CREATEDB PASSWORD ''leadrouter'''
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'leadrouter')\gexec
SELECT 'CREATE DATABASE leadrouter OWNER leadrouter'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'leadrouter')\gexec
-- Tests drop their databases WITH (FORCE), which must be able to stop an autovacuum worker.
GRANT pg_signal_backend TO leadrouter;
SQL
  app_answers || die "the leadrouter database does not answer at $APP_URL"
  say "database leadrouter ready at $APP_URL"
}

down() {
  BIN=$(bindir)
  [[ -L "$STATE" ]] && STATE=$(readlink -f "$STATE") && DATA="$STATE/data" && RUN="$STATE/run"
  if running_here; then
    [[ $STOP_MODE =~ ^(smart|fast|immediate)$ ]] || die "LEADROUTER_POSTGRES_STOP_MODE must be smart, fast or immediate"
    as_owner "$BIN/pg_ctl" -D "$DATA" -m "$STOP_MODE" -w stop >/dev/null && say "stopped ($STOP_MODE)"
  else
    say "not running (nothing started by this script)"
  fi
}

status() {
  BIN=$(bindir)
  [[ -L "$STATE" ]] && STATE=$(readlink -f "$STATE") && DATA="$STATE/data" && RUN="$STATE/run"
  if running_here; then say "running on 127.0.0.1:$PORT (data: $DATA)"
  elif port_open "$PORT"; then say "something not started by this script listens on 127.0.0.1:$PORT"
  else say "stopped"; fi
}

case "${1:-}" in
  up) up ;; down) down ;; status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
