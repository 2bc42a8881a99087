"""What the ingest API answers."""

from pydantic import BaseModel, Field


class IngestResult(BaseModel):
    """What became of a request's items; every item is counted in exactly one of the three."""

    accepted: int = Field(description="Events now in Kafka, acknowledged by all replicas")
    ignored: int = Field(description="Items the platform sent that carry nothing to score")
    dead_lettered: int = Field(
        description="Items that cannot become a lead event; kept on the lead-events DLQ topic"
    )
    ids: list[str] = Field(description="The accepted events' ids, in order")
