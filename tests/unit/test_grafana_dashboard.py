"""The Grafana dashboard: well-formed, and every query names only metrics that exist."""

import importlib
import json
import re

import yaml
from prometheus_client import REGISTRY

from shared.settings import REPO_ROOT

DASHBOARD = json.loads((REPO_ROOT / "deploy" / "grafana" / "leadrouter.json").read_text())
SERVICE_APPS = ("services.ingest.app", "services.scoring.app", "services.handoff.app")
SUFFIXES = {
    "counter": ["_total"],
    "histogram": ["_bucket", "_count", "_sum"],
    "gauge": [""],
    "info": ["_info"],
    "summary": ["", "_count", "_sum"],
    "unknown": [""],
}


def known_series() -> set[str]:
    """Every sample name the services export, plus the recording rules' names."""
    for module in SERVICE_APPS:
        importlib.import_module(module)  # metrics register at import
    names = {
        family.name + suffix
        for family in REGISTRY.collect()
        for suffix in SUFFIXES.get(family.type, [""])
    }
    for path in (REPO_ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names |= {rule["record"] for rule in group["rules"] if "record" in rule}
    return names


def test_every_query_names_existing_metrics_only():
    known = known_series()
    for panel in DASHBOARD["panels"]:
        for target in panel["targets"]:
            used = set(re.findall(r"leadrouter[a-z0-9_:]*", target["expr"]))
            assert used, f"{panel['title']}: query names no leadrouter metric"
            assert used <= known, f"{panel['title']}: unknown {sorted(used - known)}"


def test_panels_are_laid_out_and_use_the_datasource_variable():
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    assert DASHBOARD["templating"]["list"][0]["name"] == "datasource"
    for panel in DASHBOARD["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
