"""Verification products (核验): a data owner's yes/no question about one subject of their dataset.

A product names a dataset, the *subject column* that keys a row (the privacy unit's ``id``, or a ``join_key``
or ``never_output`` identifier such as a national ID number: the column is used only to find the row and is
never output), a predicate template over that row (``monthly_income >= :threshold``, or ``exists``) and the
types of its parameters (``number``, ``integer``, ``string``). A grantee's check answers only ``true`` or
``false``.

Membership: an unknown subject answers ``false``, so a "yes" always shows that the subject is present, and a
predicate true for every row the dataset could hold (``exists``, ``age >= 16`` with age in [16, 100],
``monthly_income >= :t`` at t ≤ 0) answers "is this subject present?" outright. ``hide_membership: true``
asks the sandbox to refuse such predicates at definition and at every check
(`sandbox.verify_membership.prove_membership_hidden`).

The catalog stores the product as declared and checks what it can without reading data or parsing the
predicate: the dataset is the owner's, the subject column exists with an identifying role and a string or
integer kind, the names are well formed. The predicate itself is vetted by the sandbox
(`sandbox.verify.vet_predicate`) before `define_product` is called and again at every check, against the
dataset's declaration as it then stands.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Engine, Select, and_, select
from sqlalchemy.exc import IntegrityError

from catalog import certificates as certs
from catalog import registry
from catalog._tables import verification_products
from catalog.columns import NAME_RE, Kind, Role
from catalog.errors import ALREADY_EXISTS, DomainError, invalid, not_found

__all__ = ["PARAM_TYPES", "SUBJECT_ROLES", "ParamType", "Product", "ProductSpec", "define_product", "get_product",
           "list_products"]

ParamType = Literal["number", "integer", "string"]
PARAM_TYPES: tuple[str, ...] = ("number", "integer", "string")
PARAM_RE = r"^[a-z][a-z0-9_]{0,31}$"
MAX_PARAMS = 8
MAX_PREDICATE_CHARS = 1000
#: Roles a subject column may have: it identifies the row and is never output.
SUBJECT_ROLES = frozenset({Role.ID, Role.JOIN_KEY, Role.NEVER_OUTPUT})


class ProductSpec(BaseModel):
    """``POST /verifications`` (docs/api.md, "Verifications")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_RE.pattern, examples=["income_at_least"])
    dataset: str = Field(pattern=NAME_RE.pattern, examples=["tax_income"])
    subject_column: str = Field(pattern=NAME_RE.pattern, examples=["person_id"])
    predicate: str = Field(min_length=1, max_length=MAX_PREDICATE_CHARS,
                           examples=["monthly_income >= :threshold"],
                           description="a boolean expression over one row with :named parameters, or `exists`")
    params: dict[str, ParamType] = Field(default_factory=dict, examples=[{"threshold": "number"}])
    description: str = Field(default="", max_length=500)
    hide_membership: bool = Field(default=False, description="refuse the predicate unless, for every admissible "
                                  "parameter value, some declared row answers no (so the verdict is never just "
                                  "whether the subject is present)")

    @field_validator("params")
    @classmethod
    def _params_ok(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > MAX_PARAMS:
            raise ValueError(f"at most {MAX_PARAMS} parameters")
        bad = sorted(k for k in v if not re.match(PARAM_RE, k))
        if bad:
            raise ValueError(f"parameter names must match {PARAM_RE}: {bad}")
        return v


@dataclass(frozen=True)
class Product:
    name: str
    owner: str
    dataset: str
    subject_column: str
    predicate: str
    params: dict[str, str]
    description: str
    dataset_fingerprint: str  # at definition time
    created_at: dt.datetime
    hide_membership: bool = False
    certificate_id: str | None = None  # its registry certificate (catalog.certificates); none before 0016

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "owner": self.owner, "dataset": self.dataset,
                "subject_column": self.subject_column, "predicate": self.predicate, "params": dict(self.params),
                "description": self.description, "hide_membership": self.hide_membership,
                "created_at": self.created_at.isoformat(), "certificate_id": self.certificate_id}

    def source(self) -> dict[str, str]:
        """The product's source attribution: its dataset, owner and the fingerprint it was defined over."""
        return certs.source_of(self.dataset, self.owner, self.dataset_fingerprint)


