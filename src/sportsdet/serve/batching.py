"""Micro-batching: images from concurrent requests share one model call.

A request puts its images (still encoded) on one asyncio queue and awaits their answers.
`lanes` consumer tasks (one per model run that may go at once: onnxruntime's single-threaded
runs, see `runtime.model_lanes`) each take the first waiting image, gather more for at most
`max_wait` seconds or until `max_batch`, and hand the batch to `process` on the lane's own
thread, off the event loop: it decodes the images and runs the model on them, as each worker of
`sportsdet predict` does (one busy thread per core: while one lane decodes, the other runs the
model). `process` returns one answer per item, or an exception for an item that failed.
With `max_wait` 0 (the default of `sportsdet serve`) a free lane takes what is queued and
waits for nothing: a lone request on an idle server gets no added latency, and while every lane
is busy the queue fills by itself, so the next batch is bigger exactly when load is high.
(Measured: a 2 ms wait cost a lone request ~10 ms on uvloop's timers, and bought nothing.)

Admission is bounded before any work is done: `reserve(n)` refuses a request whose images would
take the number in flight (decoding, queued or in the model) above `max_in_flight`, so an
overloaded server answers 429 at once instead of queueing without limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any


class Overloaded(Exception):
    """No room for the request's images: answer 429 with Retry-After."""


@dataclass
class _Job:
    item: Any
    future: asyncio.Future


class MicroBatcher:
    """Run `process(items) -> [answer or exception per item]` over items arriving one request at a time."""

    def __init__(
        self,
        process: Callable[[list[Any]], list[Any]],
        *,
        lanes: int = 1,
        max_batch: int = 8,
        max_wait: float = 0.0,
        max_in_flight: int = 64,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.process = process
        self.lanes = max(1, lanes)
        self.max_batch = max(1, max_batch)
        self.max_wait = max(0.0, max_wait)
        self.max_in_flight = max(1, max_in_flight)
        self.on_batch = on_batch  # (batch size, seconds), for metrics
        self.in_flight = 0
        self._queue: asyncio.Queue[_Job] | None = None
        self._tasks: list[asyncio.Task] = []
        self._pool = ThreadPoolExecutor(max_workers=self.lanes, thread_name_prefix="sportsdet-model")

    @property
    def queued(self) -> int:
        """Images waiting for the model (not counting those being decoded or run)."""
        return self._queue.qsize() if self._queue is not None else 0

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._tasks = [
            asyncio.create_task(self._lane(), name=f"sportsdet-lane-{i}") for i in range(self.lanes)
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._pool.shutdown(wait=True)

    def reserve(self, count: int) -> None:
        """Claim room for `count` images (released with `release`), or raise Overloaded."""
        if self.in_flight + count > self.max_in_flight:
            raise Overloaded(
                f"the server is busy ({self.in_flight} images in flight, limit {self.max_in_flight}); retry"
            )
        self.in_flight += count

    def release(self, count: int) -> None:
        self.in_flight = max(0, self.in_flight - count)

    async def submit(self, item: Any) -> Any:
        """The answer `process` gives for `item` (its exception is raised here)."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(item, future))
        return await future

    async def _lane(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._queue.get()]
            deadline = loop.time() + self.max_wait
            while len(jobs) < self.max_batch:
                if not self._queue.empty():
                    jobs.append(self._queue.get_nowait())
                    continue
                if self.max_wait <= 0:
                    break
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    jobs.append(await asyncio.wait_for(self._queue.get(), left))
                except TimeoutError:
                    break
            jobs = [job for job in jobs if not job.future.done()]  # a request that timed out meanwhile
            if not jobs:
                continue
            start = time.perf_counter()
            try:
                answers = await loop.run_in_executor(self._pool, self.process, [job.item for job in jobs])
            except Exception as exc:  # noqa: BLE001  every waiting request gets the failure
                answers = [exc] * len(jobs)
            if self.on_batch is not None:
                self.on_batch(len(jobs), time.perf_counter() - start)
            for job, answer in zip(jobs, answers, strict=True):
                if job.future.done():
                    continue
                if isinstance(answer, BaseException):
                    job.future.set_exception(answer)
                else:
                    job.future.set_result(answer)
