"""The scopes an API key or token carries (shared/auth.py checks them); plain names, so the
command line lists them without importing the web framework."""

EVENTS_WRITE = "events:write"
LEADS_READ = "leads:read"
HANDOFFS_READ = "handoffs:read"
FEEDBACK_WRITE = "feedback:write"
REPS_WRITE = "reps:write"
ADMIN = "admin"
SCOPES = {
    EVENTS_WRITE: "send lead events to ingest (POST /v1/events)",
    LEADS_READ: "read leads, their scores and explanations (scoring)",
    HANDOFFS_READ: "read handoffs, reps, the funnel and the board (handoff)",
    FEEDBACK_WRITE: "accept, contact, reject or convert a handoff",
    REPS_WRITE: "mark reps in or out of office",
    ADMIN: "everything above, plus erasure and the audit trail",
}
