"""The batch manifest (one JSON row per attempt), its settings key, and what resume skips.

Manifest (`Manifest`)
    ``DIR/manifest.jsonl``: one JSON object per line with the keys ``id``, ``text``, ``file``
    (relative to DIR, or null), ``status`` (``ok``, ``error``, ``skipped`` for blank lines),
    ``error`` (a message when status is ``error``, else null), ``audio_seconds``,
    ``decoder_steps``, ``rtf`` (seconds of audio per second of compute) and ``settings`` (a
    key of what decides the audio: the voice's files and the synthesis options, see
    `settings_key`; null on rows that are not ``ok``); rows of items
    without an id (rejected or unparseable lines) add ``line`` (1-based) and ``raw_id``.
    One row per attempt, appended in one ``write()`` each, so a ``kill -9`` tears at most the
    last line: readers skip lines that are not JSON objects, and the next append starts on a
    new line. The last row of an id is its state; rows without an id change no state.
    Rows are never rewritten: a line redone on resume (its text changed, its audio file went
    missing) gets a new row after the old ones, so the file keeps every attempt. ``reset()``
    (for ``--overwrite``) atomically replaces the manifest with an empty one at the start of a
    run.

Resume (`should_skip`)
    A line needs no new row when its id's state is an ``ok`` row for the same text, file name
    and settings and that file exists, or when it is a blank line whose ``skipped`` row was
    recorded. Everything else (failed lines, and lines spoken with another voice or other
    options) is attempted again and gets a new row, so a folder never mixes two voices.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..atomicfile import atomic_write
from ..errors import TTSError
from .files import audio_path
from .inputs import InputItem

MANIFEST = "manifest.jsonl"


def _row(item: InputItem, status: str, **values: object) -> dict:
    row: dict = {
        "id": item.id,
        "text": item.text,
        "file": None,
        "status": status,
        "error": None,
        "audio_seconds": None,
        "decoder_steps": None,
        "rtf": None,
        "settings": None,
    }
    row.update(values)
    if item.id is None:
        row["line"] = item.line
        row["raw_id"] = item.raw_id
    return row


def _finite(value: float, digits: int) -> float | None:
    value = float(value)
    return round(value, digits) if value == value and abs(value) != float("inf") else None


def ok_row(
    item: InputItem,
    file: str,
    audio_seconds: float,
    decoder_steps: int,
    rtf: float,
    settings: str | None = None,
) -> dict:
    """The row of a line whose audio was written to DIR/file (file relative to DIR), spoken
    with `settings` (a `settings_key`)."""
    return _row(
        item,
        "ok",
        file=file,
        audio_seconds=_finite(audio_seconds, 4),
        decoder_steps=int(decoder_steps),
        rtf=_finite(rtf, 3),
        settings=settings,
    )


def settings_key(settings: dict) -> str:
    """A short, stable key of JSON-able settings (equal settings, equal keys)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def error_row(item: InputItem, message: str) -> dict:
    """The row of a line that failed; message says why (never empty)."""
    return _row(item, "error", error=str(message or "failed"))


def skipped_row(item: InputItem) -> dict:
    """The row of a blank line."""
    return _row(item, "skipped")


@dataclass
class ManifestState:
    """What earlier runs recorded: the last row of each id, and blank lines already skipped."""

    rows_by_id: dict[str, dict] = field(default_factory=dict)
    blank_lines: set[int] = field(default_factory=set)


def _parse_row(raw: bytes) -> dict | None:
    try:
        row = json.loads(raw)
    except (ValueError, RecursionError):
        return None  # a row torn by a crash, or not ours
    return row if isinstance(row, dict) else None


def _blank_line(row: dict) -> int | None:
    """The line number a ``skipped`` row records (id-less rows carry it, others are ids)."""
    line = row.get("line")
    if isinstance(line, int) and not isinstance(line, bool):
        return line
    row_id = row.get("id")
    if isinstance(row_id, str) and row_id.isascii() and row_id.isdigit():
        return int(row_id)
    return None


class Manifest:
    """Append-only ``manifest.jsonl`` of an output folder; see the module docstring."""

    def __init__(self, out_dir: Path | str) -> None:
        self.path = Path(out_dir) / MANIFEST
        self._fd: int | None = None

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def rows(self) -> Iterator[dict]:
        """The rows in the file, in order, skipping lines that are not JSON objects."""
        if not self.path.exists():
            return
        try:
            with open(self.path, "rb") as f:
                for raw in f:
                    row = _parse_row(raw)
                    if row is not None:
                        yield row
        except OSError as exc:
            raise TTSError(f"cannot read {self.path}: {exc.strerror or exc}") from exc

    def load(self) -> ManifestState:
        """The state earlier runs left: the last row per id, the blank lines recorded."""
        state = ManifestState()
        for row in self.rows():
            row_id = row.get("id")
            if isinstance(row_id, str):
                state.rows_by_id[row_id] = row
            if row.get("status") == "skipped":
                line = _blank_line(row)
                if line is not None:
                    state.blank_lines.add(line)
        return state

    def reset(self) -> None:
        """Replace the manifest with an empty one, atomically (for --overwrite)."""
        self.close()
        with atomic_write(self.path):
            pass

    def append(self, row: dict) -> None:
        """Append one row in a single write(), starting a new line after a torn last row."""
        try:
            data = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
        except UnicodeEncodeError:  # unpaired surrogates from JSON input: keep them escaped
            data = (json.dumps(row) + "\n").encode("ascii")
        if self._fd is None:
            self._open()
            if self._torn():
                data = b"\n" + data
        _write_all(self._fd, data)

    def close(self) -> None:
        """Sync and close the file (appending again reopens it)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.fsync(fd)
            except OSError:
                pass
            os.close(fd)

    def _open(self) -> None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
        try:
            self._fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            raise TTSError(f"cannot write {self.path}: {exc.strerror or exc}") from exc

    def _torn(self) -> bool:
        """Whether the file is non-empty and does not end with a newline."""
        with open(self.path, "rb") as f:
            if f.seek(0, os.SEEK_END) == 0:
                return False
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def should_skip(
    item: InputItem,
    out_dir: Path | str,
    state: ManifestState,
    ext: str,
    settings: str | None = None,
) -> bool:
    """True when an earlier run already recorded this line, so it needs no new row.

    That is a blank line whose skipped row exists, or a line whose id's last row is ``ok``
    for the same text, file name and `settings`, with that audio file in out_dir, readable and
    as long as the row says (a file emptied or cut short since is spoken again).
    """
    if item.blank:
        return item.line in state.blank_lines
    if item.error or item.id is None:
        return False
    row = state.rows_by_id.get(item.id)
    if row is None or row.get("status") != "ok" or row.get("text") != item.text:
        return False
    if row.get("settings") != settings:
        return False
    path = audio_path(out_dir, item.id, ext)
    return row.get("file") == path.name and _audio_intact(path, row.get("audio_seconds"))


def _audio_intact(path: Path, seconds: object) -> bool:
    """Whether `path` is a readable audio file lasting `seconds` (to the manifest's 0.1 ms)."""
    import soundfile

    if not path.is_file():
        return False
    try:
        with soundfile.SoundFile(str(path)) as f:
            frames, rate = f.frames, f.samplerate
            # a FLAC header keeps its length when the file is cut: decode the last frame
            f.seek(max(frames - 1, 0))
            if frames and len(f.read(1)) != 1:
                return False
    except (OSError, RuntimeError):  # soundfile's errors are RuntimeErrors
        return False
    if not isinstance(seconds, int | float):
        return frames > 0
    return abs(frames / rate - seconds) <= 1e-3
