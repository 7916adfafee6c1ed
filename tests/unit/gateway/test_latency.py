"""`gateway.latency.pad` rounds the time spent up to whole buckets (fake clock and sleep; no timing asserted)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from gateway import latency


@pytest.mark.parametrize(("elapsed", "bucket_ms", "expected"), [
    (0.07, 50, 0.03),    # 70 ms → 100 ms
    (0.12, 50, 0.03),    # 120 ms → 150 ms
    (0.0, 50, 0.05),     # an instant answer still takes one bucket
    (0.1, 50, None),     # exactly two buckets: nothing to add
    (0.07, 0, None),     # padding off
])
def test_pad_rounds_up_to_whole_buckets(monkeypatch: pytest.MonkeyPatch, elapsed: float, bucket_ms: int,
                                        expected: float | None) -> None:
    slept: list[float] = []

    async def fake_sleep(s: float) -> None:
        slept.append(s)

    monkeypatch.setattr(latency, "time", SimpleNamespace(monotonic=lambda: 10.0 + elapsed))
    monkeypatch.setattr(latency, "_sleep", fake_sleep)
    asyncio.run(latency.pad(10.0, bucket_ms))
    if expected is None:
        assert slept == []
    else:
        assert len(slept) == 1 and slept[0] == pytest.approx(expected, abs=1e-9)


def test_padded_pads_answers_and_refusals_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    async def spy(started: float, bucket_ms: int) -> None:
        calls.append(bucket_ms)

    monkeypatch.setattr(latency, "pad", spy)

    async def answer() -> str:
        async with latency.padded(50):
            return "yes"

    async def refusal() -> None:
        async with latency.padded(50):
            raise ValueError("refused")

    assert asyncio.run(answer()) == "yes"
    with pytest.raises(ValueError):
        asyncio.run(refusal())
    assert calls == [50, 50]