def _utc(v: dt.datetime) -> dt.datetime:
    return v.replace(tzinfo=dt.UTC) if v.tzinfo is None else v.astimezone(dt.UTC)


def _row(r: Any) -> Product:
    return Product(name=r.name, owner=r.owner, dataset=r.dataset, subject_column=r.subject_column,
                   predicate=r.predicate, params=json.loads(r.params_json), description=r.description,
                   dataset_fingerprint=r.dataset_fingerprint, created_at=_utc(r.created_at),
                   hide_membership=bool(r.hide_membership), certificate_id=r.certificate_id)


def _products() -> Select[Any]:
    """Products with their certificate's id (a product defined before certificates existed has none)."""
    c = certs.certificates
    return (select(verification_products, c.c.id.label("certificate_id"))
            .outerjoin(c, and_(c.c.kind == "product", c.c.subject == verification_products.c.name,
                              c.c.agreement_id.is_(None))))


def define_product(engine: Engine, owner: str, spec: ProductSpec, *, now: dt.datetime | None = None) -> Product:
    """Record ``spec`` for ``owner`` (who must own its dataset). Vet the predicate first (see module docs).

    ``NOT_FOUND_OR_FORBIDDEN`` for another owner's or a missing dataset, ``INVALID_REQUEST`` for a subject column
    that cannot key a row, ``ALREADY_EXISTS`` for a taken name. The product's certificate
    (`catalog.certificates`, kind ``product``) is issued in the same transaction: both or neither.
    """
    ds = registry.get(engine, spec.dataset)
    if ds is None or ds.owner != owner:
        raise not_found("dataset")
    col = ds.columns.get(spec.subject_column)
    if col is None:
        raise invalid("the subject column is not a column of the dataset",
                      [{"field": "subject_column", "problem": "unknown column"}])
    if col.role not in SUBJECT_ROLES or col.kind not in (Kind.STRING, Kind.INTEGER):
        raise invalid("the subject column must identify a row: role id, join_key or never_output, of kind string "
                      "or integer", [{"field": "subject_column", "role": col.role.value, "kind": col.kind.value}])
    now = _utc(now or dt.datetime.now(dt.UTC))
    try:
        with engine.begin() as conn:
            conn.execute(verification_products.insert().values(
                name=spec.name, owner=owner, dataset=spec.dataset, subject_column=spec.subject_column,
                predicate=spec.predicate, params_json=json.dumps(dict(spec.params), sort_keys=True),
                description=spec.description, dataset_fingerprint=ds.fingerprint, created_at=now,
                hide_membership=spec.hide_membership))
            certs.issue_in(conn, kind="product", subject=spec.name, owner=owner, now=now,
                           sources=[certs.source_of(spec.dataset, owner, ds.fingerprint)],
                           covers={"product": spec.name, "dataset": spec.dataset,
                                   "subject_column": spec.subject_column, "predicate": spec.predicate,
                                   "params": dict(spec.params), "hide_membership": spec.hide_membership})
    except IntegrityError:
        raise DomainError(ALREADY_EXISTS, "a verification product with this name exists") from None
    product = get_product(engine, spec.name)
    assert product is not None
    return product


def get_product(engine: Engine, name: str) -> Product | None:
    with engine.connect() as conn:
        r = conn.execute(_products().where(verification_products.c.name == name)).first()
    return _row(r) if r is not None else None


def list_products(engine: Engine, *, owner: str | None = None) -> list[Product]:
    q = _products().order_by(verification_products.c.name)
    if owner is not None:
        q = q.where(verification_products.c.owner == owner)
    with engine.connect() as conn:
        return [_row(r) for r in conn.execute(q).all()]
