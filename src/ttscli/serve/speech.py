"""A checked speech request as audio chunks in order, through the scheduler (asyncio side)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np

from ..errors import TextError, UnknownVoiceError
from .errors import ApiError
from .metrics import Metrics
from .parse import SpeechRequest
from .scheduler import Job, QueueFull, Scheduler

RETRY_AFTER_SECONDS = 1


@dataclass
class Chunk:
    """A sentence's audio (float32 mono at `sample_rate`), preceded by its pause if any."""

    audio: np.ndarray
    sample_rate: int
    index: int
    count: int


class Speech:
    """One request's audio: submit it, then iterate its chunks in order (`streamed`: the client
    plays them as they come, so the scheduler renders its first sentence first)."""

    def __init__(
        self,
        scheduler: Scheduler,
        request: SpeechRequest,
        timeout_seconds: float,
        metrics: Metrics | None = None,
        streamed: bool = False,
    ) -> None:
        self.scheduler = scheduler
        self.request = request
        self.metrics = metrics
        self.started = time.monotonic()
        self.deadline = self.started + timeout_seconds
        self.first_audio_seconds: float | None = None
        self.audio_seconds = 0.0
        self._loop = asyncio.get_running_loop()
        self._events: asyncio.Queue[tuple] = asyncio.Queue()
        try:
            voice = scheduler.engine.resolve_voice(request.voice)
        except UnknownVoiceError as exc:
            raise ApiError(400, str(exc), "voice") from exc
        self.job = Job(
            voice=voice,
            text=request.text,
            emit=self._emit,
            speed=request.speed,
            seed=request.seed,
            deadline=self.deadline,
            streamed=streamed,
        )
        self.sample_rate = 0
        self.count = 0

    def _emit(self, event: tuple) -> None:  # the scheduler's thread
        self._loop.call_soon_threadsafe(self._events.put_nowait, event)

    async def start(self) -> None:
        """Queue the job and wait until it is split: 429 when the queue is full, 400 when
        there is nothing to say, 504 past the deadline."""
        try:
            self.scheduler.submit(self.job)
        except QueueFull as exc:
            raise ApiError(
                429, f"the server is busy ({exc}); try again shortly",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            ) from exc  # fmt: skip
        event = await self._next_event()
        if event[0] == "error":
            exc = event[1]
            status = 400 if isinstance(exc, TextError | UnknownVoiceError) else 500
            raise ApiError(status, str(exc), "input" if status == 400 else None)
        _, self.count, facts = event
        self.sample_rate = facts.sample_rate
        self.pause = np.zeros(int(round(facts.pause_seconds * facts.sample_rate)), np.float32)

    def cancel(self) -> None:
        """Stop rendering this request (its client went away)."""
        self.scheduler.cancel(self.job)
        self._events.put_nowait(("cancelled",))

    async def chunks(self) -> AsyncIterator[Chunk]:
        """Each piece's audio in order, as soon as it and those before it are ready; a 504
        ApiError past the deadline, a 500 one when a piece failed."""
        ready: dict[int, np.ndarray] = {}
        index = 0
        try:
            while index < self.count:
                while index not in ready:
                    event = await self._next_event()
                    if event[0] == "cancelled":
                        return
                    _, at, rendered = event
                    if rendered.error:
                        raise ApiError(500, f"synthesis failed: {rendered.error}")
                    ready[at] = rendered.audio
                audio = ready.pop(index)
                if index and len(self.pause):
                    audio = np.concatenate([self.pause, audio])
                if self.first_audio_seconds is None:
                    self.first_audio_seconds = time.monotonic() - self.started
                    if self.metrics:
                        self.metrics.first_audio_after(self.first_audio_seconds)
                self.audio_seconds += len(audio) / self.sample_rate
                yield Chunk(audio, self.sample_rate, index, self.count)
                index += 1
        finally:
            if index < self.count:
                self.scheduler.cancel(self.job)

    async def whole(self) -> np.ndarray:
        """All of the audio at once."""
        parts = [chunk.audio async for chunk in self.chunks()]
        if len(parts) < self.count:
            raise asyncio.CancelledError("the client went away")
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    async def _next_event(self) -> tuple:
        left = self.deadline - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError
            return await asyncio.wait_for(self._events.get(), left)
        except TimeoutError:
            self.scheduler.cancel(self.job)
            raise ApiError(504, "the request took longer than this server allows") from None
