"""Write a backtest or calibration as Markdown with PNG charts, plus JSON for machines.

The charts need matplotlib, which the services do not: it comes with the `reports` extra
(`pip install 'leadrouter[reports]'`). Without it the reports are written without charts.
"""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

ReadFigure = Callable[[dict[str, Any]], Any]
NO_CHARTS = "(No charts: they need matplotlib, `pip install 'leadrouter[reports]'`.)"


def _pyplot() -> Any:
    """matplotlib's pyplot drawing to files only, or None when the reports extra is missing."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _compared(tiers: list[str]) -> list[tuple[str, ReadFigure]]:
    """The side-by-side table's rows: each label with how to read it from one side's result."""

    def tier_mqls(tier: str) -> ReadFigure:
        return lambda r: r["mqls_per_tier"].get(tier, 0)

    return [
        ("MQLs", lambda r: r["mqls"]),
        ("leads that qualified", lambda r: r["leads_qualified"]),
        *[(f"MQLs {tier}", tier_mqls(tier)) for tier in tiers],
        ("hours first touch to MQL (median / p90)", lambda r: _pair(r["hours_first_touch_to_mql"])),
        ("peak handoffs in one hour", lambda r: r["peak_handoffs_per_hour"]),
        ("handoffs that waited in a queue", lambda r: r["queued"]),
        ("judged leads that qualify", lambda r: r["sales"]["judged_leads_that_qualify"]),
        ("share of MQLs sales accepted", lambda r: r["sales"]["accepted_share"]),
        ("share of MQLs that converted", lambda r: r["sales"]["converted_share"]),
        ("converted leads missed", lambda r: len(r["sales"]["converted_missed"])),
        ("converted leads delayed", lambda r: len(r["sales"]["converted_delayed"])),
        ("open handoffs whose lead rose in tier", lambda r: r["after_handoff"]["tier_raises"]),
        ("accept SLA breaches", lambda r: r["after_handoff"]["accept_breaches"]),
        ("reassigned / escalated", lambda r: _after(r, "reassigned", "escalated")),
        (
            "manager-queue warnings / breaches",
            lambda r: _after(r, "manager_queue_warnings", "manager_queue_breaches"),
        ),
        ("stale reminders", lambda r: r["after_handoff"]["stale_reminders"]),
        ("routed again at a revisit date", lambda r: r["after_handoff"]["revisited"]),
        ("held back by a reject policy", lambda r: r["after_handoff"]["suppressed"]),
    ]


def _after(r: dict[str, Any], a: str, b: str) -> str:
    return f"{r['after_handoff'][a]} / {r['after_handoff'][b]}"


def write_backtest(result: dict[str, Any], folder: Path, scores: dict[str, list[int]]) -> Path:
    """report.md, report.json and the charts in `folder`; returns the Markdown file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(result, indent=2, default=str))
    a, b = result["baseline"], result["candidate"]
    tiers = sorted(set(a["mqls_per_tier"]) | set(b["mqls_per_tier"]))
    plt = _pyplot()
    if plt is not None:
        _weekly_chart(plt, a["mqls_per_week"], b["mqls_per_week"], folder / "mqls_per_week.png")
        _score_chart(plt, scores, result["mql_threshold"], folder / "scores.png")
    charts = (
        ["![MQLs per week](mqls_per_week.png)", "", "![Score distribution](scores.png)"]
        if plt is not None
        else [NO_CHARTS]
    )
    lines = [
        "# Playbook backtest",
        "",
        f"Window: {result['window']['since'] or 'all history'} to "
        f"{result['window']['until'] or 'now'}; {a['events']} events replayed through the "
        "scoring and routing cores at event time.",
        "",
        "| | baseline | candidate |",
        "| --- | ---: | ---: |",
        _row(
            "MQL threshold",
            result["mql_threshold"]["baseline"],
            result["mql_threshold"]["candidate"],
        ),
        *[_row(name, read(a), read(b)) for name, read in _compared(tiers)],
        "",
        *charts,
        "",
        "## Handoffs per team and rep",
        "",
        "| rep | baseline | candidate | capacity |",
        "| --- | ---: | ---: | ---: |",
    ]
    reps = sorted(set(a["handoffs_per_rep"]) | set(b["handoffs_per_rep"]))
    for rep in reps:
        ra, rb = a["handoffs_per_rep"].get(rep, {}), b["handoffs_per_rep"].get(rep, {})
        cap = ra.get("capacity") or rb.get("capacity") or ""
        lines.append(f"| {rep} | {ra.get('handoffs', 0)} | {rb.get('handoffs', 0)} | {cap} |")
    lines += _recycled_lines(a["after_handoff"], b["after_handoff"])
    lines += _campaign_lines(result.get("by_campaign"))
    for side in ("only_baseline", "only_candidate"):
        lines += [
            "",
            f"## Qualify only under the {side.removeprefix('only_')} ({result[side]['count']})",
            "",
        ]
        for lead in result[side]["sample"]:
            why = ", ".join(f"{e['rule']} {e['points']:+g}" for e in lead["explanation"])
            lines.append(
                f"- {lead['lead']}: {lead['score']} ({lead['tier']}) at {lead['at']}: {why}"
            )
    lines += _goal_lines(result.get("goals"))
    lines += [
        "",
        "Modelled, not recorded: sales' feedback (accept, contact, reject, convert) applies to "
        "the lead's simulated handoff; the SLA, manager-queue, stale and revisit clocks run at "
        "event time up to the history's last event; reps are available in their working hours.",
    ]
    path = folder / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _recycled_lines(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Handoffs closed by a policy (reject reasons, unworked, stale), by reason and policy."""
    if not (a["recycled_by_reason"] or b["recycled_by_reason"]):
        return ["", "## Recycled by reason and policy", "", "None under either playbook."]
    lines = [
        "",
        "## Recycled by reason and policy",
        "",
        "| | baseline | candidate |",
        "| --- | ---: | ---: |",
    ]
    for key, label in (("recycled_by_reason", "reason"), ("recycled_by_policy", "policy")):
        for name in sorted(set(a[key]) | set(b[key])):
            lines.append(_row(f"{label} {name}", a[key].get(name, 0), b[key].get(name, 0)))
    return lines


def _goal_lines(goals: dict[str, Any] | None) -> list[str]:
    """The candidate's goal attainment, period by period (services/backtest/goals.py)."""
    if not goals:
        return []
    lines = ["", "## Goal attainment under the candidate", ""]
    for g in goals["goals"]:
        if "not_simulated" in g:
            lines.append(f"- {g['goal']}: not simulated ({g['not_simulated']})")
            continue
        counts = g["attainment"]
        periods = ", ".join(f"{p['start'][:10]} {p['actual']} {p['status']}" for p in g["periods"])
        lines.append(
            f"- {g['title']} (target {g['target']:g}): met {counts['met']}, missed "
            f"{counts['missed']} of {len(g['periods'])} periods; {periods}"
        )
    return lines


def write_calibration(result: dict[str, Any], folder: Path) -> Path:
    """calibration.md, calibration.json and the acceptance chart in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "calibration.json").write_text(json.dumps(result, indent=2, default=str))
    rows = result["bands"]
    plt = _pyplot()
    if plt is not None:
        _acceptance_chart(plt, rows, folder / "acceptance_by_band.png")
    s = result["suggestion"]
    lines = [
        "# MQL threshold calibration",
        "",
        f"{result['judged_handoffs']} handoffs with sales feedback.",
        "",
        "| score band | handoffs | accepted | acceptance (95% interval) | converted |",
        "| --- | ---: | ---: | --- | ---: |",
        *[
            f"| {r['band']} | {r['handoffs']} | {r['accepted']} | {r['acceptance_rate']:.0%} "
            f"({r['acceptance_95'][0]:.0%}-{r['acceptance_95'][1]:.0%}) | {r['converted']} |"
            for r in rows
        ],
        "",
        "![Acceptance by score band](acceptance_by_band.png)" if plt is not None else NO_CHARTS,
        "",
        "## Suggestion",
        "",
    ]
    goal = result["goal"]
    if s:
        lines.append(
            f"MQL threshold **{s['mql_threshold']}**: {s['handoffs_at_or_above']} handoffs at or "
            f"above it, {s['acceptance_rate']:.0%} accepted (95% interval "
            f"{s['acceptance_95'][0]:.0%}-{s['acceptance_95'][1]:.0%}); confidence "
            f"{s['confidence']} (goal: at least {goal['accept_share_at_least']:.0%} accepted"
            + (f", at most {goal['weekly_capacity']} a week" if goal["weekly_capacity"] else "")
            + ")."
        )
    else:
        lines.append("No threshold meets the goal with the evidence at hand.")
    lines += ["", result["note"]]
    if "fit" in result:
        lines += ["", *_fit_floor_lines(result["fit"], goal["accept_share_at_least"])]
    path = folder / "calibration.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _fit_floor_lines(fit: dict[str, Any], accept_goal: float) -> list[str]:
    """The fit floor's section: sales' verdicts by fit band, then the suggested `min_fit`."""
    current = fit["current_min_fit"]
    lines = [
        "## Fit floor (`taxonomy.qualification.min_fit`)",
        "",
        f"{fit['judged_handoffs_with_fit']} handoffs by their fit score at the handoff (the "
        "explanation's `fit:` lines); the current playbook's min_fit is "
        + (f"{current:g}" if current is not None else "not set")
        + ".",
        "",
        "| fit band | handoffs | accepted | acceptance (95% interval) | converted | conversion |",
        "| --- | ---: | ---: | --- | ---: | ---: |",
        *[
            f"| {r['band']} | {r['handoffs']} | {r['accepted']} | {r['acceptance_rate']:.0%} "
            f"({r['acceptance_95'][0]:.0%}-{r['acceptance_95'][1]:.0%}) | {r['converted']} | "
            f"{r['conversion_rate']:.0%} |"
            for r in fit["bands"]
        ],
        "",
    ]
    s = fit["suggestion"]
    if s["min_fit"] is None:
        lines.append(f"No min_fit suggested: {s['why']} (goal: {accept_goal:.0%} accepted).")
        return lines
    lines.append(
        f"min_fit **{s['min_fit']}**: {s['why']} ({accept_goal:.0%}). "
        f"The {s['handoffs_dropped']} handoffs below it were {s['acceptance_dropped']:.0%} "
        f"accepted and {s['converted_dropped']} of them converted (what the floor would lose); "
        f"the {s['handoffs_kept']} at or above it were {s['acceptance_kept']:.0%} accepted (95% "
        f"interval {s['acceptance_kept_95'][0]:.0%}-{s['acceptance_kept_95'][1]:.0%}); "
        f"confidence {s['confidence']}."
    )
    return lines


def _acceptance_chart(plt: Any, rows: list[dict[str, Any]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar([r["band"] for r in rows], [r["acceptance_rate"] for r in rows], label="accepted")
    ax.bar([r["band"] for r in rows], [r["conversion_rate"] for r in rows], label="converted")
    ax.errorbar(
        [r["band"] for r in rows],
        [r["acceptance_rate"] for r in rows],
        yerr=[
            [r["acceptance_rate"] - r["acceptance_95"][0] for r in rows],
            [r["acceptance_95"][1] - r["acceptance_rate"] for r in rows],
        ],
        fmt="none",
        ecolor="black",
        capsize=3,
    )
    ax.set_xlabel("score at handoff")
    ax.set_ylabel("share of handoffs")
    ax.set_title("Sales acceptance by score band (95% intervals)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _row(name: str, a: Any, b: Any) -> str:
    return f"| {name} | {a} | {b} |"


def _pair(q: dict[str, Any]) -> str:
    return f"{q['median']} / {q['p90']}"


def _weekly_chart(plt: Any, a: dict[str, int], b: dict[str, int], path: Path) -> None:
    weeks = sorted(set(a) | set(b))
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(weeks, [a.get(w, 0) for w in weeks], marker="o", label="baseline")
    ax.plot(weeks, [b.get(w, 0) for w in weeks], marker="o", label="candidate")
    ax.set_xlabel("week starting")
    ax.set_ylabel("MQLs")
    ax.set_title("MQLs per week")
    ax.tick_params(axis="x", rotation=45)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _score_chart(
    plt: Any, scores: dict[str, list[int]], thresholds: dict[str, int], path: Path
) -> None:
    fig, ax = plt.subplots(figsize=(8, 4))
    for name, values in scores.items():
        ax.hist(values, bins=30, alpha=0.5, label=f"{name} scores")
    for name, threshold in thresholds.items():
        ax.axvline(threshold, linestyle="--", label=f"{name} MQL threshold {threshold}")
    ax.set_xlabel("lead score at the end of the window")
    ax.set_ylabel("leads")
    ax.set_title("Score distribution")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


FIGURES = ("mqls", "accepted", "sqls", "customers")


def _campaign_lines(by_campaign: dict[str, list[dict[str, Any]]] | None) -> list[str]:
    """The funnel by campaign (first touch) under both playbooks."""
    if not by_campaign:
        return []
    a = {g["key"]: g for g in by_campaign["baseline"]}
    b = {g["key"]: g for g in by_campaign["candidate"]}
    lines = [
        "",
        "## By campaign (first touch)",
        "",
        "| campaign | leads | MQLs | accepted | SQLs | customers |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]

    def mqls(key: str | None) -> float:
        return float((a.get(key) or {}).get("mqls", 0))

    for key in sorted(set(a) | set(b), key=lambda k: (k is None, -mqls(k), k or "")):
        ga, gb = a.get(key, {}), b.get(key, {})
        pairs = [f"{ga.get(n, 0):g} / {gb.get(n, 0):g}" for n in FIGURES]
        leads = ga.get("leads") or gb.get("leads") or 0
        lines.append(f"| {key or '(none)'} | {leads:g} | " + " | ".join(pairs) + " |")
    lines += ["", "Each figure: baseline / candidate."]
    return lines
