"""The heavy lane (`gateway.deps.HeavyLane`): ``size`` calls run at once, ``queue`` more wait first come first
served, a wait runs out after ``wait_s``, one call beyond the queue is refused at once, and a call cancelled
while waiting gives back a place it was just handed."""

from __future__ import annotations

import anyio
import pytest

from gateway.deps import HeavyLane

LONG_S = 600.0  # a wait that must not run out in these tests


def run(fn) -> None:
    anyio.run(fn, backend="asyncio")


def test_size_run_queue_wait_and_one_more_is_refused_first_come_first_served():
    async def main() -> None:
        lane = HeavyLane(size=2, queue=2, wait_s=LONG_S)
        assert await lane.enter() and await lane.enter()
        order: list[int] = []

        async def waiter(i: int) -> None:
            assert await lane.enter()
            order.append(i)

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter, 1)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(waiter, 2)
            await anyio.wait_all_tasks_blocked()
            assert lane.running == 2 and lane.waiting == 2
            assert not await lane.enter()  # the queue is full: refused at once
            lane.leave()
            await anyio.wait_all_tasks_blocked()
            assert order == [1] and lane.running == 2 and lane.waiting == 1  # the place was handed over
            lane.leave()
        assert order == [1, 2] and lane.running == 2 and lane.waiting == 0
        lane.leave()
        lane.leave()
        assert lane.running == 0

    run(main)


def test_a_wait_that_runs_out_is_refused_and_leaves_the_queue():
    async def main() -> None:
        lane = HeavyLane(size=1, queue=5, wait_s=0.01)
        assert await lane.enter()
        assert not await lane.enter()  # waited, nobody left: refused
        assert lane.waiting == 0 and lane.running == 1
        lane.leave()
        assert await lane.enter()  # a free place is taken at once

    run(main)


def test_no_queue_means_refused_as_soon_as_the_lane_is_full():
    async def main() -> None:
        lane = HeavyLane(size=1, queue=0, wait_s=LONG_S)
        assert await lane.enter()
        assert not await lane.enter()

    run(main)


@pytest.mark.parametrize("handed_over_first", [False, True])
def test_a_call_cancelled_while_waiting_keeps_no_place(handed_over_first: bool):
    async def main() -> None:
        lane = HeavyLane(size=1, queue=5, wait_s=LONG_S)
        assert await lane.enter()

        async def call() -> None:  # as `heavy_call` does: a place it got is given back when it ends
            if await lane.enter():
                try:
                    await anyio.sleep_forever()
                finally:
                    lane.leave()

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await anyio.wait_all_tasks_blocked()
            assert lane.waiting == 1
            if handed_over_first:  # the place is handed over and the waiter cancelled before it runs
                lane.leave()
            tg.cancel_scope.cancel()
        assert lane.waiting == 0
        assert lane.running == (0 if handed_over_first else 1)

    run(main)
