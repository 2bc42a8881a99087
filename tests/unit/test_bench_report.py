"""docs/performance.md's figures table is rendered from docs/bench-figures.json (one source)."""

import json

from bench.report import BEGIN, END, figures_table, summarise, with_table
from bench.result import Figure, Result
from shared.settings import REPO_ROOT

DOC = REPO_ROOT / "docs" / "performance.md"
FIGURES = REPO_ROOT / "docs" / "bench-figures.json"


def test_the_performance_page_shows_the_committed_figures() -> None:
    document = DOC.read_text()
    table = figures_table(json.loads(FIGURES.read_text()))
    assert document == with_table(document, table), (
        "docs/performance.md is stale: "
        "run `python -m bench.report docs/bench-figures.json --write docs/performance.md`"
    )
    # One place for the figures: outside the generated table the page quotes none of them.
    outside = document[: document.index(BEGIN)] + document[document.index(END) :]
    assert "events/s" not in outside


def test_a_figure_is_the_median_of_its_runs_with_its_spread_and_target() -> None:
    runs = {
        "scoring": [
            Result("scoring", [Figure("rate", v, "events/s", b, "raw", ("min_ratio", 0.5))])
            for v, b in ((100.0, 400.0), (300.0, 400.0), (200.0, 400.0))
        ]
    }
    (row,) = summarise(runs)
    assert (row["value"], row["min"], row["max"], row["runs"]) == (200.0, 100.0, 300.0, 3)
    assert row["ratio"] == 0.5 and row["met"] is True
    table = figures_table({"source": "test", "figures": [row]})
    assert (
        "| scoring | rate | 200 events/s | 100 - 300 | 400 (raw) | 0.5 | min_ratio 0.5 | yes |"
        in table
    )
