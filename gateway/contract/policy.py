"""Responses of the policy routes (``GET /v1/policy/grades``: the grade-dependent controls, `policies.grades`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from catalog.columns import Grade
from gateway.contract import Out, example

GRADES_EXAMPLE: dict[str, Any] = {
    "grade": "important",
    "grantable": True,
    "approvals": ["owner_each_job"],
    "epsilon_ceiling": "4",
    "sensitive_key_min_group_units": 100,
}


class GradeControls(Out):
    """One grade's controls, as the service enforces them (ε ceilings with the service's settings applied)."""

    model_config = ConfigDict(json_schema_extra=example(GRADES_EXAMPLE))
    grade: Grade = Field(description="classification grade (数据分级)")
    grantable: bool = Field(description="whether the dataset may be placed under an agreement (core: never)")
    approvals: list[Literal["owner_each_job", "auto_within_budget"]] = Field(
        description="the approval modes an agreement over the dataset may use"
    )
    epsilon_ceiling: str | None = Field(
        description="the highest per-dataset ε an agreement may allow (exact "
        "decimal or fraction text; null: no ceiling)"
    )
    sensitive_key_min_group_units: int = Field(
        description="the agreement's min_group_units a query needs to group on a column flagged sensitive"
    )
