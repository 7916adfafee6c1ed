"""Feature encoding derived from the dataset's *declaration only*, never from data statistics.

- A measure, or a dimension declared with ``bounds``, is scaled by its declared bounds to ``[-1, 1]``
  (``2·(x − lower)/(upper − lower) − 1``, clipped; a null encodes as 0, the midpoint).
- A dimension declared with a ``domain`` is one-hot encoded over the declared domain, in declared order; a
  value outside the domain, or a null, encodes as all zeros. A domain value that never occurs in the data
  still gets its slot, so the input layout is fixed before any row is read.
- The label is a dimension with a two-value domain; ``domain[1]`` is the positive class (1), ``domain[0]``
  the negative (0). Rows whose label is null or outside the domain are not used.

Because the encoding is a function of the public declaration, it is public: it is stored in the model card,
and `encode_features` applies the same encoding to one plaintext feature dict (what a bank's SDK needs before
encrypting a scoring request). `FeatureEncoding.encode_batch` is the vectorised form used for training
(pyarrow.compute and NumPy, no per-row Python); a test checks the two agree.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from catalog.columns import Role, Scalar
from catalog.errors import invalid
from catalog.registry import Dataset
from sandbox.train.spec import TrainSpec

__all__ = ["FeatureEncoding", "OneHotFeature", "ScaledFeature", "encode_features", "encoding_for"]

SCALE_LOW = -1.0
SCALE_HIGH = 1.0


def _value_name(v: Scalar) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def _same_kind(v: Any, domain: tuple[Scalar, ...]) -> bool:
    """``v`` has the kind of the domain's values (so ``True`` never matches the integer ``1``)."""
    ref = domain[0]
    if isinstance(ref, bool) or isinstance(v, bool):
        return isinstance(ref, bool) and isinstance(v, bool)
    if isinstance(ref, str) or isinstance(v, str):
        return isinstance(ref, str) and isinstance(v, str)
    return isinstance(v, int | float)


def _column_array(table: pa.Table | pa.RecordBatch, name: str) -> pa.Array | pa.ChunkedArray:
    col = table.column(name)
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    return col


