"""PostgreSQL over verified TLS: `?ssl=verify-full` and PGSSLROOTCERT, plaintext refused.

The server is the tests' own (deploy/infra/postgres.sh on port 25432, state in
.local/postgres-tls) with a certificate from deploy/infra/tls.sh and TLS-only pg_hba rules.
"""

import subprocess

import asyncpg
import pytest
from sqlalchemy import text

from shared.db import make_engine
from shared.migrate import upgrade_async
from shared.settings import REPO_ROOT
from tests.secure_infra import POSTGRES_PORT, STATE, infra, make_certificates, postgres_env, start

# One worker takes the module (its server is started once) and the other secure-infra module:
# both write the certificates in .local/tls-tests.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("secure_infra")]

URL = f"postgresql+asyncpg://leadrouter:leadrouter@127.0.0.1:{POSTGRES_PORT}/leadrouter"


@pytest.fixture(scope="module")
def tls_postgres():
    env = postgres_env()
    start("postgres", env, POSTGRES_PORT, "LEADROUTER_TEST_TLS_POSTGRES_PORT")
    yield make_certificates()
    infra("postgres", "down", env)


async def test_migrations_and_queries_run_over_verified_tls(tls_postgres, monkeypatch):
    monkeypatch.setenv("PGSSLROOTCERT", str(tls_postgres / "ca.pem"))
    await upgrade_async(f"{URL}?ssl=verify-full")
    engine = make_engine(f"{URL}?ssl=verify-full")
    try:
        async with engine.connect() as conn:
            over_tls = await conn.scalar(
                text("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
            )
            version = await conn.scalar(text("select version_num from alembic_version"))
    finally:
        await engine.dispose()
    assert over_tls is True
    assert version  # migrated over the same TLS connection settings


@pytest.fixture
def other_ca():
    """A CA that did not sign the server's certificate."""
    folder = STATE / "tls-tests-other"
    subprocess.run([REPO_ROOT / "deploy/infra/tls.sh", folder], check=True, capture_output=True)
    return folder / "ca.pem"


async def test_plaintext_and_an_untrusted_certificate_are_refused(
    tls_postgres, other_ca, monkeypatch
):
    dsn = f"postgresql://leadrouter:leadrouter@127.0.0.1:{POSTGRES_PORT}/leadrouter"
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="no encryption"):
        await asyncpg.connect(dsn, ssl="disable")
    monkeypatch.setenv("PGSSLROOTCERT", str(other_ca))
    with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
        await asyncpg.connect(dsn, ssl="verify-full")
