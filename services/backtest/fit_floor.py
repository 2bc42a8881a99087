"""Pure calibration of the playbook's fit floor (`taxonomy.qualification.min_fit`).

The total score lets a lead with no fit qualify on behaviour alone; sales' verdicts by fit
band say whether such leads are worth a rep's time. The fit of a past handoff is read from
its recorded explanation (the `fit:` lines scoring wrote), so no rescoring is needed.
"""

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from services.backtest.compare import band_row, wilson
from services.backtest.simulate import HistoryEvent, Judgement

FIT_RULE_PREFIX = "fit:"


def fit_at_handoff(history: Iterable[HistoryEvent]) -> dict[str, float]:
    """Each lead's fit score at its first handoff (the one `judgements` judges), by lead key."""
    fits: dict[str, float] = {}
    for event in history:
        h = event.handoff
        if h is None or event.handoff_kind != "assigned" or h.lead_key in fits:
            continue
        fits[h.lead_key] = sum(
            line.points for line in h.explanation if line.rule.startswith(FIT_RULE_PREFIX)
        )
    return fits


def fit_bands(
    judged: dict[str, Judgement], fits: dict[str, float], band_width: int = 10
) -> list[dict[str, Any]]:
    """Acceptance and conversion of the judged handoffs by fit band, lowest band first."""
    bands: dict[int, list[Judgement]] = defaultdict(list)
    for key, j in judged.items():
        if key in fits:
            bands[int(fits[key] // band_width) * band_width].append(j)
    return [band_row(f"{low} to {low + band_width - 1}", low, bands[low]) for low in sorted(bands)]


def suggest_min_fit(
    judged: dict[str, Judgement],
    fits: dict[str, float],
    bands: list[dict[str, Any]],
    accept_goal: float,
    band_width: int = 10,
) -> dict[str, Any]:
    """The fit floor that drops only the lowest fit bands sales clearly turns down.

    Going up from the lowest band, a band is dropped while even its 95% interval's upper
    bound of the share accepted is below `accept_goal`; the floor is the top of the last band
    dropped. Thin evidence therefore never drops a band (nor an empty one above the last
    dropped), and a poor band above a good one is not cut.
    """
    dropped_bands = 0
    while dropped_bands < len(bands) and bands[dropped_bands]["acceptance_95"][1] < accept_goal:
        dropped_bands += 1
    if not bands:
        return {"min_fit": None, "why": "no judged handoff with a recorded fit"}
    if dropped_bands == 0:
        return {
            "min_fit": None,
            "why": "the lowest fit band is not clearly below the goal, so a floor would drop "
            "leads sales accepts",
        }
    if dropped_bands == len(bands):
        return {
            "min_fit": None,
            "why": "every fit band is clearly below the goal, so a fit floor alone cannot reach it",
        }
    floor = bands[dropped_bands - 1]["low"] + band_width
    keys = [k for k in judged if k in fits]
    kept = [judged[k] for k in keys if fits[k] >= floor]
    dropped = [judged[k] for k in keys if fits[k] < floor]
    accepted_kept = sum(j.accepted for j in kept)
    accepted_dropped = sum(j.accepted for j in dropped)
    return {
        "min_fit": floor,
        "why": f"handoffs with fit below {floor} are accepted clearly less than the goal",
        "handoffs_kept": len(kept),
        "acceptance_kept": round(accepted_kept / len(kept), 4),
        "acceptance_kept_95": list(wilson(accepted_kept, len(kept))),
        "handoffs_dropped": len(dropped),
        "acceptance_dropped": round(accepted_dropped / len(dropped), 4),
        "converted_dropped": sum(1 for j in dropped if j.converted_to),
        "confidence": "high" if len(dropped) >= 100 else "medium" if len(dropped) >= 30 else "low",
    }


def calibrate_fit(
    judged: dict[str, Judgement],
    fits: dict[str, float],
    accept_goal: float,
    current_min_fit: float | None = None,
    band_width: int = 10,
) -> dict[str, Any]:
    """Sales' verdicts by fit band and the suggested `min_fit`, ready for the report."""
    bands = fit_bands(judged, fits, band_width)
    return {
        "bands": bands,
        "current_min_fit": current_min_fit,
        "judged_handoffs_with_fit": sum(1 for k in judged if k in fits),
        "suggestion": suggest_min_fit(judged, fits, bands, accept_goal, band_width),
    }
