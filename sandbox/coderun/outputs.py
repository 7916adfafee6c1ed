"""What custom code may release, and the parent's validation of it.

The sandbox's harness serialises the entrypoint's return value, but everything that crosses back is treated
as untrusted bytes: the parent reads at most ``max_bytes + 1`` of them and then re-validates here.

- ``json``: must decode as UTF-8 JSON without NaN/Infinity or duplicate keys; it is re-encoded canonically
  (sorted keys, no whitespace) so the digest does not depend on how the sandbox wrote it.
- ``model``: must be a well-formed safetensors file (8-byte header length, JSON header of tensors with known
  dtypes whose byte ranges tile the data section exactly); checked by a strict parser here and, when the
  ``safetensors`` library is importable, by its own deserialiser too. Pickle and any other format that can
  carry code are refused by construction.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from catalog.errors import invalid

__all__ = ["MAX_OUTPUT_BYTES", "InvalidOutput", "OutputKind", "OutputSpec", "canonical_json", "check_safetensors",
           "validate_output"]

MAX_OUTPUT_BYTES = 64 * 1024 * 1024
OutputKind = Literal["json", "model"]

# safetensors dtypes -> bytes per element
_DTYPE_SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
                "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
_MAX_HEADER = 100_000_000


class InvalidOutput(ValueError):
    """The bytes returned by the sandbox are not a valid output of the declared kind."""


@dataclass(frozen=True)
class OutputSpec:
    """What the code may release: ``json`` (a JSON value) or ``model`` (safetensors bytes), size-capped."""

    kind: OutputKind
    max_bytes: int = 1024 * 1024

    def __post_init__(self) -> None:
        if self.kind not in ("json", "model"):
            raise invalid("outputs.kind must be 'json' or 'model'",
                          [{"rule": "output_kind", "at": "outputs.kind", "hint": "json | model"}])
        if isinstance(self.max_bytes, bool) or not isinstance(self.max_bytes, int) \
                or not 1 <= self.max_bytes <= MAX_OUTPUT_BYTES:
            raise invalid(f"outputs.max_bytes must be an integer in 1..{MAX_OUTPUT_BYTES}",
                          [{"rule": "output_size", "at": "outputs.max_bytes", "hint": f"<= {MAX_OUTPUT_BYTES}"}])

    @classmethod
    def of(cls, spec: OutputSpec | Mapping[str, Any]) -> OutputSpec:
        """Accept an `OutputSpec` or the API's ``{"kind", "max_bytes"}`` mapping."""
        if isinstance(spec, OutputSpec):
            return spec
        if not isinstance(spec, Mapping) or set(spec) - {"kind", "max_bytes"}:
            raise invalid("outputs must be {'kind', 'max_bytes'}")
        return cls(spec.get("kind"), spec.get("max_bytes", 1024 * 1024))  # type: ignore[arg-type]


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise InvalidOutput("duplicate key")
    return out


def _no_constants(name: str) -> Any:
    raise InvalidOutput(f"non-finite number {name}")


def _loads(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except InvalidOutput:
        raise
    except (ValueError, RecursionError, MemoryError) as e:  # JSONDecodeError, UnicodeDecodeError, int digits
        raise InvalidOutput(type(e).__name__) from None


def canonical_json(data: bytes) -> bytes:
    """Decode ``data`` strictly and re-encode it canonically."""
    value = _loads(data)
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode("utf-8")
    except (ValueError, RecursionError) as e:
        raise InvalidOutput(type(e).__name__) from None


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def check_safetensors(data: bytes) -> None:
    """Raise `InvalidOutput` unless ``data`` is a well-formed safetensors file."""
    if len(data) < 8:
        raise InvalidOutput("too short")
    n = int.from_bytes(data[:8], "little")
    if not 2 <= n <= min(len(data) - 8, _MAX_HEADER):
        raise InvalidOutput("bad header length")
    header = _loads(bytes(data[8:8 + n]))
    if not isinstance(header, dict):
        raise InvalidOutput("header is not an object")
    data_len = len(data) - 8 - n
    spans: list[tuple[int, int]] = []
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise InvalidOutput("bad metadata")
            continue
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise InvalidOutput("bad tensor entry")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in _DTYPE_SIZES or not isinstance(shape, list) or not all(_int(d) for d in shape):
            raise InvalidOutput("bad dtype or shape")
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(_int(o) for o in offsets):
            raise InvalidOutput("bad offsets")
        begin, end = offsets
        if not begin <= end <= data_len or end - begin != math.prod(shape) * _DTYPE_SIZES[dtype]:
            raise InvalidOutput("offsets do not match shape")
        spans.append((begin, end))
    pos = 0
    for begin, end in sorted(spans):
        if begin != pos:
            raise InvalidOutput("tensor data overlaps or leaves gaps")
        pos = end
    if pos != data_len:
        raise InvalidOutput("trailing bytes after tensor data")
    try:
        import safetensors
    except ImportError:  # pragma: no cover - safetensors is a pinned dependency
        return
    try:
        safetensors.deserialize(bytes(data))
    except Exception as e:  # the library's own error types vary by version
        raise InvalidOutput("rejected by safetensors") from e


def validate_output(kind: OutputKind, data: bytes, max_bytes: int) -> bytes:
    """The bytes to release for ``kind`` (canonical JSON, or the model file unchanged)."""
    if len(data) > max_bytes:
        raise InvalidOutput("too large")
    if kind == "json":
        out = canonical_json(data)
        if len(out) > max_bytes:
            raise InvalidOutput("too large")
        return out
    check_safetensors(data)
    return bytes(data)
