"""Latency buckets: the answers of timing-sensitive endpoints (queries, verifications, scoring) — refusals
included — take a whole number of ``VEILBOX_LATENCY_BUCKET_MS`` buckets, so the time to answer says little about
what was computed. A run longer than one bucket still reveals which bucket it fell into."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["boundary", "pad", "padded"]

_sleep = asyncio.sleep


def boundary(started: float, bucket_ms: int, now: float) -> float:
    """When a block begun at ``started`` and done at ``now`` (``time.monotonic()``) is let go: ``now`` rounded up to
    a whole, non-zero number of buckets since ``started`` (``now`` itself without buckets)."""
    if bucket_ms <= 0:
        return now
    bucket = bucket_ms / 1000
    elapsed = now - started
    return started + max(1, math.ceil(elapsed / bucket - 1e-9)) * bucket  # an exact multiple is not rounded up


async def pad(started: float, bucket_ms: int) -> None:
    """Sleep until the time since ``started`` (``time.monotonic()``) is a whole, non-zero number of buckets."""
    if bucket_ms <= 0:
        return
    now = time.monotonic()
    target = boundary(started, bucket_ms, now)
    if target - now > 1e-6:
        await _sleep(target - now)


@asynccontextmanager
async def padded(bucket_ms: int) -> AsyncIterator[float]:
    """``async with padded(bucket_ms) as started:`` — the block's answer or refusal leaves on a bucket boundary
    (``started``: the block's start, for `boundary`)."""
    started = time.monotonic()
    try:
        yield started
    finally:
        await pad(started, bucket_ms)