def _domain_index(col: pa.Array | pa.ChunkedArray, domain: tuple[Scalar, ...]) -> np.ndarray:
    """Position of each value in ``domain`` (−1 for nulls and values outside it), vectorised."""
    try:
        value_set = pa.array(list(domain), type=col.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        # The column's type cannot hold the declared values: nothing can match.
        return np.full(len(col), -1, dtype=np.int64)
    idx = pc.fill_null(pc.index_in(col, value_set=value_set), -1)
    return np.asarray(idx.to_numpy(zero_copy_only=False), dtype=np.int64)


class ScaledFeature(BaseModel):
    """A bounded numeric column scaled to ``[-1, 1]`` by its declared bounds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["scaled"] = "scaled"
    column: str
    lower: float
    upper: float

    @property
    def names(self) -> list[str]:
        """The one input's name: the column."""
        return [self.column]

    @property
    def width(self) -> int:
        """One input."""
        return 1

    def scale(self, x: np.ndarray) -> np.ndarray:
        """``x`` mapped linearly from the declared bounds onto the scale range, clipped; NaN (null) → 0."""
        span = self.upper - self.lower
        out = (x - self.lower) * ((SCALE_HIGH - SCALE_LOW) / span) + SCALE_LOW
        out = np.clip(out, SCALE_LOW, SCALE_HIGH)
        return np.where(np.isnan(out), 0.0, out)

    def encode_column(self, col: pa.Array | pa.ChunkedArray, out: np.ndarray) -> None:
        """Write the scaled column into ``out[:, 0]`` (``out`` is this feature's block of the batch)."""
        x = np.asarray(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
        out[:, 0] = self.scale(x)

    def encode_value(self, v: Any) -> list[float]:
        """One applicant's value scaled like a batch (None → 0); ``INVALID_REQUEST`` if not a number."""
        if v is None:
            return [0.0]
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise invalid(f"feature {self.column!r} must be a number")
        return [float(self.scale(np.array([float(v)], dtype=np.float64))[0])]


class OneHotFeature(BaseModel):
    """A dimension one-hot encoded over its declared domain (outside values and nulls → all zeros)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["one_hot"] = "one_hot"
    column: str
    domain: tuple[Scalar, ...] = Field(min_length=1)

    @property
    def names(self) -> list[str]:
        """One input per domain value, named ``column=value``."""
        return [f"{self.column}={_value_name(v)}" for v in self.domain]

    @property
    def width(self) -> int:
        """One input per domain value."""
        return len(self.domain)

    def encode_column(self, col: pa.Array | pa.ChunkedArray, out: np.ndarray) -> None:
        """Set the domain value's slot of each row to 1 in ``out`` (zeroed, this feature's block)."""
        idx = _domain_index(col, self.domain)
        rows = np.flatnonzero(idx >= 0)
        out[rows, idx[rows]] = 1.0

    def encode_value(self, v: Any) -> list[float]:
        """One applicant's value one-hot encoded (None or a value outside the domain → all zeros)."""
        slots = [0.0] * len(self.domain)
        if v is None or not _same_kind(v, self.domain):
            return slots
        for i, d in enumerate(self.domain):
            if v == d:
                slots[i] = 1.0
                break
        return slots


Feature = Annotated[ScaledFeature | OneHotFeature, Field(discriminator="kind")]


class FeatureEncoding(BaseModel):
    """The public input layout of a model: which columns, in which order, encoded how."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    features: tuple[Feature, ...] = Field(min_length=1)
    label: str
    label_domain: tuple[Scalar, Scalar]
    scale_range: tuple[float, float] = (SCALE_LOW, SCALE_HIGH)

    @property
    def feature_names(self) -> list[str]:
        """The name of every model input, in input order."""
        return [n for f in self.features for n in f.names]

    @property
    def width(self) -> int:
        """The number of model inputs."""
        return sum(f.width for f in self.features)

    @property
    def columns(self) -> list[str]:
        """The feature columns, in input order (the label excluded)."""
        return [f.column for f in self.features]

    @property
    def positive_class(self) -> Scalar:
        """The label value the model's probability is for (the second of ``label_domain``)."""
        return self.label_domain[1]

    def encode_batch(self, batch: pa.Table | pa.RecordBatch) -> np.ndarray:
        """``float32[rows, width]`` for a batch holding (at least) the feature columns; vectorised."""
        out = np.zeros((batch.num_rows, self.width), dtype=np.float32)
        offset = 0
        for f in self.features:
            block = np.zeros((batch.num_rows, f.width), dtype=np.float64)
            f.encode_column(_column_array(batch, f.column), block)
            out[:, offset:offset + f.width] = block
            offset += f.width
        return out

    def encode_label(self, batch: pa.Table | pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
        """(``float32`` 0/1 labels, boolean mask of usable rows: label present and inside the domain)."""
        idx = _domain_index(_column_array(batch, self.label), self.label_domain)
        return (idx == 1).astype(np.float32), idx >= 0

    def encode_row(self, row: Mapping[str, Any]) -> np.ndarray:
        """``float32[width]`` for one plaintext feature dict, exactly as `encode_batch` encodes a row."""
        missing = [c for c in self.columns if c not in row]
        if missing:
            raise invalid("the feature dict lacks model features", [{"column": c} for c in missing])
        values: list[float] = []
        for f in self.features:
            v = row[f.column]
            if isinstance(v, float) and math.isnan(v):
                v = None
            values.extend(f.encode_value(v))
        return np.asarray(values, dtype=np.float32)


def encoding_for(spec: TrainSpec, dataset: Dataset) -> FeatureEncoding:
    """The encoding of ``spec``'s features and label from ``dataset``'s declaration (no data read)."""
    feats: list[ScaledFeature | OneHotFeature] = []
    for name in spec.features:
        info = dataset.columns.get(name)
        if info is None or info.role not in (Role.DIMENSION, Role.MEASURE):
            raise invalid("a feature is not a dimension or measure of the dataset", [{"column": name}])
        if info.domain is not None:
            feats.append(OneHotFeature(column=name, domain=info.domain))
        elif info.bounds is not None and info.kind.numeric:
            feats.append(ScaledFeature(column=name, lower=float(info.bounds[0]), upper=float(info.bounds[1])))
        else:
            raise invalid("a feature needs a declared domain or numeric bounds", [{"column": name}])
    label = dataset.columns.get(spec.label)
    if label is None or label.role is not Role.DIMENSION or label.domain is None or len(label.domain) != 2:
        raise invalid("the label must be a dimension whose declared domain has exactly two values",
                      [{"column": spec.label}])
    return FeatureEncoding(features=tuple(feats), label=spec.label,
                           label_domain=(label.domain[0], label.domain[1]))


def encode_features(encoding: FeatureEncoding, features: Mapping[str, Any]) -> np.ndarray:
    """The model input vector (``float32[width]``) for one plaintext feature dict.

    ``features`` maps column name → value; extra keys are ignored, missing ones refused. This is the
    encoding a client must apply before encrypting a scoring request; take ``encoding`` from the model card
    (``FeatureEncoding.model_validate(card["encoding"])``).
    """
    return encoding.encode_row(features)
