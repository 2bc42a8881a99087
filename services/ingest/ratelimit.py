"""A token bucket per source, pure: the caller passes the current monotonic time."""

from dataclasses import dataclass, field


@dataclass
class TokenBuckets:
    """`rate_per_s` requests per second per key, with bursts of up to `burst`."""

    rate_per_s: float
    burst: int
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # key -> (tokens, at)

    def take(self, key: str, now_s: float) -> float:
        """Take one token; returns 0 when allowed, else the seconds until a token is free."""
        tokens, at = self._buckets.get(key, (float(self.burst), now_s))
        tokens = min(float(self.burst), tokens + (now_s - at) * self.rate_per_s)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now_s)
            return 0.0
        self._buckets[key] = (tokens, now_s)
        return (1 - tokens) / self.rate_per_s
