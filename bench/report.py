"""The Markdown report with PNG plots, written under an ignored folder."""

import json
import statistics
from dataclasses import asdict
from pathlib import Path

from bench.profiles import load, markdown
from bench.result import Result


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.2f}"


def _spread(values: list[float]) -> str:
    if len(values) < 2:
        return "one run"
    return f"{_fmt(min(values))} - {_fmt(max(values))}"


def write(runs: dict[str, list[Result]], machine: dict[str, str], out: Path, command: str) -> Path:
    """Write report.md, results.json and plots; returns the report's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    lines = ["# leadrouter benchmark", "", f"Command: `{command}`", "", "## Machine", ""]
    lines += ["| | |", "| --- | --- |"] + [f"| {k} | {v} |" for k, v in machine.items()]
    lines += ["", "## Figures", ""]
    lines += [
        "Median over the repeated runs; the spread is min - max. Ratios are against the "
        "baseline measured in the same run.",
        "",
        "| scenario | figure | measured | baseline | ratio | spread of measured | target | met |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    bars: list[tuple[str, float, float | None]] = []
    for scenario, results in runs.items():
        for index, figure in enumerate(results[0].figures):
            values = [r.figures[index].value for r in results]
            baselines = [b for r in results if (b := r.figures[index].baseline) is not None]
            value = statistics.median(values)
            baseline = statistics.median(baselines) if baselines else None
            ratio = value / baseline if baseline else None
            figure.value, figure.baseline = value, baseline
            met = figure.met()
            target = f"{figure.target[0]} {figure.target[1]:g}" if figure.target else ""
            lines.append(
                f"| {scenario} | {figure.name} | {_fmt(value)} {figure.unit} | "
                f"{_fmt(baseline)} {figure.baseline_name} | {_fmt(ratio)} | {_spread(values)} | "
                f"{target} | {'' if met is None else ('yes' if met else 'NO')} |"
            )
            if baseline:
                bars.append((f"{scenario}: {figure.name}"[:60], value, baseline))
    lines += ["", "## CPU and memory per process", ""]
    lines += [
        "| scenario | process | CPU s (median) | peak RSS MB (max) |",
        "| --- | --- | --- | --- |",
    ]
    for scenario, results in runs.items():
        names = sorted({p["process"] for r in results for p in r.processes})
        for name in names:
            cpu = [p["cpu_s"] for r in results for p in r.processes if p["process"] == name]
            rss = [p["peak_rss_mb"] for r in results for p in r.processes if p["process"] == name]
            lines.append(
                f"| {scenario} | {name} | {_fmt(statistics.median(cpu))} | {_fmt(max(rss))} |"
            )
    notes = [f"- {scenario}: {n}" for scenario, rs in runs.items() for n in rs[0].notes]
    if notes:
        lines += ["", "## Notes", "", *notes]

    if bars:
        fig, ax = plt.subplots(figsize=(9, 0.6 * len(bars) + 1.5))
        labels = [b[0] for b in bars]
        y = range(len(bars))
        ax.barh([i + 0.2 for i in y], [b[1] for b in bars], height=0.4, label="measured")
        ax.barh([i - 0.2 for i in y], [b[2] or 0 for b in bars], height=0.4, label="baseline")
        ax.set_yticks(list(y), labels, fontsize=7)
        ax.set_xscale("log")
        ax.legend()
        ax.set_title("Measured against same-run baselines")
        fig.tight_layout()
        fig.savefig(out / "throughput.png", dpi=110)
        plt.close(fig)
        lines += ["", "![measured against baselines](throughput.png)"]
    for scenario, results in runs.items():
        for name in results[0].series:
            samples = [x for r in results for x in r.series.get(name, [])]
            if not samples:
                continue
            fig, ax = plt.subplots(figsize=(7, 3.5))
            ax.hist(samples, bins=60)
            ax.set_title(f"{scenario}: {name} ({len(samples)} samples)")
            ax.set_xlabel(name)
            fig.tight_layout()
            file = f"{scenario}-{name.split(' ')[0]}.png"
            fig.savefig(out / file, dpi=110)
            plt.close(fig)
            lines += ["", f"![{scenario} {name}]({file})"]
    if (out / "profiles").is_dir():
        lines += ["", *markdown(load(out / "profiles"))]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(
        json.dumps({s: [asdict(r) for r in rs] for s, rs in runs.items()}, indent=2, default=str)
    )
    return report
