"""A SASL_SSL Kafka and a TLS-only PostgreSQL of the tests' own, started with the project's scripts.

Each lives on its own port and state folder under .local/ (never the shared 9092 / 5432
instances), with a CA and server certificate that deploy/infra/tls.sh makes. `up` is
idempotent (a running instance is reused); the fixtures stop what they started.
"""

import os
import socket
import subprocess
from pathlib import Path

from shared.settings import REPO_ROOT

STATE = REPO_ROOT / ".local"
TLS_DIR = STATE / "tls-tests"
# Fixed ports (a cluster's port is written into its state when it is created, hence a state
# folder per port); override them when something else already listens there.
KAFKA_PORT = int(os.environ.get("LEADROUTER_TEST_SASL_KAFKA_PORT", "29092"))
POSTGRES_PORT = int(os.environ.get("LEADROUTER_TEST_TLS_POSTGRES_PORT", "25432"))
SASL_USER = "leadrouter"


def make_certificates() -> Path:
    """The test CA (ca.pem) and the server certificate for 127.0.0.1 (server.pem, .crt, .key)."""
    subprocess.run([REPO_ROOT / "deploy/infra/tls.sh", TLS_DIR], check=True, capture_output=True)
    password = TLS_DIR / "sasl-password"
    if not password.exists():
        password.write_text("sasl-test-secret\n")
    return TLS_DIR


def kafka_env() -> dict[str, str]:
    tls = make_certificates()
    return {
        "LEADROUTER_KAFKA_PORT": str(KAFKA_PORT),
        "LEADROUTER_KAFKA_STATE": str(STATE / f"kafka-sasl-{KAFKA_PORT}"),
        "LEADROUTER_KAFKA_BOOTSTRAP": f"127.0.0.1:{KAFKA_PORT}",
        "LEADROUTER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "LEADROUTER_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "LEADROUTER_KAFKA_SASL_USERNAME": SASL_USER,
        "LEADROUTER_KAFKA_SASL_PASSWORD_FILE": str(tls / "sasl-password"),
        "LEADROUTER_KAFKA_SSL_CAFILE": str(tls / "ca.pem"),
        "LEADROUTER_KAFKA_BROKER_KEYSTORE": str(tls / "server.pem"),
    }


def postgres_env() -> dict[str, str]:
    tls = make_certificates()
    return {
        "LEADROUTER_POSTGRES_PORT": str(POSTGRES_PORT),
        "LEADROUTER_POSTGRES_STATE": str(STATE / f"postgres-tls-{POSTGRES_PORT}"),
        "LEADROUTER_POSTGRES_SSL_CERTFILE": str(tls / "server.crt"),
        "LEADROUTER_POSTGRES_SSL_KEYFILE": str(tls / "server.key"),
    }


def port_taken(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port."""
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def infra(script: str, action: str, env: dict[str, str]) -> None:
    """Run deploy/infra/<script>.sh up|down with these variables; fail with its output."""
    result = subprocess.run(
        [REPO_ROOT / "deploy" / "infra" / f"{script}.sh", action],
        env={**os.environ, "PYTHON": str(REPO_ROOT / ".venv/bin/python"), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode:
        raise AssertionError(f"{script}.sh {action} failed:\n{result.stdout}\n{result.stderr}")


def start(script: str, env: dict[str, str], port: int, variable: str) -> None:
    """Start our instance (reused when it runs).

    A server that is not ours on the port (the scripts would reuse any that answers) fails
    the test with what to do, rather than testing someone else's configuration.
    """
    state = Path(env[f"LEADROUTER_{script.upper()}_STATE"])
    ours = (state / "kafka.pid").exists() or (state / "data" / "postmaster.pid").exists()
    if port_taken(port) and not ours:
        raise AssertionError(
            f"127.0.0.1:{port} is taken by a server these tests did not start; "
            f"set {variable} to a free port"
        )
    infra(script, "up", env)
