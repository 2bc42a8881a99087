"""Settings: one class a service on a common base, every variable still LEADROUTER_<FIELD>."""

import pytest

from shared.settings import (
    CommonSettings,
    HandoffSettings,
    IngestSettings,
    ScoringSettings,
    Settings,
)

SERVICES = (IngestSettings, ScoringSettings, HandoffSettings)


def test_every_knob_is_common_or_one_services_own() -> None:
    common = set(CommonSettings.model_fields)
    own = [set(cls.model_fields) - common for cls in SERVICES]
    assert set(Settings.model_fields) == common.union(*own)
    for i, fields in enumerate(own):
        for other in own[i + 1 :]:
            assert fields.isdisjoint(other)
    assert "rate_limit_per_s" in own[0] and "scoring_url" in own[2]
    assert "scoring_url" not in IngestSettings.model_fields  # ingest cannot read handoff's


def test_each_class_reads_the_same_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADROUTER_DATABASE_URL", "postgresql+asyncpg://x@db/leads")
    monkeypatch.setenv("LEADROUTER_RATE_LIMIT_PER_S", "7")
    monkeypatch.setenv("LEADROUTER_SCORING_URL", "http://scoring:8001")
    monkeypatch.setenv("LEADROUTER_SCORING_PORT", "9001")
    assert {cls().database_url for cls in (*SERVICES, Settings)} == {
        "postgresql+asyncpg://x@db/leads"
    }
    assert IngestSettings().rate_limit_per_s == Settings().rate_limit_per_s == 7
    assert HandoffSettings().scoring_url == Settings().scoring_url == "http://scoring:8001"
    assert ScoringSettings().scoring_port == Settings().scoring_port == 9001
