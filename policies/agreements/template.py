"""A complete example agreement document, built from the document's models (`veilbox agreement template`).

`example_document` walks `AgreementDocument` and every sub-model: each field takes the worded example of
`EXAMPLES` when there is one, a sub-model is filled recursively, any other field its default (or, when it has none,
the first choice of a ``Literal``, the minimum of a number, a placeholder text). So a field added to the document
later appears in the template without anyone editing this module, and `example_document` validates the result, so
what it prints is a document ``POST /agreements`` accepts for the owner, grantee, datasets and columns given
(docs/agreements.md, "The document, field by field"). The output is the full model dump: every field, defaults
included (the stored canonical JSON leaves unset ones out).
"""

from __future__ import annotations

import datetime as dt
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from policies.agreements.document import AgreementDocument
from policies.agreements.sections import DOCUMENT_VERSION

__all__ = ["EXAMPLES", "example_document", "field_paths"]


class _Ctx(typing.NamedTuple):
    owner: str
    grantee: str
    columns: Mapping[str, Sequence[str]]
    purposes: Sequence[str]
    today: dt.datetime


#: Worded examples by dotted field path (``responsibilities.owner.responsibility``) or, failing that, by
#: ``"<Model>.<field>"``: a value, or a function of the caller's names and today's date.
EXAMPLES: dict[str, Any] = {
    "AgreementDocument.title": "SME credit model on tax records",
    "AgreementDocument.grantee": lambda c: c.grantee,
    "AgreementDocument.holders": (),
    "AgreementDocument.datasets": lambda c: sorted(c.columns),
    "AgreementDocument.columns": lambda c: {ds: list(cols) for ds, cols in c.columns.items()},
    "AgreementDocument.purposes": lambda c: list(c.purposes),
    "AgreementDocument.job_kinds": ["query", "train"],
    "AgreementDocument.valid_from": lambda c: c.today.isoformat(),
    "AgreementDocument.valid_until": lambda c: (c.today + dt.timedelta(days=365)).isoformat(),
    "AgreementDocument.approval": "owner_each_job",
    "AgreementDocument.anon_min_bucket": 50,
    "AgreementDocument.document_version": DOCUMENT_VERSION,
    "AgreementDocument.conditions": [
        "the grantee uses the data only for the purposes listed, inside the service",
        "results leave the service only as differentially private aggregates or approved releases",
    ],
    "AgreementDocument.exit_cases": [
        "the owner revokes the grant after a breach of its conditions",
        "the data authority orders the grant to end",
        "the grantee ceases the business the purposes name",
    ],
    "BudgetSpec.epsilon": "1",
    "BudgetSpec.delta": "1e-6",
    "responsibilities.owner.responsibility": "谁授权谁负责: the owner answers for the lawfulness of the data it "
    "grants and for declaring its columns and grades truthfully",
    "responsibilities.operator.responsibility": "谁运营谁负责: the platform answers for running the service "
    "securely: isolation, encryption at rest, the audit log",
    "responsibilities.grantee.responsibility": "谁使用谁负责: the grantee answers for using the results only for "
    "the purposes granted and for protecting what it receives",
    "Responsibility.measures": ["access limited to named staff", "every use recorded in the audit log"],
    "DerivedOwnership.derived_data": "joint",
    "DerivedOwnership.models": "grantee",
    "DerivedOwnership.note": "the owner may use models trained under the grant for its own public duties",
    "FeedbackDuty.every_days": 90,
    "FeedbackDuty.report_to": ["authority", "owner"],
    "FeedbackDuty.contents": ["the uses made of the results", "any incident or suspected misuse"],
    "PriceSchedule.per_call": "0.01",
    "PriceSchedule.per_job": "10",
    "PriceSchedule.per_epsilon": "100",
    "PriceSchedule.currency": "CNY",
    "RevenueTerms.shares": lambda c: {c.owner: "1"},
}


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation names (``M`` or ``M | None``), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
    return None


def _fallback(annotation: Any) -> Any:
    """A value for a required field without a worded example."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return args[0]
    if origin is typing.Annotated:
        return _fallback(args[0])
    if origin in (tuple, list):
        return []
    if origin is dict:
        return {}
    if annotation is bool:
        return False
    if annotation in (int, float):
        return 1
    return "example"


def _fill(model: type[BaseModel], ctx: _Ctx, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        key = prefix + name if prefix + name in EXAMPLES else f"{model.__name__}.{name}"
        sub = _model_of(info.annotation)
        if key in EXAMPLES:
            value = EXAMPLES[key]
            out[name] = value(ctx) if isinstance(value, Callable) else value  # type: ignore[arg-type]
        elif sub is not None:
            out[name] = _fill(sub, ctx, f"{prefix}{name}.")
        elif info.default is not PydanticUndefined:
            out[name] = info.default
        elif info.default_factory is not None:
            out[name] = info.default_factory()  # type: ignore[call-arg]
        else:
            out[name] = _fallback(info.annotation)
    return out


def example_document(
    *,
    owner: str,
    grantee: str,
    columns: Mapping[str, Sequence[str]],
    purposes: Sequence[str] = ("credit_risk",),
    today: dt.date | None = None,
) -> dict[str, Any]:
    """A complete, valid example document (JSON-able, every field present) granting ``grantee`` the ``columns``
    of ``owner``'s datasets for ``purposes``, valid for a year from ``today`` (UTC)."""
    day = today or dt.datetime.now(dt.UTC).date()
    ctx = _Ctx(owner, grantee, columns, purposes, dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC))
    doc = AgreementDocument.model_validate(_fill(AgreementDocument, ctx))
    return doc.model_dump(mode="json")


def field_paths(model: type[BaseModel] = AgreementDocument, prefix: str = "") -> list[str]:
    """Every field of ``model`` and of its sub-models, as dotted paths (``responsibilities.owner.measures``)."""
    out = []
    for name, info in model.model_fields.items():
        out.append(prefix + name)
        sub = _model_of(info.annotation)
        if sub is not None:
            out += field_paths(sub, f"{prefix}{name}.")
    return out
