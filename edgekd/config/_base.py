"""Shared base of every config schema: unknown keys are errors, values are validated on assignment."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """A config block: typed fields, defaults and descriptions declared once; unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)
