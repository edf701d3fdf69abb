"""evcp.aio: the shared asyncio helpers."""

import asyncio

from evcp.aio import next_multiple, sleep_until, wait_event_until


async def test_periodic_loops_on_one_grid_fall_due_in_the_same_loop_iteration():
    loop = asyncio.get_running_loop()
    woken: list[tuple[str, int]] = []
    iteration = [0]

    def count_iterations():
        iteration[0] += 1
        loop.call_soon(count_iterations)

    count_iterations()
    deadline = next_multiple(0.05)
    assert 0 < deadline - loop.time() <= 0.05

    async def sleeper():
        await sleep_until(next_multiple(0.05))
        woken.append(("sleep", iteration[0]))

    async def waiter():
        assert not await wait_event_until(asyncio.Event(), next_multiple(0.05))
        woken.append(("wait", iteration[0]))

    await asyncio.gather(sleeper(), waiter())
    assert loop.time() >= deadline
    assert woken[0][1] == woken[1][1], f"one wakeup for both: {woken}"


async def test_wait_event_until_returns_as_soon_as_the_event_is_set():
    loop = asyncio.get_running_loop()
    event = asyncio.Event()
    loop.call_later(0.01, event.set)
    started = loop.time()
    assert await wait_event_until(event, started + 30)
    assert loop.time() - started < 5
