"""The protobuf envelopes TenSEAL wraps around SEAL objects, read and written by hand.

TenSEAL serialises a vector as ``CKKSVectorProto``/``BFVVectorProto`` (``tensors.proto`` in the TenSEAL
wheel): field 1 ``repeated uint32 sizes``, field 2 ``repeated bytes ciphertexts`` (SEAL-serialised), and for
CKKS field 3 ``double scale``. We need to re-wrap SEAL ciphertexts we build ourselves (the flooding
ciphertexts) and to re-label a vector's logical size, so this module speaks exactly that much of the wire
format. The reader is bounds-checked and raises `ValueError` on anything malformed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 70, 7):
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    raise ValueError("varint too long")


def fields(data: bytes) -> list[tuple[int, int, int | bytes]]:
    """Top-level ``(field number, wire type, value)`` triples of one protobuf message."""
    out: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == _VARINT:
            value, pos = _read_varint(data, pos)
        elif wire == _BYTES:
            length, pos = _read_varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated length-delimited field")
            value, pos = data[pos:pos + length], pos + length
        elif wire in (_FIXED64, _FIXED32):
            width = 8 if wire == _FIXED64 else 4
            if pos + width > len(data):
                raise ValueError("truncated fixed-width field")
            value, pos = data[pos:pos + width], pos + width
        else:
            raise ValueError(f"unsupported wire type {wire}")
        out.append((number, wire, value))
    return out


@dataclass(frozen=True)
class VectorEnvelope:
    """A TenSEAL vector as it travels: logical chunk sizes, SEAL ciphertexts, CKKS scale (None for BFV)."""

    sizes: tuple[int, ...]
    ciphertexts: tuple[bytes, ...]
    scale: float | None


def read_vector(data: bytes) -> VectorEnvelope:
    """Parse a serialised ``CKKSVectorProto`` or ``BFVVectorProto``."""
    sizes: list[int] = []
    cts: list[bytes] = []
    scale: float | None = None
    for number, wire, value in fields(data):
        if number == 1 and wire == _BYTES and isinstance(value, bytes):
            pos = 0
            while pos < len(value):
                size, pos = _read_varint(value, pos)
                sizes.append(size)
        elif number == 1 and wire == _VARINT and isinstance(value, int):
            sizes.append(value)
        elif number == 2 and wire == _BYTES and isinstance(value, bytes):
            cts.append(value)
        elif number == 3 and wire == _FIXED64 and isinstance(value, bytes):
            scale = struct.unpack("<d", value)[0]
        else:
            raise ValueError(f"unexpected field {number} (wire type {wire}) in a vector envelope")
    return VectorEnvelope(tuple(sizes), tuple(cts), scale)


def write_vector(envelope: VectorEnvelope) -> bytes:
    """Serialise a vector envelope the way TenSEAL does (packed sizes, then ciphertexts, then scale)."""
    packed = b"".join(_varint(size) for size in envelope.sizes)
    out = [b"\x0a", _varint(len(packed)), packed]
    for ct in envelope.ciphertexts:
        out += [b"\x12", _varint(len(ct)), ct]
    if envelope.scale is not None:
        out += [b"\x19", struct.pack("<d", envelope.scale)]
    return b"".join(out)


def write_fields(triples: list[tuple[int, int, int | bytes]]) -> bytes:
    """Serialise ``(field number, wire type, value)`` triples as returned by `fields`."""
    out = []
    for number, wire, value in triples:
        out.append(_varint(number << 3 | wire))
        if wire == _VARINT and isinstance(value, int):
            out.append(_varint(value))
        elif wire == _BYTES and isinstance(value, bytes):
            out += [_varint(len(value)), value]
        elif wire in (_FIXED64, _FIXED32) and isinstance(value, bytes):
            out.append(value)
        else:
            raise ValueError(f"cannot write field {number} with wire type {wire}")
    return b"".join(out)
