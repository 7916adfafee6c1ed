"""What the route modules share that is about HTTP only: the padded route class.

Everything else the routes share is a service (`gateway.services`); route modules never import each other.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from gateway import latency

__all__ = ["PaddedRoute"]


class PaddedRoute(APIRoute):
    """A route whose every outcome — answer, refusal, malformed body (`RequestValidationError` is raised inside
    the route handler), authentication failure — leaves on a latency-bucket boundary (`gateway.latency`)."""

    def get_route_handler(self) -> Any:
        handler = super().get_route_handler()

        async def padded_handler(request: Request) -> Response:
            bucket_ms = request.app.state.ctx.settings.latency_bucket_ms
            async with latency.padded(bucket_ms) as started:
                request.state.padded = (started, bucket_ms)  # an entry written before the answer states padded ms
                response: Awaitable[Response] = handler(request)
                return await response

        return padded_handler
