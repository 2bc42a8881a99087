"""The pipeline over a SASL_SSL broker (SCRAM-SHA-512, a CA of the test's own), and refusals.

The broker (deploy/infra/kafka.sh on port 29092, state in .local/kafka-sasl) has only a
SASL_SSL listener, so everything that works here went through TLS and SASL.
"""

import json
from pathlib import Path

import httpx
import pytest

from shared.kafka import HANDOFFS, kafka_reachable
from tests.helpers import minutes_ago, read_topic, start_all
from tests.secure_infra import KAFKA_PORT, SASL_USER, infra, kafka_env, start

# One worker takes the module (its server is started once) and the other secure-infra module:
# both write the certificates in .local/tls-tests.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("secure_infra")]


@pytest.fixture(scope="module")
def sasl_kafka():
    env = kafka_env()
    start("kafka", env, KAFKA_PORT, "LEADROUTER_TEST_SASL_KAFKA_PORT")
    yield env
    infra("kafka", "down", env)


@pytest.fixture
def secured(settings, sasl_kafka):
    """The test's settings pointed at the SASL_SSL broker, as a sales tool would configure."""
    return settings.model_copy(
        update={
            "kafka_bootstrap": f"127.0.0.1:{KAFKA_PORT}",
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": "SCRAM-SHA-512",
            "kafka_sasl_username": SASL_USER,
            "kafka_sasl_password_file": Path(sasl_kafka["LEADROUTER_KAFKA_SASL_PASSWORD_FILE"]),
            "kafka_ssl_cafile": Path(sasl_kafka["LEADROUTER_KAFKA_SSL_CAFILE"]),
        }
    )


async def test_the_whole_pipeline_runs_over_sasl_ssl(secured, services, sasl_kafka):
    for service in services.values():
        service.env.update(sasl_kafka)
    await start_all(services.values())
    events = [
        {
            "id": "tls-1",
            "identity": {"email": "ana@acme.example"},
            "attributes": {"company": "Acme", "country": "DE"},
            "activity": {"type": "pricing_page_view", "occurred_at": minutes_ago(60)},
        },
        {
            "id": "tls-2",
            "identity": {"email": "ana@acme.example"},
            "activity": {"type": "demo_request", "occurred_at": minutes_ago(55)},
        },
    ]
    async with httpx.AsyncClient() as client:
        accepted = await client.post(f"{services['ingest'].url}/v1/events", json=events)
        assert accepted.status_code == 202, accepted.text
    (record,) = await read_topic(secured, secured.topic(HANDOFFS), 1)
    handoff = json.loads(record.value)
    assert handoff["type"] == "leadrouter.handoff.assigned"
    assert handoff["subject"] == "email:ana@acme.example"


async def test_a_client_with_wrong_credentials_or_without_tls_is_refused(secured, tmp_path):
    assert await kafka_reachable(secured)  # the right ones are let in
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password")
    assert not await kafka_reachable(secured.model_copy(update={"kafka_sasl_password_file": wrong}))
    assert not await kafka_reachable(secured.model_copy(update={"kafka_sasl_username": "mallory"}))
    assert not await kafka_reachable(
        secured.model_copy(update={"kafka_security_protocol": "PLAINTEXT"})
    )
