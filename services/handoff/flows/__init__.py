"""The handoff service's flows, one concern a module: routing, timers, feedback, availability
and gauges. `services.handoff.service.HandoffService` puts them together and keys the
consumer's handlers by event type."""
