"""The cross-request scheduler: one thread owns the Engine and batches every request's sentences."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import TTSError
from .engine import Engine, Rendered, VoiceFacts
from .metrics import Metrics

log = logging.getLogger(__name__)

BATCH_WAIT_SECONDS = 0.01  # how long a batch that is not full waits for more pieces


class QueueFull(Exception):
    """As many requests wait to start as the server takes: try again shortly."""


@dataclass(eq=False)
class Job:
    """One request: a text for a voice. `emit` receives, from the scheduler's thread,
    ("split", count, VoiceFacts), then ("piece", index, Rendered) for each piece (in any order),
    or ("error", TTSError) when the text or voice cannot be used."""

    voice: str
    text: str
    emit: Callable[[tuple], None]
    speed: float = 1.0
    seed: int | None = None
    deadline: float = float("inf")  # time.monotonic() after which nothing more is rendered
    created: float = field(default_factory=time.monotonic)
    started: bool = False  # a piece of it was taken into a batch
    cancelled: bool = False
    batches: int = 0  # batches that took pieces of it

    @property
    def quota(self) -> int:
        """Pieces it may have in the next batch: 1, 1, 2, 4, 8... (its first audio comes
        after one sentence's rendering, and each batch renders while the last one plays)."""
        return 2 ** max(0, self.batches - 1)

    @property
    def alive(self) -> bool:
        return not self.cancelled and time.monotonic() < self.deadline


@dataclass(eq=False)
class _Piece:
    job: Job
    index: int
    text: str
    queued_at: float

    @property
    def key(self) -> tuple:
        """Pieces with different keys never share a batch (a seeded job's key is its own)."""
        job = self.job
        return (job.voice, job.speed, None if job.seed is None else id(job))


class Scheduler:
    """Renders jobs' pieces on one thread, which alone touches the Engine's models."""

    def __init__(
        self,
        engine: Engine,
        max_queue: int = 64,
        metrics: Metrics | None = None,
        batch_wait_seconds: float = BATCH_WAIT_SECONDS,
    ) -> None:
        self.engine = engine
        self.max_queue = max_queue
        self.metrics = metrics or Metrics()
        self.batch_wait_seconds = batch_wait_seconds
        self.ready = threading.Event()  # the default voice is loaded and warmed up
        self.failure: str | None = None  # why the default voice could not be loaded
        self._cond = threading.Condition()
        self._incoming: list[Job] = []
        self._pending: list[_Piece] = []
        self._waiting = 0  # admitted jobs none of whose pieces was taken yet
        self._facts: dict[str, VoiceFacts] = {}
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="ttscli-scheduler", daemon=True)

    # -- any thread -----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Drop what is queued, finish the batch being rendered, then end the thread (call it
        once no client waits: the server drained its requests)."""
        with self._cond:
            self._stopping = True
            for job in {p.job for p in self._pending} | set(self._incoming):
                job.cancelled = True
            self._drop_dead()
            self._cond.notify_all()
        self._thread.join(timeout)

    def submit(self, job: Job) -> None:
        """Queue a job, or QueueFull at once when max_queue requests already wait to start."""
        with self._cond:
            if self._waiting >= self.max_queue:
                raise QueueFull(f"{self._waiting} requests are waiting to start")
            self._waiting += 1
            self._publish_depth()
            if job.voice not in self._facts:  # its voice is loaded on the scheduler's thread
                self._incoming.append(job)
                self._cond.notify_all()
                return
        self._split(job)  # at once: the text's errors need not wait for a batch to end

    def cancel(self, job: Job) -> None:
        """Forget a job's queued pieces (its client went away, or its deadline passed)."""
        with self._cond:
            job.cancelled = True
            self._drop_dead()
            self._cond.notify_all()

    @property
    def waiting(self) -> int:
        return self._waiting

    # -- the scheduler's thread -----------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._facts[self.engine.default_voice] = self.engine.facts(self.engine.default_voice)
            self.engine.warm_up(self.engine.default_voice)
        except TTSError as exc:  # a user's mistake (no such GPU, a bad file): one line
            self.failure = str(exc)
            return
        except Exception as exc:  # noqa: BLE001 - reported by the server, which then stops
            log.exception("the default voice cannot be used")
            self.failure = str(exc) or type(exc).__name__
            return
        self.ready.set()
        while True:
            with self._cond:
                while not (self._incoming or self._pending or self._stopping):
                    self._cond.wait()
                if self._stopping and not (self._incoming or self._pending):
                    return
                incoming, self._incoming = self._incoming, []
            try:
                for job in incoming:
                    self._split(job)
                batch = self._next_batch()
                if batch:
                    self._render(batch)
            except Exception:  # a bug must not stop the thread every request waits on
                log.exception("scheduler error")

    def _split(self, job: Job) -> None:
        """Cut a new job into pieces and queue them (loading its voice first when needed:
        only on the scheduler's thread)."""
        if not job.alive:
            self._forget(job)
            return
        try:
            if job.voice not in self._facts:
                self._facts[job.voice] = self.engine.facts(job.voice)
            facts = self._facts[job.voice]
            texts = self.engine.split(job.text, facts)
        except Exception as exc:  # noqa: BLE001 - the request is answered, the server goes on
            if not isinstance(exc, TTSError):
                log.exception("voice %r cannot be used", job.voice)
                exc = TTSError(f"voice {job.voice!r} cannot be used (see the server's log)")
            self._forget(job)
            job.emit(("error", exc))
            return
        job.emit(("split", len(texts), facts))  # before any piece can be rendered
        now = time.monotonic()
        with self._cond:
            self._pending.extend(_Piece(job, i, text, now) for i, text in enumerate(texts))
            self._publish_depth()
            self._cond.notify_all()

    def _forget(self, job: Job) -> None:
        """A job that will queue no piece no longer waits to start."""
        with self._cond:
            job.started = True
            self._waiting -= 1
            self._publish_depth()

    def _next_batch(self) -> list[_Piece]:
        """Wait (up to batch_wait_seconds after the oldest piece came) for a full batch, then
        take the best one; [] when new jobs arrived meanwhile (they are split first)."""
        with self._cond:
            self._drop_dead()
            while self._pending:
                batch = self._pick()
                wait = min(p.queued_at for p in self._pending) + self.batch_wait_seconds
                wait -= time.monotonic()
                size = self._facts[batch[0].job.voice].batch_size
                if len(batch) >= size or wait <= 0 or self._stopping:
                    break
                self._cond.wait(wait)
                if self._incoming:
                    return []
                self._drop_dead()
            else:
                return []
            taken = set(map(id, batch))
            self._pending = [p for p in self._pending if id(p) not in taken]
            for job in {p.job for p in batch}:
                job.batches += 1
                if not job.started:
                    job.started = True
                    self._waiting -= 1
            self._publish_depth()
            return batch

    def _pick(self) -> list[_Piece]:
        """The next batch: the oldest request's first sentence leads, with other first
        sentences; else the oldest waiting piece with pieces of similar length. A request
        has at most its quota of pieces in a batch, in order."""
        anchor = min(self._pending, key=lambda p: (p.index > 0, p.job.created, p.index))
        size = self._facts[anchor.job.voice].batch_size
        same = _next_per_job([p for p in self._pending if p.key == anchor.key], size)
        if anchor.job.seed is not None:  # a batch of its own, whatever else is queued
            return sorted(same, key=lambda p: p.index)
        if anchor.index == 0:
            firsts = sorted((p for p in same if p.index == 0), key=lambda p: p.job.created)
            batch = firsts[:size]
            longest = max(len(p.text) for p in batch)
            fillers = [p for p in same if p.index > 0 and len(p.text) <= longest]
            fillers.sort(key=lambda p: (p.job.created, p.index))
            return batch + fillers[: size - len(batch)]
        same.sort(key=lambda p: (abs(len(p.text) - len(anchor.text)), p.job.created, p.index))
        return same[:size]

    def _render(self, batch: list[_Piece]) -> None:
        job = batch[0].job
        started = time.perf_counter()
        try:
            results = self.engine.render(job.voice, [p.text for p in batch], job.speed, job.seed)
        except Exception as exc:  # noqa: BLE001 - every piece of the batch reports it
            log.exception("rendering a batch of %d pieces failed", len(batch))
            results = [Rendered(None, f"rendering failed: {type(exc).__name__}")] * len(batch)
        elapsed = time.perf_counter() - started
        rate = self._facts[job.voice].sample_rate
        audio_seconds = sum(len(r.audio) / rate for r in results if r.audio is not None)
        self.metrics.batch_done(len(batch), elapsed, audio_seconds)
        for piece, result in zip(batch, results, strict=True):
            if not piece.job.cancelled:
                piece.job.emit(("piece", piece.index, result))

    def _drop_dead(self) -> None:
        """Remove the pieces of cancelled or late jobs (called with the lock held)."""
        dead = {p.job for p in self._pending if not p.job.alive}
        if not dead:
            return
        self._pending = [p for p in self._pending if p.job not in dead]
        for job in dead:
            job.cancelled = True
            if not job.started:
                job.started = True
                self._waiting -= 1
        self._publish_depth()

    def _publish_depth(self) -> None:
        self.metrics.set_queue(self._waiting, len(self._pending))


def _next_per_job(pieces: list[_Piece], size: int) -> list[_Piece]:
    """Each job's next pieces: its lowest-indexed ones, as many as its quota (and size)."""
    by_job: dict[Job, list[_Piece]] = {}
    for piece in pieces:
        by_job.setdefault(piece.job, []).append(piece)
    out = []
    for job, own in by_job.items():
        out.extend(sorted(own, key=lambda p: p.index)[: min(size, job.quota)])
    return out
