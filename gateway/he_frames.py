"""The binary form of the encrypted endpoints' bodies: raw ciphertext bytes instead of base64 inside JSON.

``POST /v1/models/{id}/score`` and ``POST /v1/verifications/{name}/check-encrypted`` take, besides their JSON body,
a body of type `MEDIA_TYPE` (``application/vnd.veilbox.he+octet-stream``), and answer in that form when the
request's ``Accept`` names it (docs/api.md, "Binary bodies for ciphertexts"). One frame, all integers unsigned
32-bit big-endian::

    "VBHE" 0x01 | header length | header: a strict-JSON object (UTF-8) | for each blob: length | raw bytes

The header holds the JSON form's non-ciphertext fields and ``"blobs"``: the field each blob belongs to, in order
(a list field such as ``ciphertexts`` is named once per element, in order). Nothing may follow the last blob.
The gateway turns a frame into the JSON form's fields (each blob base64-encoded, the encoding the evaluation
takes) and validates them with the same model, so both forms pass the same checks, the same size limits
(`gateway.app`'s body limit, the models' counts, `mpc.he`'s byte limits), the same metering and the same audit
(the request digest is the JSON form's). A frame that does not parse is ``INVALID_REQUEST`` (problem named in
``details``), a blob that is not a valid ciphertext ``CIPHERTEXT_INVALID``, never a 500.

A request carrying an ``Idempotency-Key`` is answered in JSON whatever its ``Accept`` (the stored first answer is
replayed as JSON text, `gateway.services.idempotency`).
"""

from __future__ import annotations

import binascii
import json
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.responses import Response

from catalog.errors import INVALID_REQUEST, DomainError
from gateway import strict_json

__all__ = ["MAGIC", "MEDIA_TYPE", "binary_answer", "decode_frame", "encode_frame", "read_body", "request_body_doc",
           "wants_binary"]

MEDIA_TYPE = "application/vnd.veilbox.he+octet-stream"
MAGIC = b"VBHE\x01"
_U32 = struct.Struct(">I")
#: Header bytes at most (the non-ciphertext fields are small).
MAX_HEADER_BYTES = 64 << 10

M = TypeVar("M", bound=BaseModel)


def _bad(problem: str) -> DomainError:
    return DomainError(INVALID_REQUEST, "the binary request body is not a valid frame",
                       [{"loc": ["body"], "problem": problem}])


def encode_frame(header: Mapping[str, Any], blobs: Iterable[tuple[str, bytes]]) -> bytes:
    """One frame: ``header`` (without ``blobs``) and each ``(field, raw bytes)`` in order."""
    items = list(blobs)
    head = json.dumps({**header, "blobs": [name for name, _ in items]}, separators=(",", ":"),
                      ensure_ascii=False).encode()
    parts = [MAGIC, _U32.pack(len(head)), head]
    for _, raw in items:
        parts += [_U32.pack(len(raw)), raw]
    return b"".join(parts)


