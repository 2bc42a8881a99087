"""The base of every playbook section: unknown keys are errors, values are frozen."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A playbook section."""

    model_config = ConfigDict(extra="forbid", frozen=True)
