"""Latency buckets: the answers of timing-sensitive endpoints (queries, verifications, scoring) — refusals
included — take a whole number of ``VEILBOX_LATENCY_BUCKET_MS`` buckets, so the time to answer says little about
what was computed. A run longer than one bucket still reveals which bucket it fell into."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["pad", "padded"]

_sleep = asyncio.sleep


async def pad(started: float, bucket_ms: int) -> None:
    """Sleep until the time since ``started`` (``time.monotonic()``) is a whole, non-zero number of buckets."""
    if bucket_ms <= 0:
        return
    bucket = bucket_ms / 1000
    elapsed = time.monotonic() - started
    target = max(1, math.ceil(elapsed / bucket - 1e-9)) * bucket  # an exact multiple is not rounded up
    if target - elapsed > 1e-6:
        await _sleep(target - elapsed)


@asynccontextmanager
async def padded(bucket_ms: int) -> AsyncIterator[None]:
    """``async with padded(bucket_ms):`` — the block's answer or refusal leaves on a bucket boundary."""
    started = time.monotonic()
    try:
        yield
    finally:
        await pad(started, bucket_ms)
