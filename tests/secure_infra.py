"""A SASL_SSL Kafka and a TLS-only PostgreSQL of the tests' own, started with the project's scripts.

Each lives on its own port and state folder under .local/ (never the shared 9092 / 5432
instances), with a CA and server certificate that deploy/infra/tls.sh makes. `up` is
idempotent (a running instance is reused); the fixtures stop what they started.
"""

import os
import subprocess
from pathlib import Path

from shared.settings import REPO_ROOT

STATE = REPO_ROOT / ".local"
TLS_DIR = STATE / "tls-tests"
KAFKA_PORT = 29092
POSTGRES_PORT = 25432
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
        "LEADROUTER_KAFKA_STATE": str(STATE / "kafka-sasl"),
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
        "LEADROUTER_POSTGRES_STATE": str(STATE / "postgres-tls"),
        "LEADROUTER_POSTGRES_SSL_CERTFILE": str(tls / "server.crt"),
        "LEADROUTER_POSTGRES_SSL_KEYFILE": str(tls / "server.key"),
    }


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
