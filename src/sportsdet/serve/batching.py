"""Micro-batching: images from concurrent requests share one model call.

A request puts its preprocessed images on one asyncio queue and awaits their probabilities.
`lanes` consumer tasks (one per model run that may go at once: onnxruntime's single-threaded
runs, see `runtime.model_lanes`) each take the first waiting image, gather more for at most
`max_wait` seconds or until `max_batch`, and run the model on a thread, off the event loop.
A lone request on an idle server waits for nobody: the wait only starts once a lane is free,
and while every lane is busy the queue fills by itself and the next batch is bigger.

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

import numpy as np


class Overloaded(Exception):
    """No room for the request's images: answer 429 with Retry-After."""


@dataclass
class _Job:
    array: np.ndarray
    future: asyncio.Future


class MicroBatcher:
    """Run `predict(batch[N,3,H,W]) -> probs[N,C]` over images that arrive one request at a time."""

    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        *,
        lanes: int = 1,
        max_batch: int = 8,
        max_wait: float = 0.002,
        max_in_flight: int = 64,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.predict = predict
        self.lanes = max(1, lanes)
        self.max_batch = max(1, max_batch)
        self.max_wait = max(0.0, max_wait)
        self.max_in_flight = max(1, max_in_flight)
        self.on_batch = on_batch  # (batch size, model seconds), for metrics
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

    async def submit(self, array: np.ndarray) -> np.ndarray:
        """Probabilities [C] for one preprocessed image [3,H,W]."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(array, future))
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
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    jobs.append(await asyncio.wait_for(self._queue.get(), left))
                except asyncio.TimeoutError:
                    break
            jobs = [job for job in jobs if not job.future.done()]  # a request that timed out meanwhile
            if not jobs:
                continue
            batch = np.stack([job.array for job in jobs])
            start = time.perf_counter()
            try:
                probs = await loop.run_in_executor(self._pool, self.predict, batch)
            except Exception as exc:  # noqa: BLE001  every waiting request gets the failure
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            if self.on_batch is not None:
                self.on_batch(len(jobs), time.perf_counter() - start)
            for job, row in zip(jobs, probs, strict=True):
                if not job.future.done():
                    job.future.set_result(row)
