"""The typed HTTP contract: response models, the error envelope and the documentation of every operation.

The route modules (`gateway.routes`) declare, for each operation, its ``response_model`` (or, for files and
other non-JSON answers, the media type), its ``summary``, its example and its possible errors, from here:

- `gateway.contract.errors`: `ErrorEnvelope` (the one error body) and `errors_for` (the ``responses=`` of the
  codes an operation can answer, grouped by status);
- one module per route group (`principals`, `datasets`, `agreements`, `jobs`, `models`, `verifications`,
  `secagg`, `audit`, `system`): the response models, each with an example taken from a real answer; `principals`
  and `psi` hold only examples (their models live with the routes and with `gateway.services.psi`, and those
  routes return model instances, so they keep FastAPI's defaults rather than `OUT`).

Response models describe what the routes return, field for field: a model that names exact fields forbids
others (`Out`), so a route that starts returning an undeclared field fails its tests instead of the field being
dropped silently; bodies that are genuinely open (an agreement document, a job's spec and result, a model card,
a report) are `Open`. Routes declare ``response_model_exclude_unset=True`` (`OUT`) so a field a route leaves out
stays out. ``python -m gateway.openapi`` writes the contract to docs/openapi.json;
tests/system/http/gateway/test_contract.py checks every operation is documented this way.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from gateway.contract.errors import AUTHENTICATED, PUBLIC, ErrorBody, ErrorEnvelope, errors_for
from vocab.errors import ErrorCode

__all__ = ["AUTHENTICATED", "OUT", "PUBLIC", "ErrorBody", "ErrorCode", "ErrorEnvelope", "Open", "Out", "doc",
           "errors_for"]


class Out(BaseModel):
    """A response body with exact fields (an undeclared field is an error, never dropped)."""

    model_config = ConfigDict(extra="forbid")


class Open(BaseModel):
    """A response body whose documented fields are always there and which may carry more (a document, a table)."""

    model_config = ConfigDict(extra="allow")


#: Keyword arguments of every operation with a response model: fields a route leaves out are not added.
OUT: dict[str, Any] = {"response_model_exclude_unset": True}


def example(value: Any) -> dict[str, Any]:
    """``json_schema_extra`` of a model: one example."""
    return {"examples": [value]}


def doc(summary: str, *codes: ErrorCode | str, auth: bool = True, status: int = 200,
        response_example: Any = None, media: dict[str, Any] | None = None, model: type[BaseModel] | None = None,
        request_example: Any = None, openapi_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The documentation keywords of one operation: ``summary``, ``responses`` (its errors, and its success
    example, or the media types of a `Response` answer, ``model`` being the schema of its JSON form) and
    ``openapi_extra`` (a request example when given)."""
    responses: dict[int | str, dict[str, Any]] = errors_for(*codes, auth=auth)
    if media is not None:
        responses[status] = {"content": media, **({"model": model} if model is not None else {})}
    elif response_example is not None:
        responses[status] = {"content": {"application/json": {"example": response_example}}}
    kwargs: dict[str, Any] = {"summary": summary, "responses": responses}
    extra = dict(openapi_extra or {})
    if request_example is not None:
        body = dict(extra.get("requestBody") or {})
        content = dict(body.get("content") or {})
        content["application/json"] = {**content.get("application/json", {}), "example": request_example}
        extra["requestBody"] = {**body, "content": content}
    if extra:
        kwargs["openapi_extra"] = extra
    return kwargs
