"""The wire messages of a round: frozen pydantic models that serialise to JSON-able dicts.

Bytes travel as standard base64 text. Each message carries a ``kind`` discriminator and the ``round_id``.
Client → server: `AdvertiseKeys`, `ShareKeys`, `MaskedInput`, `UnmaskShares`. Server → client:
`KeyRoster`, `ForwardedShares`, `UnmaskRequest`. `to_json()` gives the dict; `parse_client_message` /
`parse_server_message` read one back and turn any validation failure into `ProtocolError` (the message
names the offending fields, never their values).

The compact binary form of a message (`encode_frame` / `decode_frame`, media type `FRAME_MEDIA_TYPE`) carries the
bytes raw instead of base64 — a masked vector as its packed little-endian uint32 words. All integers are unsigned
32-bit big-endian::

    "VBSA" 0x01 | header length | header: a JSON object (UTF-8) | for each blob: length | raw bytes

The header holds the message's other fields and ``"blobs"``: where each blob goes, in order — a field name
(``"vector"``) or ``[field, key]`` for a field that maps names to bytes (``["ciphertexts", "bank-2"]``). Nothing may
follow the last blob. `decode_frame` gives the JSON form's dict with the blobs as bytes, which `parse_client_message`
validates exactly like the JSON form.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar

import numpy as np
from numpy.typing import NDArray
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)

from mpc.secagg.errors import ProtocolError


def _decode_b64(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("not base64 text") from None
    raise ValueError("expected base64 text")


def _encode_b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


B64 = Annotated[bytes, PlainValidator(_decode_b64), PlainSerializer(_encode_b64, return_type=str, when_used="json")]
Key = Annotated[B64, Field(min_length=32, max_length=32)]
ShareValue = Annotated[B64, Field(min_length=33, max_length=33)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
RoundId = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    round_id: RoundId

    def to_json(self) -> dict[str, Any]:
        """The JSON-able dict form (bytes as base64)."""
        return self.model_dump(mode="json")


class PublicKeys(BaseModel):
    """A client's two X25519 public keys: ``c`` for share encryption, ``s`` for pairwise masks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    c_public: Key
    s_public: Key


class AdvertiseKeys(_Message):
    """Stage 0, client → server: the sender's fresh public keys."""

    kind: Literal["advertise_keys"] = "advertise_keys"
    sender: Name
    c_public: Key
    s_public: Key


class KeyRoster(_Message):
    """End of stage 0, server → clients: the public keys of every client heard from (U1)."""

    kind: Literal["key_roster"] = "key_roster"
    keys: dict[Name, PublicKeys]


class ShareKeys(_Message):
    """Stage 1, client → server: one AES-GCM envelope of Shamir shares per neighbour in U1, by recipient."""

    kind: Literal["share_keys"] = "share_keys"
    sender: Name
    ciphertexts: dict[Name, B64]


class ForwardedShares(_Message):
    """End of stage 1, server → one client: the envelopes addressed to it, by sender (its view of U2)."""

    kind: Literal["forwarded_shares"] = "forwarded_shares"
    recipient: Name
    ciphertexts: dict[Name, B64]


class MaskedInput(_Message):
    """Stage 2, client → server: ``y = x + PRG(b) + Σ ±PRG(s_uv) mod 2^m`` as little-endian uint32 words."""

    kind: Literal["masked_input"] = "masked_input"
    sender: Name
    vector: B64

    def array(self) -> NDArray[np.uint32]:
        """The masked vector (read-only view of the message bytes)."""
        return np.frombuffer(self.vector, dtype=np.dtype("<u4")).astype(np.uint32, copy=False)


class UnmaskRequest(_Message):
    """End of stage 2, server → clients: the survivors U3 whose masked inputs will be summed."""

    kind: Literal["unmask_request"] = "unmask_request"
    survivors: tuple[Name, ...]


class UnmaskShares(_Message):
    """Stage 3, client → server: shares of ``b`` for survivors, of the mask key ``s`` for the dropped."""

    kind: Literal["unmask_shares"] = "unmask_shares"
    sender: Name
    b_shares: dict[Name, ShareValue]
    s_shares: dict[Name, ShareValue]


ClientMessage = AdvertiseKeys | ShareKeys | MaskedInput | UnmaskShares
ServerMessage = KeyRoster | ForwardedShares | UnmaskRequest
_M = TypeVar("_M")

_CLIENT: TypeAdapter[ClientMessage] = TypeAdapter(Annotated[ClientMessage, Field(discriminator="kind")])
_SERVER: TypeAdapter[ServerMessage] = TypeAdapter(Annotated[ServerMessage, Field(discriminator="kind")])


