"""Who is who: the names an event knows a person by, which lead survives when several turn out
to be one person, and the leads of a whole history held in memory.

Live processing (service.py) resolves names against the stored aliases; the replay's fold
(rebuild.py) and the backtest (services/backtest/simulate.py) resolve them against
`LeadsInMemory`. All three merge with `merged_lead`, so a lead's key and score do not depend
on which path built it. Pure: no I/O, no clock.
"""

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace

from services.scoring.core import LeadState, merge
from shared.events import LeadActivityData
from shared.playbook import Playbook


def identity_aliases(subject: str, data: LeadActivityData) -> list[str]:
    """Every name the event knows the person by; the first is the key for a new lead."""
    identity = data.identity
    if not identity.external_ids:  # most events: the email, the subject, or both
        if not identity.email:
            return [subject]
        email = f"email:{identity.email}"
        return [email] if email == subject else [email, subject]
    names = [f"email:{identity.email}"] if identity.email else []
    names += [f"{system}:{value}" for system, value in sorted(identity.external_ids.items())]
    return list(dict.fromkeys([*names, subject]))


def survivor_of(keys: Collection[str]) -> str:
    """Which lead keeps its key in a merge: an email-keyed one, else the smallest key."""
    return min(keys, key=lambda k: (not k.startswith("email:"), k))


def merged_lead(
    states: Mapping[str, LeadState], keys: set[str], names: Iterable[str], playbook: Playbook
) -> LeadState:
    """The one lead `names` belong to: the leads stored under `keys` (the leads those names
    are bound to) merged, keyed by the best of all their names; a new lead if `keys` is empty.

    A lead is keyed by its best name (an email, else the smallest id) among all it has been
    called, so the key does not depend on the order partitions are processed in. `states` is
    only read: the caller drops the merged-away keys once it keeps the result.
    """
    canonical = survivor_of(keys | set(names))
    if not keys:
        return LeadState(lead_key=canonical)
    state = states[survivor_of(keys)]
    for other in sorted(keys - {state.lead_key}):
        state = merge(state, states[other], playbook)
    return state if state.lead_key == canonical else replace(state, lead_key=canonical)


class LeadsInMemory:
    """Leads by key and every alias bound to its lead: a projection folded in memory."""

    def __init__(self) -> None:
        self.states: dict[str, LeadState] = {}
        self.bindings: dict[str, str] = {}  # alias -> lead key
        self.names_of: dict[str, set[str]] = defaultdict(set)  # lead key -> its aliases

    def resolve(self, names: Iterable[str], playbook: Playbook) -> tuple[LeadState, set[str]]:
        """The lead these names belong to (merged, not kept yet) and the keys it absorbs."""
        names = list(names)
        if len(names) == 1:  # most events: what merged_lead gives, without its sets
            (name,) = names
            key = self.bindings.get(name)
            if key == name:
                return self.states[name], {name}  # a returning lead under its own key
            if key is None:
                return LeadState(lead_key=name), set()  # a new lead
        keys = {self.bindings[n] for n in names if n in self.bindings}
        return merged_lead(self.states, keys, names, playbook), keys

    def keep(self, state: LeadState, names: Iterable[str], absorbed: Iterable[str] = ()) -> None:
        """Store the lead, drop the leads it absorbed (their aliases follow it), bind `names`."""
        key = state.lead_key
        for old in absorbed:
            if old != key:
                del self.states[old]
                for alias in self.names_of.pop(old, ()):
                    self._bind(alias, key)
        for name in names:
            if self.bindings.get(name) != key:
                self._bind(name, key)
        self.states[key] = state

    def forget(self, key: str) -> None:
        """Drop the lead and every alias bound to it (an erasure)."""
        del self.states[key]
        for alias in self.names_of.pop(key, ()):
            del self.bindings[alias]

    def _bind(self, alias: str, key: str) -> None:
        old = self.bindings.get(alias)
        if old is not None and old != key and old in self.names_of:
            self.names_of[old].discard(alias)
        self.bindings[alias] = key
        self.names_of[key].add(alias)
