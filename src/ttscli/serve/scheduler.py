"""The cross-request scheduler: render threads that batch every request's sentences together."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import TTSError
from ..pausing import work_between_steps
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
    streamed: bool = False  # its client plays pieces as they come: its first one goes first
    deadline: float = float("inf")  # time.monotonic() after which nothing more is rendered
    created: float = field(default_factory=time.monotonic)
    started: bool = False  # a piece of it was taken into a batch
    cancelled: bool = False
    batches: int = 0  # batches that took pieces of it

    @property
    def quota(self) -> int | None:
        """Pieces it may have in the next batch: streamed, 1, 1, 2, 4, 8... (its first audio
        comes after one sentence's rendering, and each batch renders while the last one
        plays); whole, no limit but the batch's size (its client waits for the last piece)."""
        return 2 ** max(0, self.batches - 1) if self.streamed else None

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
    """Renders jobs' pieces on `workers` render threads, which alone touch the Engine's models.

    Each render thread takes the best batch of what is queued when it is free. A streamed
    request's first sentence does not wait for a batch to end: a render thread in the middle
    of one renders it between two decoder steps or Griffin-Lim iterations
    (`ttscli.pausing`), then goes on. A seeded batch renders while no other does (the
    decoder's dropout draws from torch's global generator), and is never interrupted: its
    audio is the same alone or under load.
    """

    def __init__(
        self,
        engine: Engine,
        max_queue: int = 64,
        metrics: Metrics | None = None,
        batch_wait_seconds: float = BATCH_WAIT_SECONDS,
        workers: int = 1,
    ) -> None:
        if workers < 1:
            raise ValueError("a scheduler needs at least one render thread")
        self.engine = engine
        self.max_queue = max_queue
        self.metrics = metrics or Metrics()
        self.batch_wait_seconds = batch_wait_seconds
        self.workers = workers
        self.ready = threading.Event()  # the default voice is loaded and warmed up
        self.failure: str | None = None  # why the default voice could not be loaded
        self._cond = threading.Condition()
        self._incoming: list[Job] = []
        self._pending: list[_Piece] = []
        self._waiting = 0  # admitted jobs none of whose pieces was taken yet
        self._facts: dict[str, VoiceFacts] = {}
        self._stopping = False
        self._rendering = 0  # render threads inside engine.render
        self._exclusive = False  # a seeded batch renders, or waits for the others to end
        self._warmed = threading.Event()  # the warm-up ended, well or not
        self._urgent_waiting = 0  # queued pieces that may interrupt a batch (see _urgent)
        self._free_since = [0.0] * workers  # when each render thread's last batch ended
        self._lent = [0.0] * workers  # seconds each thread's batch spent on interruptions
        self._threads = [
            threading.Thread(target=self._run, args=(lane,), name=f"ttscli-render-{lane}",
                             daemon=True)
            for lane in range(workers)
        ]  # fmt: skip

    # -- any thread -----------------------------------------------------------------------------
    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Drop what is queued, finish the batches being rendered, then end the threads (call
        it once no client waits: the server drained its requests)."""
        with self._cond:
            self._stopping = True
            for job in {p.job for p in self._pending} | set(self._incoming):
                job.cancelled = True
            self._drop_dead()
            self._cond.notify_all()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout)

    def submit(self, job: Job) -> None:
        """Queue a job, or QueueFull at once when max_queue requests already wait to start."""
        with self._cond:
            if self._waiting >= self.max_queue:
                raise QueueFull(f"{self._waiting} requests are waiting to start")
            self._waiting += 1
            self._publish_depth()
            if job.voice not in self._facts:  # its voice is loaded on a render thread
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

    # -- the render threads ---------------------------------------------------------------------
    def _run(self, lane: int) -> None:
        if lane == 0:
            self._warm_up()
        self._warmed.wait()
        if self.failure is not None:
            return
        while True:
            with self._cond:
                while not (
                    self._incoming or (self._pending and not self._exclusive) or self._stopping
                ):
                    self._cond.wait()
                if self._stopping and not (self._incoming or self._pending):
                    return
                incoming, self._incoming = self._incoming, []
            try:
                for job in incoming:
                    self._split(job)
                batch = self._next_batch(lane)
                if batch:
                    self._render(batch, lane)
            except Exception:  # a bug must not stop a thread every request waits on
                log.exception("scheduler error")

    def _warm_up(self) -> None:
        """Load the default voice and render once (the models and the text front end are
        shared: the other lanes' synthesizers are made on first use)."""
        try:
            self._facts[self.engine.default_voice] = self.engine.facts(self.engine.default_voice)
            self.engine.warm_up(self.engine.default_voice)
        except TTSError as exc:  # a user's mistake (no such GPU, a bad file): one line
            self.failure = str(exc)
        except Exception as exc:  # noqa: BLE001 - reported by the server, which then stops
            log.exception("the default voice cannot be used")
            self.failure = str(exc) or type(exc).__name__
        else:
            self.ready.set()
        finally:
            self._warmed.set()

    def _split(self, job: Job) -> None:
        """Cut a new job into pieces and queue them (loading its voice first when needed:
        only on a render thread)."""
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

    def _batch_size(self, voice: str) -> int:
        """Pieces per batch on one render thread: the voice's batch size shared among them."""
        return max(1, -(-self._facts[voice].batch_size // self.workers))

    def _next_batch(self, lane: int) -> list[_Piece]:
        """Wait for a full batch, up to batch_wait_seconds after the oldest piece came and
        after this thread's last batch ended (its answers bring clients' next requests back
        within milliseconds), then take the best one; [] when new jobs arrived meanwhile (they
        are split first) or a seeded batch holds the models. A streamed request's first
        sentence does not wait."""
        with self._cond:
            self._drop_dead()
            while self._pending and not self._exclusive:
                batch = self._pick()
                since = max(min(p.queued_at for p in self._pending), self._free_since[lane])
                wait = since + self.batch_wait_seconds - time.monotonic()
                size = self._batch_size(batch[0].job.voice)
                if len(batch) >= size or wait <= 0 or self._stopping or _urgent(batch[0]):
                    break
                self._cond.wait(wait)
                if self._incoming:
                    return []
                self._drop_dead()
            else:
                return []
            self._take(batch)
            if batch[0].job.seed is not None:  # alone: no other batch draws meanwhile
                self._exclusive = True
                while self._rendering:
                    self._cond.wait()
            self._rendering += 1
            return batch

    def _take(self, batch: list[_Piece]) -> None:
        """Remove a batch's pieces from the queue (called with the lock held)."""
        taken = set(map(id, batch))
        self._pending = [p for p in self._pending if id(p) not in taken]
        for job in {p.job for p in batch}:
            job.batches += 1
            if not job.started:
                job.started = True
                self._waiting -= 1
        self._publish_depth()

    def _pick(self, candidates: list[_Piece] | None = None) -> list[_Piece]:
        """The next batch. A streamed request's first sentence leads, with other streamed
        first sentences only (its first audio waits for nothing else); else the oldest
        request's next piece leads, with pieces of similar length. A request has at most its
        quota of pieces in a batch, in order; a seeded request's batch holds it alone."""
        candidates = self._pending if candidates is None else candidates
        anchor = min(
            candidates,
            key=lambda p: (not (p.job.streamed and p.index == 0), p.job.created, p.index),
        )
        size = self._batch_size(anchor.job.voice)
        same = _next_per_job([p for p in candidates if p.key == anchor.key], size)
        if anchor.job.seed is not None:
            return sorted(same, key=lambda p: p.index)
        if anchor.job.streamed and anchor.index == 0:
            firsts = [p for p in same if p.job.streamed and p.index == 0]
            return sorted(firsts, key=lambda p: p.job.created)[:size]
        same.remove(anchor)
        same.sort(key=lambda p: (abs(len(p.text) - len(anchor.text)), p.job.created, p.index))
        return [anchor, *same[: size - 1]]

    def _render(self, batch: list[_Piece], lane: int) -> None:
        seeded = batch[0].job.seed is not None
        try:
            if seeded:
                self._render_now(batch, lane)
            else:
                with work_between_steps(lambda: self._interrupt(lane)):
                    self._render_now(batch, lane)
        finally:
            with self._cond:
                self._rendering -= 1
                if seeded:
                    self._exclusive = False
                self._free_since[lane] = time.monotonic()
                self._cond.notify_all()

    def _interrupt(self, lane: int) -> None:
        """Between two steps of an unseeded batch: render the streamed first sentences that
        wait (on this thread, with a synthesizer of their own), then let the batch go on."""
        if not self._urgent_waiting:  # read without the lock: at worst one step late
            return
        with self._cond:
            urgent = [p for p in self._pending if _urgent(p)]
            if not urgent or self._exclusive or self._stopping:
                return
            batch = self._pick(urgent)
            self._take(batch)
        self._lent[lane] += self._render_now(batch, lane + self.workers)

    def _render_now(self, batch: list[_Piece], lane: int) -> float:
        """Render a batch on a lane (a thread's own, or lane + workers for its interruptions)
        and hand each piece to its job; the seconds it took, interruptions not counted."""
        job = batch[0].job
        lent = self._lent[lane] if lane < self.workers else 0.0
        started = time.perf_counter()
        try:
            results = self.engine.render(
                job.voice, [p.text for p in batch], job.speed, job.seed, lane
            )
        except Exception as exc:  # noqa: BLE001 - every piece of the batch reports it
            log.exception("rendering a batch of %d pieces failed", len(batch))
            results = [Rendered(None, f"rendering failed: {type(exc).__name__}")] * len(batch)
        elapsed = time.perf_counter() - started
        if lane < self.workers:
            elapsed -= self._lent[lane] - lent
        rate = self._facts[job.voice].sample_rate
        audio_seconds = sum(len(r.audio) / rate for r in results if r.audio is not None)
        self.metrics.batch_done(len(batch), elapsed, audio_seconds)
        for piece, result in zip(batch, results, strict=True):
            if not piece.job.cancelled:
                piece.job.emit(("piece", piece.index, result))
        return elapsed

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
        """Called whenever the queue changes (with the lock held)."""
        self._urgent_waiting = sum(map(_urgent, self._pending))
        self.metrics.set_queue(self._waiting, len(self._pending))


def _urgent(piece: _Piece) -> bool:
    """A streamed request's unseeded first sentence: it may interrupt a batch."""
    return piece.job.streamed and piece.index == 0 and piece.job.seed is None


def _next_per_job(pieces: list[_Piece], size: int) -> list[_Piece]:
    """Each job's next pieces: its lowest-indexed ones, as many as its quota (and size)."""
    by_job: dict[Job, list[_Piece]] = {}
    for piece in pieces:
        by_job.setdefault(piece.job, []).append(piece)
    out = []
    for job, own in by_job.items():
        quota = size if job.quota is None else min(size, job.quota)
        out.extend(sorted(own, key=lambda p: p.index)[:quota])
    return out
