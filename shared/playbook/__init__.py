"""The playbook: the one file where sales and marketing agree on taxonomy, scoring and routing."""

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError, model_validator

from shared.playbook.base import Section
from shared.playbook.closed_loop import ClosedLoop
from shared.playbook.goals import Goal, check_goals, with_reporting_currency
from shared.playbook.handoff import Rep, Routing, Sla, Team
from shared.playbook.scoring_rules import BehaviourRule, Scoring
from shared.playbook.taxonomy import Taxonomy, Tier
from shared.playbook.webhooks import WebhookSubscription


class Playbook(Section):
    """A validated playbook."""

    taxonomy: Taxonomy
    scoring: Scoring
    routing: Routing
    sla: Sla = Sla()
    closed_loop: ClosedLoop = ClosedLoop()
    webhooks: list[WebhookSubscription] = []
    goals: list[Goal] = []

    @model_validator(mode="before")
    @classmethod
    def _goal_currency(cls, data: Any) -> Any:
        return with_reporting_currency(data)

    @model_validator(mode="after")
    def _consistent(self) -> "Playbook":
        ids = [rep.id for team in self.routing.teams for rep in team.reps]
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        if duplicated:
            raise ValueError(f"rep ids must be unique across teams; repeated: {duplicated}")
        unknown = sorted(set(self.sla.tiers) - {t.name for t in self.taxonomy.tiers})
        if unknown:
            raise ValueError(f"sla.tiers names unknown tiers {unknown}")
        names = [w.name for w in self.webhooks]
        if len(set(names)) != len(names):
            raise ValueError(f"webhook names must be unique; got {names}")
        teams = {t.name for t in self.routing.teams}
        tiers = {t.name for t in self.taxonomy.tiers}
        for hook in self.webhooks:
            if set(hook.teams or ()) - teams or set(hook.tiers or ()) - tiers:
                raise ValueError(f"webhook {hook.name} filters on unknown teams or tiers")
        check_goals(self.goals, teams, tiers)
        scored = {rule.activity for rule in self.scoring.behaviour}
        unscored = sorted(set(self.taxonomy.signals) - scored)
        if unscored:
            # A misspelt signal would never fire: name the activity types the playbook knows.
            raise ValueError(
                f"taxonomy.signals names activity types no behaviour rule scores {unscored}; "
                f"the scored types are {sorted(scored)}"
            )
        return self


class PlaybookError(ValueError):
    """A playbook that cannot be used, with every problem located by line and field."""


def load_playbook(path: Path | str) -> Playbook:
    """Read and validate a playbook file; errors name the line and the field."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise PlaybookError(f"{path}: cannot read the playbook: {exc.strerror}") from exc
    return parse_playbook(text, str(path))


def parse_playbook(text: str, name: str = "<playbook>") -> Playbook:
    """Validate playbook YAML text; errors name the line and the field."""
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark else name
        raise PlaybookError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    try:
        return Playbook.model_validate(data if data is not None else {})
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "(top level)"
            line = _line_of(root, err["loc"])
            lines.append(f"{name}:{line}: {field}: {err['msg']}")
        raise PlaybookError("invalid playbook\n  " + "\n  ".join(lines)) from exc


def _line_of(node: Any, loc: tuple[Any, ...]) -> int:
    """The 1-based line of the deepest YAML node along a pydantic error location."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if k.value == str(part)), None)
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            child = node.value[part]
        if child is None:
            break
        node, line = child, child.start_mark.line + 1
    return line


def summary(playbook: Playbook) -> str:
    """A readable summary of a playbook for `leadrouter playbook check`."""
    t, sc = playbook.taxonomy, playbook.scoring
    out = [f"MQL threshold: {t.mql_threshold}"]
    out.append("Tiers: " + ", ".join(f"{x.name} >= {x.min_score}" for x in t.tiers))
    out.append("Stages defined: " + (", ".join(t.stages) or "none"))
    out.append("Sales signals: " + (", ".join(t.signals) or "none"))
    half_life = sc.decay.half_life_days
    out.append(f"Decay: behaviour halves every {half_life:g} days" if half_life else "Decay: none")
    out.append(f"Fit rules: {len(sc.fit)}")
    for rule in sc.fit:
        effect = "disqualifies" if rule.disqualify else f"{rule.points:+d}"
        out.append(f"  {rule.name}: {rule.attribute} -> {effect}")
    out.append(f"Behaviour rules: {len(sc.behaviour)}")
    for b in sc.behaviour:
        cap = f" (at most {b.cap.points} per {b.cap.period_days:g} days)" if b.cap else ""
        when = f" when {', '.join(b.when)} match" if b.when else ""
        out.append(f"  {b.rule_name}: {b.activity}{when} {b.points:+d}{cap}")
    for routing_rule in playbook.routing.rules:
        matches = ", ".join(routing_rule.when) or "any lead"
        out.append(f"Routing rule {routing_rule.name}: {matches} -> {routing_rule.team}")
    for team in playbook.routing.teams:
        out.append(f"Team {team.name}: " + ", ".join(r.name for r in team.reps))
    for tier, policy in playbook.sla.tiers.items():
        out.append(
            f"SLA {tier}: accept within {policy.accept_minutes:g} min, "
            f"first contact within {policy.contact_minutes:g} min"
        )
    for hook in playbook.webhooks:
        only = [f"teams {hook.teams}"] * bool(hook.teams) + [f"tiers {hook.tiers}"] * bool(
            hook.tiers
        )
        out.append(
            f"Webhook {hook.name} ({hook.format}): {', '.join(hook.events)} -> {hook.url}"
            + (f" (only {', '.join(only)})" if only else "")
        )
    for goal in playbook.goals:
        scope = "".join(f" {k} {v}" for k, v in (("team", goal.team), ("tier", goal.tier)) if v)
        out.append(
            f"Goal {goal.id} ({goal.owned_by}): {goal.metric} {goal.target:g} per {goal.period}"
            + (f" for{scope}" if scope else "")
        )
    return "\n".join(out)


__all__ = [
    "BehaviourRule",
    "ClosedLoop",
    "Goal",
    "Playbook",
    "PlaybookError",
    "Rep",
    "Routing",
    "Scoring",
    "Taxonomy",
    "Team",
    "Tier",
    "WebhookSubscription",
    "load_playbook",
    "parse_playbook",
    "summary",
]
