"""docs/reference/ is what `python -m services.reference --write` generates from the code."""

import pytest

from services.reference import DOCS, PAGES, settings_classes
from shared.settings import Settings


@pytest.mark.parametrize("page", sorted(PAGES))
def test_the_committed_reference_page_is_what_the_code_generates(page: str) -> None:
    committed = (DOCS / page).read_text()
    assert committed == PAGES[page](), (
        f"docs/reference/{page} is stale: run `python -m services.reference --write`"
    )


def test_every_setting_has_its_variable_on_the_settings_page() -> None:
    page = PAGES["settings.md"]()
    assert Settings in settings_classes()
    for cls in settings_classes():
        prefix = str(cls.model_config.get("env_prefix", ""))
        for name in cls.model_fields:
            variable = (prefix + name).upper()
            if name.endswith("_file") and name.removesuffix("_file") in cls.model_fields:
                variable = variable.removesuffix("_FILE")  # listed as "(or `_FILE`)"
            assert f"`{variable}`" in page, variable


def test_every_exported_metric_is_on_the_metrics_page() -> None:
    page = PAGES["metrics.md"]()
    for name in ("leadrouter_ingest_requests_total", "leadrouter_consumer_lag_messages"):
        assert f"`{name}`" in page
