"""Object metadata and conditions, the parts of Kubernetes objects gpumix reads."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from gpumix.resources.types import CamelModel


class ObjectMeta(CamelModel):
    # Metadata carries many server-managed fields gpumix does not use: ignore them.
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1)
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class Condition(CamelModel):
    """A status condition, as Kubernetes API conventions define it."""

    type: str = Field(min_length=1, description="Ready, Planned, Feasible or Progressing.")
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(default="", description="CamelCase reason for the last transition.")
    message: str = Field(default="", description="Human-readable detail.")
    last_transition_time: str | None = Field(default=None, description="RFC 3339 time.")
    observed_generation: int | None = Field(
        default=None, description="The spec generation this condition describes."
    )
