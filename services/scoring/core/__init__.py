"""Pure scoring: a lead's fit and decaying behaviour score, its tier and its lifecycle stage.

No I/O and no clock: every function takes the time it scores at. The rooms:

- `records`: awards, per-rule tallies, a lead's behaviour, transitions, time in microseconds;
- `compiled`: a playbook's scoring rules compiled once (behaviour rules, fit tests, tiers);
- `tallies`: the tally arithmetic (caps in event-time order, one half-life for all decay);
- `score`: the score at a time, what each rule contributed, and the lead's state;
- `stages`: what an activity, a sales outcome or time passing does to the lead's stage;
- `merge`: two records of the same person as one.

How a store packs the records is not the core's business (services/scoring/codec.py); the
words (stages, transitions) are the contract's (shared/vocabulary.py).
"""

from services.scoring.core.compiled import fit_score
from services.scoring.core.merge import merge, merge_behaviour
from services.scoring.core.records import (
    Behaviour,
    CapPeriod,
    Hit,
    PackedPeriods,
    RuleTally,
    Transition,
    from_us,
    to_us,
)
from services.scoring.core.score import LeadState, Score, evaluate
from services.scoring.core.stages import (
    CLOCK_SKEW_TOLERANCE,
    activity_hits,
    apply_activity,
    apply_activity_at,
    apply_sales_outcome,
    earns_points,
    effective_time,
    next_score_change,
    rescore,
    retier,
)
from services.scoring.core.tallies import (
    LIVE_PERIODS,
    RECENT_HITS,
    SETTLED_BELOW_POINTS,
    add_hits,
    all_periods,
    behaviour_score,
    tallied_score,
)

__all__ = [
    "CLOCK_SKEW_TOLERANCE",
    "LIVE_PERIODS",
    "RECENT_HITS",
    "SETTLED_BELOW_POINTS",
    "Behaviour",
    "CapPeriod",
    "Hit",
    "LeadState",
    "PackedPeriods",
    "RuleTally",
    "Score",
    "Transition",
    "activity_hits",
    "add_hits",
    "all_periods",
    "apply_activity",
    "apply_activity_at",
    "apply_sales_outcome",
    "behaviour_score",
    "earns_points",
    "effective_time",
    "evaluate",
    "fit_score",
    "from_us",
    "merge",
    "merge_behaviour",
    "next_score_change",
    "rescore",
    "retier",
    "tallied_score",
    "to_us",
]
