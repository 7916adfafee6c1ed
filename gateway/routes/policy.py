"""The grade-dependent controls (分级分类), read-only (docs/grades.md): the table of `policies.grades` with the
service's ε ceilings (``VEILBOX_GRADE_EPSILON_CEILINGS``) applied. Public to every principal."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gateway.contract import OUT
from gateway.contract import doc as describe
from gateway.contract.policy import GRADES_EXAMPLE, GradeControls
from gateway.deps import Ctx, CurrentPrincipal
from policies import grades

router = APIRouter(tags=["policy"])


@router.get(
    "/policy/grades",
    name="policy.grades",
    response_model=list[GradeControls],
    **OUT,
    **describe(
        "The grade-dependent controls (分级分类): what each dataset grade allows", response_example=[GRADES_EXAMPLE]
    ),
)
def grade_controls(_: CurrentPrincipal, ctx: Ctx) -> list[dict[str, Any]]:
    """Per grade: may it be granted, the approval modes, the ε ceiling in force and the group size a sensitive
    group key needs."""
    return grades.table_json(ctx.settings.grade_ceilings)
