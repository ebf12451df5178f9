"""BatchRunner: feeds input lines to a renderer, writes audio files and manifest rows, resumes."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import TTSError
from ..interrupts import interrupts_deferred
from ..rendering import FLUSH, Renderer, Result
from .files import audio_path, clean_leftovers, write_audio_atomic
from .inputs import InputItem
from .manifest import Manifest, ManifestState, error_row, ok_row, should_skip, skipped_row

MAX_ERRORS_KEPT = 5


@dataclass
class BatchSummary:
    """What a run did: lines per outcome, audio made, wall time, the first errors."""

    ok: int = 0
    error: int = 0
    skipped: int = 0  # blank lines recorded as skipped
    done_before: int = 0  # lines an earlier run already did
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    first_errors: list[str] = field(default_factory=list)  # "line N: message"

    @property
    def lines(self) -> int:
        return self.ok + self.error + self.skipped + self.done_before

    @property
    def real_time_factor(self) -> float:
        """Seconds of audio per second of wall time."""
        return self.audio_seconds / max(self.wall_seconds, 1e-9)

    def counts(self) -> dict[str, int]:
        """Outcome -> lines, in the order the CLI prints them."""
        return {
            "ok": self.ok,
            "error": self.error,
            "skipped": self.skipped,
            "done before": self.done_before,
        }


Progress = Callable[[InputItem, BatchSummary], None]


class BatchRunner:
    """Speaks input lines into DIR/<id><ext> files, one manifest row per attempt, in order.

    Lines an earlier run finished with the same text and `settings` (see `should_skip`) are
    skipped; ``overwrite`` starts a new manifest and redoes every line. ``progress`` is called
    after each line is recorded (its item and the summary so far).

    Example::

        with Manifest(out_dir) as manifest:
            runner = BatchRunner(synthesizer, manifest, out_dir, settings="my-voice-v1")
            summary = runner.run(read_items(open("book.txt", "rb")))
    """

    def __init__(
        self,
        renderer: Renderer,
        manifest: Manifest,
        out_dir: Path | str,
        *,
        ext: str = ".wav",
        settings: str | None = None,
        overwrite: bool = False,
        progress: Progress | None = None,
    ) -> None:
        self.renderer = renderer
        self.manifest = manifest
        self.out_dir = Path(out_dir)
        self.ext = ext
        self.settings = settings
        self.overwrite = overwrite
        self.progress = progress
        self.summary = BatchSummary()
        self._started = time.perf_counter()
        if overwrite:
            manifest.reset()
        self.state: ManifestState = manifest.load()

    def run(self, items: Iterable[InputItem | object]) -> BatchSummary:
        """Render and record every item (FLUSH renders what is buffered); return the summary."""
        pending: deque[InputItem] = deque()

        def feed() -> Iterator[tuple[InputItem, str] | object]:
            for item in items:
                if item is FLUSH:
                    yield FLUSH
                    continue
                pending.append(item)
                if self._needs_synthesis(item):
                    yield (item, item.text)

        try:
            for result in self.renderer.stream(feed()):
                while pending and pending[0] is not result.id:
                    self._record_other(pending.popleft())
                pending.popleft()
                self._record_result(result)
            while pending:
                self._record_other(pending.popleft())
        finally:
            self.summary.wall_seconds = time.perf_counter() - self._started
        return self.summary

    def _needs_synthesis(self, item: InputItem) -> bool:
        if item.error or item.blank:
            return False
        return self.overwrite or not should_skip(
            item, self.out_dir, self.state, self.ext, self.settings
        )

    def _record_other(self, item: InputItem) -> None:
        if item.error:
            self._append(error_row(item, item.error), item, item.error)
        elif item.blank and (self.overwrite or item.line not in self.state.blank_lines):
            self._append(skipped_row(item), item)
        else:
            self.summary.done_before += 1
            self._progress(item)

    def _record_result(self, result: Result) -> None:
        # the audio file and its row land together: a Ctrl-C between them would leave a file
        # the manifest does not know, so it is raised once the row is written
        with interrupts_deferred():
            self._record_result_whole(result)

    def _record_result_whole(self, result: Result) -> None:
        item: InputItem = result.id
        error = result.error
        if not error:
            path = (
                self.out_dir / result.written
                if result.written
                else audio_path(self.out_dir, item.id, self.ext)
            )
            try:
                if not result.written:
                    write_audio_atomic(path, result.audio, result.sample_rate)
            except TTSError as exc:  # this line's file (a folder in the way...): its row says so
                error = str(exc)
        if error:
            self._append(error_row(item, error), item, error)
            return
        rtf = result.audio_seconds / max(result.compute_seconds, 1e-9)
        seconds, steps = result.audio_seconds, result.decoder_steps
        self.summary.audio_seconds += seconds
        self._append(ok_row(item, path.name, seconds, steps, rtf, self.settings), item)

    def _append(self, row: dict, item: InputItem, message: str | None = None) -> None:
        self.manifest.append(row)
        status = row["status"]
        setattr(self.summary, status, getattr(self.summary, status) + 1)
        if message and len(self.summary.first_errors) < MAX_ERRORS_KEPT:
            self.summary.first_errors.append(f"line {item.line}: {message}")
        self._progress(item)

    def _progress(self, item: InputItem) -> None:
        self.summary.wall_seconds = time.perf_counter() - self._started
        if self.progress is not None:
            self.progress(item, self.summary)


def run_batch(
    renderer: Renderer,
    lines: Iterable[InputItem | object],
    out_dir: Path | str,
    **options: object,
) -> BatchSummary:
    """Create out_dir, clean what interrupted runs left there, run a BatchRunner over `lines`
    (from `read_items`) with `options` (ext, settings, overwrite, progress) and return its
    summary. Running it again with the same arguments resumes."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clean_leftovers(out_dir)
    with Manifest(out_dir) as manifest:
        return BatchRunner(renderer, manifest, out_dir, **options).run(lines)
