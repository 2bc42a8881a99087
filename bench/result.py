"""What a scenario measured: named figures, each with its baseline where one makes sense."""

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Figure:
    """One measured number, its same-run baseline and the issue's target."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    # ("min_ratio", 0.5): value/baseline at least 0.5; ("max", 250): value at most 250; ...
    target: tuple[str, float] | None = None

    @property
    def ratio(self) -> float | None:
        return self.value / self.baseline if self.baseline else None

    def met(self) -> bool | None:
        if self.target is None:
            return None
        kind, bound = self.target
        if kind == "min":
            return self.value >= bound
        if kind == "max":
            return self.value <= bound
        ratio = self.ratio
        if ratio is None:
            return None
        return ratio >= bound if kind == "min_ratio" else ratio <= bound


@dataclass
class Result:
    """A scenario's figures, the processes it sampled, and series for plots."""

    scenario: str
    figures: list[Figure] = field(default_factory=list)
    processes: list[dict[str, Any]] = field(default_factory=list)
    series: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
