"""The training spec of a ``train`` job, and its checks against a dataset and an agreement.

A spec names a registered dataset, the feature columns, a binary label, the model, the optimisation
hyper-parameters and the requested privacy guarantee (ε, δ). Nothing in a spec is trusted:

- `parse_spec` turns a JSON object into a frozen `TrainSpec` (unknown keys, wrong types and out-of-range
  values are refused together, as ``INVALID_REQUEST``, without echoing the submitted values);
- `check_spec` checks a parsed spec against the dataset's public declaration and the columns the agreement
  allows, collecting every violation: columns outside the agreement or with a role that may never be read
  (``id``, ``join_key``, ``never_output``) are ``POLICY_DENIED``; structural problems (a label that is not a
  dimension with a two-value domain, a dataset that holds several rows per privacy unit, …) are
  ``INVALID_REQUEST``.

Both run before any data is read and before anything is charged.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from catalog.columns import ColumnInfo, Role
from catalog.errors import INVALID_REQUEST, POLICY_DENIED, DomainError
from catalog.fingerprint import HashAlg, digest
from catalog.registry import Dataset

__all__ = [
    "DEFAULT_HIDDEN",
    "MAX_DELTA",
    "MAX_EPSILON",
    "MAX_FEATURES",
    "MAX_INPUT_WIDTH",
    "ModelKind",
    "TrainSpec",
    "check_spec",
    "parse_spec",
]

MAX_EPSILON = 20.0
MAX_DELTA = 1e-3
MAX_FEATURES = 64
#: Upper bound on the encoded input width (sum of one-hot domain sizes and scaled columns).
MAX_INPUT_WIDTH = 4096
DEFAULT_HIDDEN = 32

ModelKind = Literal["logistic_regression", "mlp"]
ColumnName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
_READABLE_ROLES = (Role.DIMENSION, Role.MEASURE)


class TrainSpec(BaseModel):
    """A DP-SGD training request (docs/api.md, "Jobs": ``POST /jobs`` with ``kind: "train"``).

    ``batch_size`` is the *expected* batch size under Poisson sampling. ``seed`` fixes the parameter
    initialisation only: the Poisson sampling coins and the Gaussian noise are drawn from generators seeded
    from operating-system entropy, because the privacy analysis assumes the analyst cannot predict them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: ColumnName
    features: tuple[ColumnName, ...] = Field(min_length=1, max_length=MAX_FEATURES)
    label: ColumnName
    model: ModelKind
    epochs: int = Field(ge=1, le=50, strict=True)
    batch_size: int = Field(ge=16, le=65536, strict=True)
    epsilon: float = Field(gt=0, le=MAX_EPSILON, allow_inf_nan=False, strict=True)
    delta: float = Field(gt=0, le=MAX_DELTA, allow_inf_nan=False, strict=True)
    max_grad_norm: float = Field(gt=0, le=100, allow_inf_nan=False, strict=True)
    hidden: int | None = Field(default=None, ge=1, le=1024, strict=True)
    learning_rate: float = Field(default=1.0, gt=0, le=100, allow_inf_nan=False, strict=True)
    seed: int = Field(default=0, ge=0, lt=2**63, strict=True)

    @model_validator(mode="after")
    def _consistent(self) -> TrainSpec:
        if len(set(self.features)) != len(self.features):
            raise ValueError("features must be unique")
        if self.label in self.features:
            raise ValueError("the label must not also be a feature")
        if self.hidden is not None and self.model != "mlp":
            raise ValueError("hidden applies to model 'mlp' only")
        return self

    @property
    def hidden_units(self) -> int | None:
        """Hidden width of the MLP (default 32); ``None`` for logistic regression."""
        if self.model != "mlp":
            return None
        return self.hidden if self.hidden is not None else DEFAULT_HIDDEN

    def canonical_json(self) -> str:
        """Sorted-key, compact JSON of the spec: what `sha256` digests."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def sha256(self, hash_alg: HashAlg = "sha256") -> str:
        """``"<alg>:<hex>"`` of the canonical JSON with the home suite's hash ``hash_alg`` (``sha256:`` in ``intl``,
        ``sm3:`` in ``sm``; the name stays for the review's ``spec_sha256`` field): approvals and plans bind to
        this."""
        return digest(self.canonical_json().encode(), hash_alg)


def parse_spec(raw: Mapping[str, Any]) -> TrainSpec:
    """A `TrainSpec` from a JSON object, or ``INVALID_REQUEST`` listing every problem (never the values)."""
    if not isinstance(raw, Mapping):
        raise DomainError(INVALID_REQUEST, "the training spec must be a JSON object")
    try:
        return TrainSpec.model_validate(dict(raw))
    except ValidationError as e:
        details = [
            {"field": ".".join(str(p) for p in err["loc"]) or "spec", "problem": err["msg"]}
            for err in e.errors(include_url=False, include_input=False, include_context=False)
        ]
        raise DomainError(INVALID_REQUEST, "the training spec is invalid", details) from None


def _is_binary_label(info: ColumnInfo) -> bool:
    return info.role is Role.DIMENSION and info.domain is not None and len(info.domain) == 2


def structural_problems(spec: TrainSpec, dataset: Dataset) -> list[dict[str, Any]]:
    """Problems that make the spec untrainable on ``dataset`` whatever the agreement says."""
    out: list[dict[str, Any]] = []
    if spec.dataset != dataset.name:
        out.append({"field": "dataset", "problem": "the spec names a different dataset"})
    if dataset.max_rows_per_unit != 1:
        out.append({
            "field": "dataset",
            "problem": "DP-SGD here protects one row per privacy unit; this dataset declares "
                       "max_rows_per_unit > 1, so training on it is refused",
        })
    width = 0
    for i, name in enumerate(spec.features):
        info = dataset.columns.get(name)
        if info is None or info.role not in _READABLE_ROLES:
            continue  # reported by the policy check
        if info.domain is not None:
            width += len(info.domain)
        elif info.bounds is not None and info.kind.numeric:
            width += 1
        else:
            out.append({"field": f"features.{i}", "column": name,
                        "problem": "a feature needs a declared domain or numeric bounds"})
    if width > MAX_INPUT_WIDTH:
        out.append({"field": "features",
                    "problem": f"the encoded input would have {width} values; at most {MAX_INPUT_WIDTH}"})
    label = dataset.columns.get(spec.label)
    if label is not None and label.role in _READABLE_ROLES and not _is_binary_label(label):
        out.append({"field": "label", "column": spec.label,
                    "problem": "the label must be a dimension whose declared domain has exactly two values"})
    return out


def policy_problems(spec: TrainSpec, dataset: Dataset, allowed_columns: Collection[str]) -> list[dict[str, Any]]:
    """Columns the agreement does not grant, or whose role may never be read by a model."""
    allowed = set(allowed_columns)
    out: list[dict[str, Any]] = []
    named = [(f"features.{i}", c) for i, c in enumerate(spec.features)] + [("label", spec.label)]
    for field, name in named:
        info = dataset.columns.get(name)
        if name not in allowed:
            out.append({"field": field, "column": name, "problem": "column is not granted by the agreement"})
        elif info is None:
            out.append({"field": field, "column": name, "problem": "column is not in the dataset"})
        elif info.role not in _READABLE_ROLES:
            out.append({"field": field, "column": name,
                        "problem": f"a column with role {info.role.value!r} may not be used for training"})
    return out


def check_spec(spec: TrainSpec, dataset: Dataset, allowed_columns: Collection[str]) -> None:
    """Refuse ``spec`` unless every feature and the label are granted, readable and encodable.

    Raises ``POLICY_DENIED`` when any column is outside the agreement or has a forbidden role, otherwise
    ``INVALID_REQUEST`` for structural problems; ``details`` carries every violation found.
    """
    policy = policy_problems(spec, dataset, allowed_columns)
    structural = structural_problems(spec, dataset)
    if policy:
        raise DomainError(POLICY_DENIED, "the training spec uses columns the agreement does not allow",
                          policy + structural)
    if structural:
        raise DomainError(INVALID_REQUEST, "the training spec cannot be trained on this dataset", structural)