def parse_client_message(data: Mapping[str, Any]) -> ClientMessage:
    """A client message from its JSON-able dict; `ProtocolError` if malformed."""
    return _parse(_CLIENT, data)


def parse_server_message(data: Mapping[str, Any]) -> ServerMessage:
    """A server message from its JSON-able dict; `ProtocolError` if malformed."""
    return _parse(_SERVER, data)


def _parse(adapter: TypeAdapter[_M], data: Mapping[str, Any]) -> _M:
    if not isinstance(data, Mapping):
        raise ProtocolError("message must be a JSON object")
    try:
        return adapter.validate_python(dict(data))
    except ValidationError as exc:
        fields = sorted({".".join(str(part) for part in error["loc"]) or "message" for error in exc.errors()})
        raise ProtocolError("malformed message: " + ", ".join(fields[:10])) from None


# --- the compact binary form -----------------------------------------------------------------------------------

FRAME_MEDIA_TYPE = "application/vnd.veilbox.secagg+octet-stream"
FRAME_MAGIC = b"VBSA\x01"
MAX_FRAME_HEADER_BYTES = 1 << 20
_U32 = struct.Struct(">I")


def encode_frame(message: BaseModel) -> bytes:
    """``message`` in the binary form: its bytes fields (and the bytes values of its name → bytes fields) as blobs."""
    header: dict[str, Any] = {}
    blobs: list[str | list[str]] = []
    raws: list[bytes] = []
    for name, value in message.model_dump().items():
        if isinstance(value, bytes):
            blobs.append(name)
            raws.append(value)
        elif isinstance(value, dict) and value and all(isinstance(v, bytes) for v in value.values()):
            for key, raw in value.items():
                blobs.append([name, key])
                raws.append(raw)
        else:
            header[name] = value
    head = json.dumps({**header, "blobs": blobs}, separators=(",", ":"), ensure_ascii=False).encode()
    parts = [FRAME_MAGIC, _U32.pack(len(head)), head]
    for raw in raws:
        parts += [_U32.pack(len(raw)), raw]
    return b"".join(parts)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("a repeated key")
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode_frame(body: bytes) -> dict[str, Any]:
    """The JSON form's dict of a frame, bytes fields as bytes (validate it with `parse_client_message` or
    `parse_server_message`); `ProtocolError` naming the problem if the frame does not parse."""
    view = memoryview(body)
    if len(view) < len(FRAME_MAGIC) + 4 or bytes(view[:len(FRAME_MAGIC)]) != FRAME_MAGIC:
        raise ProtocolError("malformed frame: it does not start with VBSA, version 1")
    at = len(FRAME_MAGIC)
    (size,) = _U32.unpack_from(view, at)
    at += 4
    if size > MAX_FRAME_HEADER_BYTES or at + size > len(view):
        raise ProtocolError("malformed frame: the header length exceeds the body or the header limit")
    try:
        header = json.loads(bytes(view[at:at + size]).decode("utf-8"), object_pairs_hook=_no_duplicates,
                            parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError("malformed frame: the header is not a JSON object") from None
    at += size
    if not isinstance(header, dict) or not isinstance(header.get("blobs"), list):
        raise ProtocolError("malformed frame: the header is not a JSON object with a blobs list")
    places = header.pop("blobs")
    seen: set[tuple[str, ...]] = set()
    mapped: set[str] = set()  # the name → bytes fields the blobs fill
    for place in places:
        path = (place,) if isinstance(place, str) else tuple(place) if isinstance(place, list) else ()
        if not (1 <= len(path) <= 2 and all(isinstance(p, str) for p in path)) or path in seen:
            raise ProtocolError("malformed frame: a blob place is not a field, [field, key] or is repeated")
        seen.add(path)
        if at + 4 > len(view):
            raise ProtocolError("malformed frame: a blob length lies beyond the body")
        (length,) = _U32.unpack_from(view, at)
        at += 4
        if at + length > len(view):
            raise ProtocolError("malformed frame: a blob lies beyond the body")
        raw = bytes(view[at:at + length])
        at += length
        if len(path) == 1:
            if path[0] in header:
                raise ProtocolError("malformed frame: a blob's field is also in the header")
            header[path[0]] = raw
        else:
            if path[0] in header and path[0] not in mapped:
                raise ProtocolError("malformed frame: a blob's field is also in the header")
            mapped.add(path[0])
            header.setdefault(path[0], {})[path[1]] = raw
    if at != len(view):
        raise ProtocolError("malformed frame: bytes follow the last blob")
    return header
