"""Dataset specifications: column roles, declared domains and bounds, classification grade.

A data owner declares, for every column of a file, its *role*:

- ``id``: the privacy unit (a person or an enterprise). Exactly one per dataset. Never output.
- ``dimension``: a grouping/filter column with a public declared ``domain`` (list of values) or ``bounds``.
- ``measure``: a numeric column that may be aggregated; ``bounds`` are required and values are clamped to
  them at ingest, so sensitivities follow from the declaration, never from the data.
- ``join_key``: may be used only to join datasets of the same agreement; never output or grouped on.
- ``never_output``: may not appear anywhere in a query (select, filter, grouping or join).

Any column may also be flagged ``sensitive`` (敏感): a group key on it needs the larger group size its dataset's
grade sets (`policies.grades`); the flag is kept with the column and shown in the catalog only when set.

The declaration is public: the mock and the DP key sets derive from it.

``engine`` names the engine that runs the dataset's DP SQL: ``duckdb`` (the default; every dataset registered
before the field existed) or ``spark`` (`sandbox.engine.spark`, the optional extra ``veilbox[spark]``).
"""

from __future__ import annotations

import math
import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, field_validator, model_validator

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
MAX_DOMAIN = 10_000
Scalar = str | int | float | bool
Number = StrictInt | StrictFloat


class Role(StrEnum):
    ID = "id"
    DIMENSION = "dimension"
    MEASURE = "measure"
    JOIN_KEY = "join_key"
    NEVER_OUTPUT = "never_output"


class Grade(StrEnum):
    """Classification grade (分类分级): general 一般, important 重要, core 核心."""

    GENERAL = "general"
    IMPORTANT = "important"
    CORE = "core"


class Kind(StrEnum):
    """Value kind of a column, derived from the file's Arrow type."""

    INTEGER = "integer"
    FLOAT = "float"
    STRING = "string"
    BOOLEAN = "boolean"
    DATE = "date"
    TIMESTAMP = "timestamp"

    @property
    def numeric(self) -> bool:
        return self in (Kind.INTEGER, Kind.FLOAT)


class ColumnSpec(BaseModel):
    """What the owner declares for one column."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Role
    domain: tuple[Scalar, ...] | None = None
    bounds: tuple[Number, Number] | None = None  # strict: true or "5" is not a bound
    description: str = Field(default="", max_length=500)
    sensitive: bool = Field(default=False, strict=True)

    @field_validator("domain")
    @classmethod
    def _domain_ok(cls, v: tuple[Scalar, ...] | None) -> tuple[Scalar, ...] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("domain must not be empty")
        if len(v) > MAX_DOMAIN:
            raise ValueError(f"domain has more than {MAX_DOMAIN} values")
        if len(set(v)) != len(v):
            raise ValueError("domain values must be unique")
        if len({type(x) for x in v}) != 1:
            raise ValueError("domain values must all have one type")
        return v

    @field_validator("bounds")
    @classmethod
    def _bounds_ok(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is None:
            return v
        lo, hi = v
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError("bounds must be finite")
        if lo >= hi:
            raise ValueError("bounds must be [lower, upper] with lower < upper")
        return v

    @model_validator(mode="after")
    def _role_needs(self) -> ColumnSpec:
        if self.role is Role.MEASURE:
            if self.bounds is None:
                raise ValueError("a measure needs bounds")
            if self.domain is not None:
                raise ValueError("a measure takes bounds, not a domain")
        elif self.role is Role.DIMENSION:
            if (self.domain is None) == (self.bounds is None):
                raise ValueError("a dimension needs exactly one of domain or bounds")
        elif self.domain is not None or self.bounds is not None:
            raise ValueError(f"a column with role {self.role.value!r} takes neither domain nor bounds")
        return self


class DatasetSpec(BaseModel):
    """A registration request (docs/api.md, "Datasets (catalog)", ``POST /datasets``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=63)]
    source: str = Field(min_length=1, max_length=4096)
    description: str = Field(default="", max_length=2000)
    grade: Grade = Grade.GENERAL
    personal: bool = False
    sensitive: bool = False
    columns: dict[str, ColumnSpec]
    max_rows_per_unit: int = Field(default=1, ge=1, le=1000, strict=True)  # a sensitivity: true is not 1
    engine: Literal["duckdb", "spark"] = "duckdb"

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError("name must match ^[a-z][a-z0-9_]{0,62}$")
        return v

    @field_validator("source")
    @classmethod
    def _source_ok(cls, v: str) -> str:
        if "\x00" in v:  # no path holds one; the OS layer would raise ValueError, not "not found"
            raise ValueError("source must not contain a NUL byte")
        return v

    @field_validator("columns")
    @classmethod
    def _columns_ok(cls, v: dict[str, ColumnSpec]) -> dict[str, ColumnSpec]:
        if not v:
            raise ValueError("at least one column is required")
        bad = [c for c in v if not NAME_RE.match(c)]
        if bad:
            raise ValueError(f"column names must match ^[a-z][a-z0-9_]{{0,62}}$: {sorted(bad)}")
        ids = [c for c, s in v.items() if s.role is Role.ID]
        if len(ids) != 1:
            raise ValueError("exactly one column must have role 'id' (the privacy unit)")
        return v


class ColumnInfo(BaseModel):
    """A registered column: the declaration plus the value kind found in the file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Role
    kind: Kind
    domain: tuple[Scalar, ...] | None = None
    bounds: tuple[int | float, int | float] | None = None
    description: str = ""
    sensitive: bool = False

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role.value, "kind": self.kind.value}
        if self.domain is not None:
            out["domain"] = list(self.domain)
        if self.bounds is not None:
            out["bounds"] = list(self.bounds)
        if self.description:
            out["description"] = self.description
        if self.sensitive:
            out["sensitive"] = True
        return out
