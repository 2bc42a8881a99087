"""Kubernetes manifests: schema-valid offline, and consistent with the services they run."""

import kubernetes_validate
import pytest
import yaml

from services.cli import SERVICES
from shared.kafka import LEAD_EVENTS, LEAD_LIFECYCLE
from shared.playbook import load_playbook
from shared.settings import REPO_ROOT, Settings

K8S = REPO_ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.33"
DOCS = [
    doc
    for name in yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    for doc in yaml.safe_load_all((K8S / name).read_text())
]


def of_kind(kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in DOCS if d["kind"] == kind}


@pytest.mark.parametrize(
    "doc",
    [d for d in DOCS if "keda.sh" not in d["apiVersion"]],
    ids=lambda d: f"{d['kind']}/{d['metadata']['name']}",
)
def test_manifest_is_valid_for_kubernetes(doc):
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_each_service_runs_its_command_on_its_port_with_both_probes():
    deployments = of_kind("Deployment")
    services = of_kind("Service")
    defaults = Settings()
    for name, (_, port_field, _) in SERVICES.items():
        (container,) = deployments[f"leadrouter-{name}"]["spec"]["template"]["spec"]["containers"]
        port = getattr(defaults, port_field)
        assert container["args"] == [name]
        assert container["ports"][0]["containerPort"] == port
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["resources"]["requests"] and container["resources"]["limits"]
        assert services[f"leadrouter-{name}"]["spec"]["ports"][0]["port"] == port


def test_pods_run_as_non_root():
    for deployment in of_kind("Deployment").values():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["containers"][0]["securityContext"]["allowPrivilegeEscalation"] is False


def test_disruption_budgets_select_their_deployments():
    deployments = of_kind("Deployment")
    for name, pdb in of_kind("PodDisruptionBudget").items():
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_keda_scales_consumers_on_their_own_group_and_topic():
    defaults = Settings()
    topics = {"scoring": defaults.topic(LEAD_EVENTS), "handoff": defaults.topic(LEAD_LIFECYCLE)}
    scaled = of_kind("ScaledObject")
    assert set(scaled) == {f"leadrouter-{n}" for n in topics}
    for service, topic in topics.items():
        spec = scaled[f"leadrouter-{service}"]["spec"]
        assert spec["scaleTargetRef"]["name"] in of_kind("Deployment")
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "kafka"
        assert trigger["metadata"]["consumerGroup"] == defaults.consumer_group(service)
        assert trigger["metadata"]["topic"] == topic
        assert spec["maxReplicaCount"] <= defaults.topic_partitions  # idle members beyond that


def test_config_sets_only_real_settings_and_the_playbook_is_the_example():
    fields = {f"LEADROUTER_{name.upper()}" for name in Settings.model_fields}
    for doc in DOCS:
        if doc["kind"] in {"ConfigMap", "Secret"}:
            data = doc.get("data") or doc.get("stringData")
            assert set(data) <= fields, set(data) - fields
    shipped = K8S / "playbook.yaml"
    load_playbook(shipped)
    assert shipped.read_text() == (REPO_ROOT / "deploy" / "playbook.example.yaml").read_text(), (
        "deploy/k8s/playbook.yaml differs from the example; copy deploy/playbook.example.yaml"
    )
