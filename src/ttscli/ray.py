"""Rendering on a Ray cluster: workers that each load the voice once, results in input order."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .errors import TTSError
from .rendering import FLUSH, Result

log = logging.getLogger(__name__)

NAMESPACE = "ttscli"
REPLACE_TIMEOUT_SECONDS = 60.0  # how long a replacement worker may take to be placed and load
ROOM_POLL_SECONDS = 3.0  # how long the freed resources of a dead worker may take to show
ACTOR_ERRORS_DOC = "the worker process died (killed, out of memory, or its machine left)"


@dataclass
class RayOptions:
    """How to run on Ray; None means a sensible default for the cluster found."""

    address: str | None = None  # None: start a local runtime; "auto": join the running cluster
    workers: int | None = None  # default: one per GPU, else one per `threads_per_worker` CPUs
    threads_per_worker: int = 1
    gather: bool = False  # workers return audio to the driver instead of writing files
    lines_per_task: int | None = None  # default: 2 x the voice's batch size
    max_attempts: int = 3  # a chunk whose worker dies this many times becomes error rows
    # a replacement for a dead worker is tried only while the cluster has room for it, and
    # given up (its chunks go to the surviving workers) if it is not ready within this time
    replace_timeout_seconds: float = field(default_factory=lambda: REPLACE_TIMEOUT_SECONDS)


@dataclass
class WorkerStats:
    """What one worker did, for the summary."""

    name: str
    host: str = "?"
    lines: int = 0
    audio_seconds: float = 0.0
    busy_seconds: float = 0.0
    died: bool = False

    @property
    def real_time_factor(self) -> float:
        return self.audio_seconds / self.busy_seconds if self.busy_seconds > 0 else 0.0


class SynthesisWorker:
    """Ray actor body: loads the voice once and renders chunks of (key, name, text) lines."""

    def __init__(self, voice_args: tuple, config, out_dir: str | None, ext: str, threads: int):
        import torch

        torch.set_num_threads(max(1, threads))
        self.load_error: str | None = None
        self.out_dir, self.ext = out_dir, ext
        try:
            from .synthesizer import Synthesizer
            from .voices import load_voice

            self.synth = Synthesizer(load_voice(*voice_args, device=config.device), config)
        except TTSError as exc:
            self.load_error = str(exc)

    def ready(self) -> tuple[str | None, str, int]:
        """(error loading the voice or None, host name, process id)."""
        return self.load_error, socket.gethostname(), os.getpid()

    def render(self, chunk: list[tuple[int, str, str]]) -> tuple[list[Result], float]:
        """Results for the chunk's lines (keys in `id`, no text), and the seconds this took.

        In shared-folder mode the audio is written here and left out of the result."""
        from .batch import audio_path, write_audio_atomic

        started = time.perf_counter()
        names = {key: name for key, name, _ in chunk}
        results = []
        for r in self.synth.stream((key, text) for key, _, text in chunk):
            r.text = None  # the driver has it
            if r.error is None and self.out_dir is not None:
                path = audio_path(self.out_dir, names[r.id], self.ext)
                write_audio_atomic(path, r.audio, r.sample_rate)
                r.written, r.duration_seconds, r.audio = path.name, r.audio_seconds, None
            results.append(r)
        return results, time.perf_counter() - started


@dataclass
class _Chunk:
    index: int
    items: list[tuple[object, str]]  # (caller's id, text)
    attempts: int = 0


@dataclass
class _Worker:
    handle: object
    stats: WorkerStats
    in_flight: int = 0


class RayPool:
    """Renders (id, text) pairs on Ray actors; `stream` yields Results in input order.

    A worker that dies (killed, out of memory, its machine gone) is replaced only while the
    cluster has room for another, within `RayOptions.replace_timeout_seconds`; its chunks go
    to the surviving workers. `stream` raises TTSError only when no worker is left.
    """

    def __init__(
        self,
        voice_args: tuple,
        config,
        options: RayOptions,
        out_dir: Path | None,
        ext: str,
        name_of: Callable[[object], str],
        batch_size: int = 8,
    ) -> None:
        self.voice_args, self.config, self.options = voice_args, config, options
        self.out_dir = None if options.gather or out_dir is None else str(Path(out_dir).resolve())
        self.ext, self.name_of = ext, name_of
        self.lines_per_task = options.lines_per_task or 2 * max(1, batch_size)
        self.workers: list[_Worker] = []
        self.retired: list[WorkerStats] = []
        self.retried_lines = 0
        self.not_replaced: list[str] = []  # why dead workers got no replacement
        self._handles: list = []  # every actor started, for close()
        self._started_ray = False
        self._serial = 0

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Connect to (or start) Ray and start the workers; raises TTSError if one cannot load
        (then every actor started is stopped, and a runtime this pool started is shut down)."""
        ray = _import_ray()
        try:
            self._start(ray)
        except BaseException:
            self.close()
            raise

    def _start(self, ray) -> None:
        if not ray.is_initialized():
            kwargs = dict(namespace=NAMESPACE, logging_level=logging.WARNING, log_to_driver=False)
            if self.options.address is None:
                # a private runtime on this machine: listen on the loopback interface only
                kwargs.update(
                    address="local", include_dashboard=False, _node_ip_address="127.0.0.1"
                )
            else:
                _check_reachable(self.options.address)
                kwargs.update(address=self.options.address)
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise TTSError(f"cannot start or join Ray ({self.options.address}): {exc}") from exc
            self._started_ray = True
        self.gpu_per_worker = self._gpus_per_worker(ray)
        count = self.options.workers or self._default_workers(ray)
        gpus = int(ray.cluster_resources().get("GPU", 0))
        if self.gpu_per_worker and count > gpus:  # Ray would wait for GPUs for ever
            raise TTSError(
                f"{count} workers need a GPU each and the Ray cluster has {gpus}: use "
                f"--workers {gpus} (or --device cpu)"
            )
        for _ in range(count):
            self.workers.append(self._new_worker(ray))
        for worker in list(self.workers):
            self._wait_ready(ray, worker)
        if not self.workers:
            raise TTSError("no Ray worker could start")

    def close(self) -> None:
        """Stop every actor this pool started, and the Ray runtime if it started one."""
        ray = _import_ray()
        for handle in self._handles:
            with contextlib.suppress(Exception):  # already dead, or Ray is going away
                ray.kill(handle, no_restart=True)
        self._handles = []
        self.retired.extend(w.stats for w in self.workers)
        self.workers = []
        if self._started_ray:
            self._started_ray = False
            ray.shutdown()

    def __enter__(self) -> RayPool:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def stats(self) -> list[WorkerStats]:
        return self.retired + [w.stats for w in self.workers]

    # -- streaming ----------------------------------------------------------------------------
    def stream(self, items: Iterable[tuple[object, str] | object]) -> Iterator[Result]:
        """Render (id, text) pairs on the workers, yielding results in input order.

        Input is read lazily: at most two chunks per worker are in flight. FLUSH (see
        ttscli.rendering) sends what is buffered and waits for every pending result.
        """
        run = _Dispatch(self, _import_ray())
        for item in items:
            if item is FLUSH:
                run.send_buffer()
                yield from run.drain()
                continue
            run.buffer.append(item)
            if len(run.buffer) >= self.lines_per_task:
                run.send_buffer()
                while len(run.pending) >= 2 * len(self.workers):
                    run.collect(block=True)
                run.collect(block=False)
                yield from run.ready_results()
        run.send_buffer()
        yield from run.drain()

    # -- internals ----------------------------------------------------------------------------
    def _replace(self, ray, worker: _Worker) -> None:
        """Retire a dead worker; start another in its place if the cluster has room for one
        and it is ready in time (its chunks fail on their own and go to the others)."""
        if worker not in self.workers:
            return  # another of its chunks already reported the death
        worker.stats.died = True
        self.workers.remove(worker)
        self.retired.append(worker.stats)
        room = self._room(ray)
        if room:
            log.warning("%s died and was not replaced: %s", worker.stats.name, room)
            self.not_replaced.append(f"{worker.stats.name}: {room}")
            return
        replacement = self._new_worker(ray)
        try:
            self.workers.append(replacement)
            self._wait_ready(ray, replacement, self.options.replace_timeout_seconds)
        except TTSError as exc:
            if replacement in self.workers:
                self.workers.remove(replacement)
            with contextlib.suppress(Exception):
                ray.kill(replacement.handle, no_restart=True)
            log.warning("could not start a replacement worker: %s", exc)
            self.not_replaced.append(f"{worker.stats.name}: {exc}")

    def _room(self, ray) -> str | None:
        """None when the cluster has the free CPUs (and GPU) one more worker needs, else why
        not (asked again for ROOM_POLL_SECONDS: a dead worker's CPUs take a moment to show)."""
        deadline = time.monotonic() + ROOM_POLL_SECONDS
        while True:
            free = ray.available_resources()
            cpus = self.options.threads_per_worker
            why = None
            if free.get("CPU", 0) < cpus:
                why = f"the cluster has no {cpus} free CPU(s) for a replacement"
            elif self.gpu_per_worker and free.get("GPU", 0) < self.gpu_per_worker:
                why = "the cluster has no free GPU for a replacement"
            if why is None or time.monotonic() >= deadline:
                return why
            time.sleep(0.1)

    def _none_left(self) -> str:
        why = "; ".join(self.not_replaced[-2:]) or "none could be restarted"
        return (
            f"every Ray worker died ({why}); the lines done so far are in the manifest: run "
            "the same command again to resume"
        )

    def _new_worker(self, ray) -> _Worker:
        name = f"worker-{self._serial}"
        self._serial += 1
        actor_class = ray.remote(SynthesisWorker)
        handle = actor_class.options(
            name=f"{name}.{os.getpid()}.{id(self)}",
            namespace=NAMESPACE,
            num_cpus=self.options.threads_per_worker,
            num_gpus=self.gpu_per_worker,
            max_restarts=0,
        ).remote(
            self.voice_args, self.config, self.out_dir, self.ext, self.options.threads_per_worker
        )
        self._handles.append(handle)
        return _Worker(handle, WorkerStats(name))

    def _wait_ready(self, ray, worker: _Worker, timeout_seconds: float | None = None) -> None:
        ref = worker.handle.ready.remote()
        if timeout_seconds is not None:
            finished, _ = ray.wait([ref], num_returns=1, timeout=timeout_seconds)
            if not finished:
                raise TTSError(
                    f"Ray worker {worker.stats.name} was not ready within {timeout_seconds:g} s "
                    "(no room on the cluster?)"
                )
        try:
            error, host, pid = ray.get(ref)
        except _actor_errors(ray) as exc:
            self.workers.remove(worker)
            raise TTSError(f"Ray worker {worker.stats.name} failed to start: {exc}") from exc
        if error is not None:
            raise TTSError(error)
        worker.stats.host = f"{host}:{pid}"

    def _gpus_per_worker(self, ray) -> float:
        device = getattr(self.config, "device", None) or "auto"
        has_gpus = ray.cluster_resources().get("GPU", 0) > 0
        return 1.0 if has_gpus and device != "cpu" else 0.0

    def _default_workers(self, ray) -> int:
        resources = ray.cluster_resources()
        if self.gpu_per_worker:
            return max(1, int(resources.get("GPU", 1)))
        return max(1, int(resources.get("CPU", 1) // max(1, self.options.threads_per_worker)))


class _Dispatch:
    """One `RayPool.stream` call: chunks in flight, results waiting for their turn."""

    def __init__(self, pool: RayPool, ray) -> None:
        self.pool, self.ray = pool, ray
        self.pending: dict = {}  # ref -> (chunk, worker)
        self.done: dict[int, list[Result]] = {}  # chunk index -> its results
        self.buffer: list[tuple[object, str]] = []
        self.next_out = 0
        self.n_chunks = 0

    def submit(self, chunk: _Chunk) -> None:
        pool = self.pool
        if not pool.workers:
            raise TTSError(pool._none_left())
        worker = min(pool.workers, key=lambda w: w.in_flight)
        payload = [
            (i, pool.name_of(item_id), text) for i, (item_id, text) in enumerate(chunk.items)
        ]
        ref = worker.handle.render.remote(payload)
        worker.in_flight += 1
        self.pending[ref] = (chunk, worker)

    def send_buffer(self) -> None:
        if self.buffer:
            self.submit(_Chunk(self.n_chunks, self.buffer))
            self.n_chunks += 1
            self.buffer = []

    def ready_results(self) -> Iterator[Result]:
        while self.next_out in self.done:
            yield from self.done.pop(self.next_out)
            self.next_out += 1

    def drain(self) -> Iterator[Result]:
        """Every pending result, in order."""
        while self.pending:
            self.collect(block=True)
            yield from self.ready_results()
        yield from self.ready_results()

    def collect(self, block: bool) -> None:
        if not self.pending:
            return
        timeout = None if block else 0
        finished, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=timeout)
        for ref in finished:
            self.finish(ref)

    def finish(self, ref) -> None:
        """Record a finished chunk; a dead worker's chunk is sent again (or becomes errors)."""
        ray, pool = self.ray, self.pool
        chunk, worker = self.pending.pop(ref)
        worker.in_flight -= 1
        try:
            results, seconds = ray.get(ref)
        except _actor_errors(ray) as exc:
            log.info("worker %s died: %s", worker.stats.name, exc)
            pool._replace(ray, worker)
            if not pool.workers:
                raise TTSError(pool._none_left()) from exc
            chunk.attempts += 1
            if chunk.attempts < pool.options.max_attempts:
                pool.retried_lines += len(chunk.items)
                self.submit(chunk)
                return
            why = f"{ACTOR_ERRORS_DOC} {chunk.attempts} time(s) while rendering this line"
            self.done[chunk.index] = [_failed(item_id, why) for item_id, _ in chunk.items]
            return
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            why = f"worker failed: {type(cause).__name__}: {cause}"
            self.done[chunk.index] = [_failed(item_id, why) for item_id, _ in chunk.items]
            return
        worker.stats.busy_seconds += seconds
        for r in results:
            r.id = chunk.items[r.id][0]
            worker.stats.lines += 1
            worker.stats.audio_seconds += r.audio_seconds
        self.done[chunk.index] = results


def _failed(item_id: object, why: str) -> Result:
    return Result(item_id, None, None, 0, error=why)


def _actor_errors(ray) -> tuple[type[BaseException], ...]:
    exceptions = ray.exceptions
    names = ("RayActorError", "ActorDiedError", "ActorUnavailableError", "WorkerCrashedError")
    return tuple(getattr(exceptions, n) for n in names if hasattr(exceptions, n))


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise TTSError("--ray needs Ray: pip install 'ttscli[ray]'") from exc
    return ray


def _check_reachable(address: str, timeout_seconds: float = 10.0) -> None:
    """A TTSError if HOST:PORT (or ray://HOST:PORT) takes no TCP connection: Ray itself would
    retry an unreachable address for ever. "auto" is left to Ray."""
    import socket

    host_port = address.removeprefix("ray://")
    if address == "auto" or ":" not in host_port:
        return
    host, _, port = host_port.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_seconds).close()
    except (OSError, ValueError) as exc:
        raise TTSError(f"cannot reach the Ray cluster at {address}: {exc}") from exc