def decode_frame(body: bytes, list_fields: Sequence[str], blob_fields: Sequence[str]) -> dict[str, Any]:
    """The JSON form's fields of a frame: the header's, and each blob base64-encoded under its field (appended for
    ``list_fields``). ``INVALID_REQUEST`` for anything that does not parse."""
    view = memoryview(body)
    if len(view) < len(MAGIC) + 4 or bytes(view[:len(MAGIC)]) != MAGIC:
        raise _bad("the body does not start with the frame's magic and version (VBHE, 1)")
    at = len(MAGIC)
    (size,) = _U32.unpack_from(view, at)
    at += 4
    if size > MAX_HEADER_BYTES or at + size > len(view):
        raise _bad("the header length exceeds the body or the header limit")
    try:
        header = strict_json.loads(bytes(view[at:at + size]))
    except strict_json.NotStrictJSON as exc:
        raise _bad(f"the header is not strict JSON: {exc}") from None
    except ValueError:
        raise _bad("the header is not strict JSON") from None
    at += size
    if not isinstance(header, dict):
        raise _bad("the header is not a JSON object")
    names = header.pop("blobs", None)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise _bad("the header's blobs is not a list of field names")
    allowed = set(list_fields) | set(blob_fields)
    if any(n not in allowed for n in names):
        raise _bad(f"a blob names a field that takes no ciphertext (allowed: {', '.join(sorted(allowed))})")
    if any(n in header for n in allowed):
        raise _bad("a ciphertext field is in the header: send it as a blob")
    out: dict[str, Any] = dict(header)
    for name in list_fields:
        if name in names:
            out[name] = []
    for name in names:
        if at + 4 > len(view):
            raise _bad("the body ends before a blob's length")
        (n,) = _U32.unpack_from(view, at)
        at += 4
        if at + n > len(view):
            raise _bad("a blob is longer than the rest of the body")
        encoded = binascii.b2a_base64(view[at:at + n], newline=False).decode("ascii")
        at += n
        if name in list_fields:
            out[name].append(encoded)
        elif name in out:
            raise _bad(f"the field {name} is named by more than one blob")
        else:
            out[name] = encoded
    if at != len(view):
        raise _bad("bytes follow the last blob")
    return out


def _validated(model: type[M], data: Any, from_json: bytes | None = None) -> M:
    try:
        if from_json is not None:
            return model.model_validate_json(from_json)
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e.get("loc", ()))} for e in exc.errors()]) from None


async def read_body(request: Request, model: type[M], list_fields: Sequence[str] = (),
                    blob_fields: Sequence[str] = ()) -> M:
    """The request's body as ``model``, from JSON or from a frame (`MEDIA_TYPE`), validated alike."""
    content_type = request.headers.get("content-type")
    raw = await request.body()
    if content_type is not None and content_type.split(";", 1)[0].strip().lower() == MEDIA_TYPE:
        return _validated(model, decode_frame(raw, list_fields, blob_fields))
    if strict_json.is_json_body(content_type):
        return _validated(model, None, from_json=raw)
    raise DomainError(INVALID_REQUEST, "the request body's content type is not accepted",
                      [{"loc": ["body"], "problem": f"send application/json or {MEDIA_TYPE}"}])


def wants_binary(request: Request) -> bool:
    """Whether the answer goes as a frame: ``Accept`` names `MEDIA_TYPE` and no ``Idempotency-Key`` is sent."""
    if request.headers.get("idempotency-key") is not None:
        return False
    accept = request.headers.get("accept", "")
    return any(part.split(";", 1)[0].strip().lower() == MEDIA_TYPE for part in accept.split(","))


def binary_answer(answer: Mapping[str, Any], list_fields: Sequence[str] = (), blob_fields: Sequence[str] = ()
                  ) -> Response:
    """A JSON answer as a frame: its base64 ciphertext fields as raw blobs, the rest in the header."""
    header = {k: v for k, v in answer.items() if k not in list_fields and k not in blob_fields}
    blobs: list[tuple[str, bytes]] = []
    for name in list_fields:
        blobs += [(name, binascii.a2b_base64(v)) for v in answer.get(name, ())]
    for name in blob_fields:
        if answer.get(name) is not None:
            blobs.append((name, binascii.a2b_base64(answer[name])))
    return Response(encode_frame(header, blobs), media_type=MEDIA_TYPE)


def request_body_doc(model: type[BaseModel], example: Any, blob_text: str) -> dict[str, Any]:
    """``openapi_extra`` for a route reading its body with `read_body`: the JSON form (schema and example) and the
    binary form (`MEDIA_TYPE`)."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": model.model_json_schema(ref_template="#/components/schemas/{model}"),
                             "example": example},
        MEDIA_TYPE: {"schema": {"type": "string", "format": "binary",
                                "description": "a frame: \"VBHE\" 0x01, u32 header length, the header (a JSON "
                                               "object: the JSON form's other fields and \"blobs\", the field of "
                                               "each blob in order), then per blob u32 length and raw bytes "
                                               "(big-endian; docs/api.md). " + blob_text}},
    }}}
