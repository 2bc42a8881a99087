"""What can be checked of docker-compose.yml and the Dockerfile without a Docker engine."""

import yaml

from services.cli import SERVICES
from shared.settings import REPO_ROOT, Settings

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def test_compose_runs_every_service_on_its_documented_port():
    defaults = Settings()
    for name, (_, port_field, _) in SERVICES.items():
        service = COMPOSE["services"][name]
        port = getattr(defaults, port_field)
        assert service["command"] == [name]
        assert f"{port}:{port}" in service["ports"]


def test_compose_only_sets_settings_that_exist():
    fields = {f"LEADROUTER_{name.upper()}" for name in Settings.model_fields}
    for name in SERVICES:
        env = COMPOSE["services"][name]["environment"]
        assert set(env) <= fields, set(env) - fields
        assert env["LEADROUTER_DATABASE_URL"].startswith("postgresql+asyncpg://")


def test_compose_waits_for_healthy_infrastructure():
    for name in SERVICES:
        depends = COMPOSE["services"][name]["depends_on"]
        assert depends == {
            "kafka": {"condition": "service_healthy"},
            "postgres": {"condition": "service_healthy"},
        }
    assert "healthcheck" in COMPOSE["services"]["kafka"]
    assert "healthcheck" in COMPOSE["services"]["postgres"]


def test_dockerfile_runs_as_non_root():
    lines = (REPO_ROOT / "deploy" / "Dockerfile").read_text().splitlines()
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in {"root", "0"}


def test_compose_builds_from_the_dockerfile_under_deploy_and_kafka_runs_kraft():
    for name in SERVICES:
        build = COMPOSE["services"][name]["build"]
        assert (REPO_ROOT / build["context"] / build["dockerfile"]).is_file()
    kafka = COMPOSE["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_compose_prometheus_scrapes_every_service():
    prometheus = COMPOSE["services"]["prometheus"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    config = yaml.safe_load((REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {
        t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    }
    defaults = Settings()
    assert targets == {
        f"{name}:{getattr(defaults, field)}" for name, (_, field, _) in SERVICES.items()
    }


def test_compose_wires_prometheus_rules_alertmanager_and_grafana():
    config = yaml.safe_load((REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    assert list((REPO_ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
    (manager,) = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert manager.split(":")[0] in COMPOSE["services"]
    routing = yaml.safe_load(
        (REPO_ROOT / "deploy" / "alertmanager" / "alertmanager.yml").read_text()
    )
    receivers = {r["name"] for r in routing["receivers"]}
    assert routing["route"]["receiver"] in receivers
    assert {r["receiver"] for r in routing["route"]["routes"]} <= receivers
    grafana = COMPOSE["services"]["grafana"]
    for volume in grafana["volumes"]:
        assert (REPO_ROOT / volume.split(":")[0]).exists()
    datasource = yaml.safe_load(
        (REPO_ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
