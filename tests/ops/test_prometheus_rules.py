"""Alert and recording rules: valid for promtool, each alert covered by a promtool unit test."""

import shutil
import subprocess

import yaml

from shared.settings import REPO_ROOT

PROMETHEUS = REPO_ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS / "tests").glob("*.test.yml"))


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert shutil.which("promtool"), "promtool missing: make infra-up installs Debian's prometheus"
    return subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=PROMETHEUS)


def test_rules_pass_promtool_check():
    result = promtool("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass():
    result = promtool("test", "rules", *map(str, TEST_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_and_a_runbook():
    alerts = {}
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    alerts[rule["alert"]] = rule
    tested = {
        case["alertname"]
        for path in TEST_FILES
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts, "no alert rules found"
    assert set(alerts) - tested == set(), "alerts without a firing unit test"
    for name, rule in alerts.items():
        assert rule["annotations"].get("runbook"), f"{name} has no runbook"
        assert rule["labels"]["severity"] in {"page", "ticket"}


def test_the_shipped_prometheus_config_is_valid():
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
