"""The leads this process wrote last, kept with the version of the row each write made.

A returning lead's row is still locked every batch, but its state is taken from here instead
of being read back and decoded, when the locked row's version is the one our write made. A
row's version (`repository.LeadVersion`) is the id of the transaction that wrote it and that
transaction's time: every write by any path (another instance, a decay timer, a merge, the
replay's COPY) makes a new one, and a deleted (erased, merged) row has none, so a copy here is
exact while the versions match and is never trusted otherwise. That holds without hearing of
revocations, rollbacks or other writers: a write that rolled back left its version nowhere.
"""

from collections.abc import Iterable, Mapping
from itertools import islice

from services.scoring.core import LeadState
from services.scoring.repository import LeadVersion

# About 2.5 KB a lead (the bench: +26 MB RSS for 10,000 leads), so at most ~25 MB: the
# instance's recently active leads, not its whole history (services stay under 200 MB).
DEFAULT_MAX_LEADS = 10_000


class KnownLeads:
    """Lead states by key with the row version they were saved as, least recently used first."""

    def __init__(self, max_leads: int = DEFAULT_MAX_LEADS) -> None:
        self.max_leads = max_leads
        self._entries: dict[str, tuple[LeadVersion, LeadState]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def versions(self, keys: Iterable[str]) -> dict[str, LeadVersion]:
        """The version held for each of these keys that has a copy here."""
        entries = self._entries
        return {k: entries[k][0] for k in keys if k in entries}

    def state(self, key: str, version: LeadVersion) -> LeadState | None:
        """The copy of this lead if it is the one saved as `version`, else None."""
        entry = self._entries.get(key)
        if entry is None or entry[0] != version:
            return None
        return entry[1]

    def saved(self, versions: Mapping[str, LeadVersion], states: Mapping[str, LeadState]) -> None:
        """Remember the states a transaction wrote, with the versions its writes made."""
        entries = self._entries
        for key, version in versions.items():
            entries.pop(key, None)  # to the most recently used end
            entries[key] = (version, states[key])
        excess = len(entries) - self.max_leads
        if excess > 0:
            for key in list(islice(entries, excess)):
                del entries[key]

    def forget(self, keys: Iterable[str]) -> None:
        """Drop these leads (their rows are gone or were never this process's)."""
        for key in keys:
            self._entries.pop(key, None)
