"""Batch synthesis on a Ray cluster: workers that each load the voice once, results in order."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import TTSError

log = logging.getLogger(__name__)

NAMESPACE = "ttscli"
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


@dataclass
class RemoteResult:
    """One line's outcome from a worker; `written` names the file the worker already wrote."""

    id: object
    error: str | None
    audio: np.ndarray | None = None
    sample_rate: int = 0
    decoder_steps: int = 0
    compute_seconds: float = 0.0
    audio_seconds: float = 0.0
    written: str | None = None


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

            self.synth = Synthesizer(load_voice(*voice_args), config)
        except TTSError as exc:
            self.load_error = str(exc)

    def ready(self) -> tuple[str | None, str, int]:
        """(error loading the voice or None, host name, process id)."""
        return self.load_error, socket.gethostname(), os.getpid()

    def render(self, chunk: list[tuple[int, str, str]]) -> tuple[list[RemoteResult], float]:
        """Results for the chunk's lines (keys in `id`), and the seconds this call took."""
        from .batchio import audio_path, write_audio_atomic

        started = time.perf_counter()
        names = {key: name for key, name, _ in chunk}
        results = []
        for r in self.synth.stream((key, text) for key, _, text in chunk):
            out = RemoteResult(r.id, r.error, sample_rate=r.sample_rate)
            if r.error is None:
                out.decoder_steps, out.compute_seconds = r.decoder_steps, r.compute_seconds
                out.audio_seconds = r.audio_seconds
                if self.out_dir is None:
                    out.audio = r.audio
                else:
                    path = audio_path(self.out_dir, names[r.id], self.ext)
                    write_audio_atomic(path, r.audio, r.sample_rate)
                    out.written = path.name
            results.append(out)
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
    """Renders (id, text) pairs on Ray actors; `stream` yields RemoteResults in input order."""

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
        self._started_ray = False
        self._serial = 0

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Connect to (or start) Ray and start the workers; raises TTSError if none can load."""
        ray = _import_ray()
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
        ray = _import_ray()
        for worker in self.workers:
            ray.kill(worker.handle, no_restart=True)
        self.retired.extend(w.stats for w in self.workers)
        self.workers = []
        if self._started_ray:
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
    def stream(self, items: Iterable[tuple[object, str] | object]) -> Iterator[RemoteResult]:
        """Render (id, text) pairs on the workers, yielding results in input order.

        Input is read lazily: at most two chunks per worker are in flight. FLUSH (see
        ttscli.synthesizer) sends what is buffered and waits for every pending result.
        """
        from .synthesizer import FLUSH

        ray = _import_ray()
        pending: dict = {}  # ref -> (chunk, worker)
        done: dict[int, list[RemoteResult]] = {}
        next_out = 0
        buffer: list[tuple[object, str]] = []
        n_chunks = 0

        def submit(chunk: _Chunk) -> None:
            if not self.workers:
                raise TTSError("every Ray worker died and none could be restarted")
            worker = min(self.workers, key=lambda w: w.in_flight)
            payload = [
                (i, self.name_of(item_id), text) for i, (item_id, text) in enumerate(chunk.items)
            ]
            ref = worker.handle.render.remote(payload)
            worker.in_flight += 1
            pending[ref] = (chunk, worker)

        def flush_buffer() -> None:
            nonlocal buffer, n_chunks
            if buffer:
                submit(_Chunk(n_chunks, buffer))
                n_chunks += 1
                buffer = []

        def ready_results() -> Iterator[RemoteResult]:
            nonlocal next_out
            while next_out in done:
                yield from done.pop(next_out)
                next_out += 1

        def collect(block: bool) -> None:
            if not pending:
                return
            finished, _ = ray.wait(list(pending), num_returns=1, timeout=None if block else 0)
            for ref in finished:
                self._finish(ray, ref, pending, done, submit)

        for item in items:
            if item is FLUSH:
                flush_buffer()
                while pending:
                    collect(block=True)
                yield from ready_results()
                continue
            buffer.append(item)
            if len(buffer) >= self.lines_per_task:
                flush_buffer()
                while len(pending) >= 2 * len(self.workers):
                    collect(block=True)
                collect(block=False)
                yield from ready_results()
        flush_buffer()
        while pending:
            collect(block=True)
            yield from ready_results()
        yield from ready_results()

    # -- internals ----------------------------------------------------------------------------
    def _finish(self, ray, ref, pending, done, submit) -> None:
        chunk, worker = pending.pop(ref)
        worker.in_flight -= 1
        try:
            results, seconds = ray.get(ref)
        except _actor_errors(ray) as exc:
            log.info("worker %s died: %s", worker.stats.name, exc)
            self._replace(ray, worker)
            chunk.attempts += 1
            if chunk.attempts < self.options.max_attempts and self.workers:
                self.retried_lines += len(chunk.items)
                submit(chunk)
                return
            why = f"{ACTOR_ERRORS_DOC} {chunk.attempts} time(s) while rendering this line"
            done[chunk.index] = [RemoteResult(item_id, why) for item_id, _ in chunk.items]
            return
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            why = f"worker failed: {type(cause).__name__}: {cause}"
            done[chunk.index] = [RemoteResult(item_id, why) for item_id, _ in chunk.items]
            return
        worker.stats.busy_seconds += seconds
        for r in results:
            r.id = chunk.items[r.id][0]
            worker.stats.lines += 1
            worker.stats.audio_seconds += r.audio_seconds
        done[chunk.index] = results

    def _replace(self, ray, worker: _Worker) -> None:
        """Retire a dead worker and start another in its place (if one can start)."""
        if worker not in self.workers:
            return  # another of its chunks already reported the death
        worker.stats.died = True
        self.workers.remove(worker)
        self.retired.append(worker.stats)
        # chunks still queued on the dead worker fail on their own and are retried then
        try:
            replacement = self._new_worker(ray)
            self.workers.append(replacement)
            self._wait_ready(ray, replacement)
        except TTSError as exc:
            log.warning("could not start a replacement worker: %s", exc)

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
        return _Worker(handle, WorkerStats(name))

    def _wait_ready(self, ray, worker: _Worker) -> None:
        try:
            error, host, pid = ray.get(worker.handle.ready.remote())
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
