"""Dynamic batching: images of requests that arrive together are read in one model call.

    batcher = Batcher(Reader(model), max_batch=64, max_wait_ms=2, max_queue=256)
    batcher.start()
    with batcher.arriving():                        # a request is being received and decoded
        images = ...
    readings = await batcher.read(images)           # from any number of concurrent requests
    batcher.stop()

One worker thread owns the model. It takes every image waiting when it is
free (at most `max_batch`). Under load images pile up while the model runs,
so batches grow by themselves. When fewer than `max_batch` wait and other
requests are still arriving (between `arriving()` and `read`: their bodies
being received or decoded), it waits for them, up to `max_wait_ms` after the
first waiting image came; with none arriving it reads at once, so a lone
client pays no wait at all. The model is called through `Reader.read`, the kit's
one prediction path (uint8 input, `models.decoding`). At most `max_queue`
images wait: past that `read` raises `QueueFullError` (the service answers 503
with Retry-After) rather than letting memory grow without bound.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from dataclasses import dataclass, field

import numpy as np


class QueueFullError(RuntimeError):
    """More images wait than the batcher accepts; try again shortly."""


@dataclass
class _Waiting:
    image: np.ndarray
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    arrived: float = field(default_factory=time.monotonic)


class Batcher:
    """Reads images from concurrent callers in shared model calls.

    Args:
        reader: A `models.reader.Reader`.
        max_batch: The most images in one model call (1 turns batching off).
        max_wait_ms: How long after the first waiting image the worker may wait for images still arriving.
        max_queue: The most images waiting at once.
    """

    def __init__(self, reader, max_batch: int = 64, max_wait_ms: float = 2.0, max_queue: int = 256):
        if max_batch < 1 or max_queue < max_batch or max_wait_ms < 0:
            raise ValueError(
                "Expected max_batch >= 1, max_queue >= max_batch and max_wait_ms >= 0. "
                f"Received: max_batch={max_batch}, max_queue={max_queue}, max_wait_ms={max_wait_ms}"
            )
        self.reader = reader
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait_ms / 1000, max_queue
        self.model_calls = 0
        self.images_read = 0
        self.batch_sizes = collections.Counter()  # model-call size -> number of such calls
        self._waiting = collections.deque()
        self._condition = threading.Condition()
        self._thread = None
        self._stopping = False
        self._arriving = 0

    @property
    def waiting(self) -> int:
        """Images waiting for the model now."""
        return len(self._waiting)

    def start(self) -> None:
        """Starts the worker thread (once)."""
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._work, name="model-batcher", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Lets the worker read what waits, then ends it."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @contextlib.contextmanager
    def arriving(self):
        """Marks a request whose images are on their way (body being read, images decoded) until `read`.

        While any request is arriving, the worker may wait (up to `max_wait_ms`) to read its images with
        those already waiting. Leave the block before `await read(...)`.
        """
        with self._condition:
            self._arriving += 1
        try:
            yield
        finally:
            with self._condition:
                self._arriving -= 1
                self._condition.notify()

    async def read(self, images) -> list:
        """Reads images (each (height, width, channels), uint8) in the model calls of the moment.

        Returns:
            One `models.reader.Reading` per image, in order.

        Raises:
            QueueFullError: Taking them would leave more than `max_queue` images waiting.
            RuntimeError: The batcher is not running.
        """
        loop = asyncio.get_running_loop()
        waiting = [_Waiting(image, loop.create_future(), loop) for image in images]
        with self._condition:
            if self._thread is None or self._stopping:
                raise RuntimeError("The batcher is not running.")
            if len(self._waiting) + len(waiting) > self.max_queue:
                raise QueueFullError(f"{len(self._waiting)} images wait already; at most {self.max_queue} may wait.")
            self._waiting.extend(waiting)
            self._condition.notify()
        return list(await asyncio.gather(*(item.future for item in waiting)))

    def _next_batch(self) -> list[_Waiting] | None:
        """Blocks until a batch is due; None once stopping with nothing left."""
        with self._condition:
            while not self._waiting:
                if self._stopping:
                    return None
                self._condition.wait()
            deadline = self._waiting[0].arrived + self.max_wait
            while len(self._waiting) < self.max_batch and self._arriving and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._condition.wait(remaining)
            return [self._waiting.popleft() for _ in range(min(self.max_batch, len(self._waiting)))]

    def _work(self) -> None:
        while (batch := self._next_batch()) is not None:
            # Images of one shape go in one call; they differ only for models with an open input size.
            by_shape = collections.defaultdict(list)
            for item in batch:
                by_shape[item.image.shape].append(item)
            for items in by_shape.values():
                self._read_batch(items)

    def _read_batch(self, items: list[_Waiting]) -> None:
        try:
            readings = self.reader.read(np.stack([item.image for item in items]))
            outcomes = [(reading, None) for reading in readings]
        except Exception as error:  # A failed call fails its requests only; the worker carries on.
            outcomes = [(None, error)] * len(items)
        self.model_calls += 1
        self.images_read += len(items)
        self.batch_sizes[len(items)] += 1
        # One wake-up of each event loop for the whole batch, not one per image.
        by_loop = collections.defaultdict(list)
        for item, (reading, error) in zip(items, outcomes):
            by_loop[item.loop].append((item.future, reading, error))
        for loop, answers in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, answers)
            except RuntimeError:  # Its event loop has closed: nobody waits for these answers any more.
                pass


def _settle(answers) -> None:
    for future, reading, error in answers:
        if future.done():  # The request was cancelled (its client went away).
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(reading)
