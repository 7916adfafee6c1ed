"""Model weights as safetensors (never pickle), and the linear-model reader used for encrypted scoring.

A weights file holds float32 tensors and a string metadata header: ``format`` (``veilbox.dp_model``),
``version``, ``model`` and the JSON list of ``feature_names`` (the input layout, see
`sandbox.train.encoding`). Logistic regression stores ``linear.weight`` (1×d) and ``linear.bias`` (1); the
MLP stores ``hidden.weight``, ``hidden.bias``, ``output.weight``, ``output.bias``. Loading never executes
code: safetensors is a JSON header plus raw little-endian buffers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save, save_file

from catalog.errors import invalid

__all__ = ["FORMAT", "load_linear_weights", "read_metadata", "save_weights", "weights_bytes"]

FORMAT = "veilbox.dp_model"
VERSION = "1"


def save_weights(tensors: dict[str, np.ndarray], path: Path, model: str, feature_names: list[str]) -> None:
    """Write ``tensors`` (converted to contiguous float32) and the metadata header to ``path``."""
    arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}
    meta = {"format": FORMAT, "version": VERSION, "model": model, "feature_names": json.dumps(feature_names)}
    save_file(arrays, str(path), metadata=meta)


def weights_bytes(tensors: dict[str, np.ndarray], model: str, feature_names: list[str]) -> bytes:
    """What `save_weights` writes, as bytes in memory (sealed at rest by the caller: `catalog.sealed`)."""
    arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}
    meta = {"format": FORMAT, "version": VERSION, "model": model, "feature_names": json.dumps(feature_names)}
    return save(arrays, metadata=meta)


def read_metadata(path: Path) -> dict[str, str]:
    """The header of a weights file; ``INVALID_REQUEST`` if it is not one `save_weights` wrote."""
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata() or {}
    if meta.get("format") != FORMAT:
        raise invalid("not a Veilbox model weights file")
    return dict(meta)


def load_linear_weights(path: Path) -> tuple[np.ndarray, float, list[str]]:
    """(w: float64[d], b, feature_names) of a logistic-regression weights file; the logit is ``w·x + b``."""
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            linear = meta.get("format") == FORMAT and meta.get("model") == "logistic_regression"
            weight = f.get_tensor("linear.weight") if linear else None
            bias = f.get_tensor("linear.bias") if linear else None
    except (OSError, SafetensorError):
        raise invalid("the weights file could not be read") from None
    if weight is None or bias is None:
        raise invalid("not a Veilbox linear model weights file")
    names = json.loads(meta["feature_names"])
    if weight.shape != (1, len(names)) or bias.shape != (1,):
        raise invalid("the weights file does not match its feature list")
    return weight.reshape(-1).astype(np.float64), float(bias[0]), [str(n) for n in names]
