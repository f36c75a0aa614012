"""Deadlines: the timeouts of every wait in flight on one event loop (INIT, invocations), served by a
single armed timer. Pure apart from the loop's timer; unit-testable."""

from __future__ import annotations

import asyncio
import heapq
from typing import Any


class TimedOut(Exception):
    pass


class Deadlines:
    """The timeouts of the waits in flight on one event loop, served by a single armed timer.

    A timer per invocation costs a libuv timer handle created, started, stopped and closed on every warm
    invoke; here a wait costs a heap push, and the one timer is armed at the earliest deadline. Finished
    waits stay in the heap until they reach its top or the heap is compacted (when it holds more than
    twice the waits in flight), so it stays small however long the timeouts are.
    """

    __slots__ = ("_loop", "_heap", "_live", "_seq", "_timer", "_armed_at")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[float, int, asyncio.Future[Any]]] = []
        self._live = 0
        self._seq = 0
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at = float("inf")

    def add(self, when: float, waiter: asyncio.Future[Any]) -> None:
        """Fail `waiter` with TimedOut at loop time `when` unless it is done by then; call `finished`
        once it is."""
        self._seq += 1
        self._live += 1
        heap = self._heap
        heapq.heappush(heap, (when, self._seq, waiter))
        if len(heap) > 2 * self._live + 32:
            self._heap = heap = [entry for entry in heap if not entry[2].done()]
            heapq.heapify(heap)
        if when < self._armed_at:
            self._arm(when)

    def finished(self) -> None:
        self._live -= 1

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_at = when
        self._timer = self._loop.call_at(when, self._expire)

    def _expire(self) -> None:
        self._timer = None
        self._armed_at = float("inf")
        heap = self._heap
        now = self._loop.time()
        while heap and (heap[0][0] <= now or heap[0][2].done()):
            waiter = heapq.heappop(heap)[2]
            if not waiter.done():
                waiter.set_exception(TimedOut())
        if heap:
            self._arm(heap[0][0])
