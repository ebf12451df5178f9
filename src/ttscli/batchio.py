"""Batch input, manifest and output files behind `ttscli batch`: nothing lost, nothing torn.

Inputs: plain text (one utterance per line), ``id|text`` (LJSpeech style) or JSONL
(``{"id": ..., "text": ...}``), read as bytes line by line (constant memory) so that one bad
line (invalid UTF-8, not JSON, a rejected id) becomes one error item and the rest go on.
A UTF-8 BOM at the start and CR before LF are stripped. Ids come from the input, else the
1-based line number zero-padded to 6 digits. Ids are untrusted: empty, leading ``-`` or ``.``,
``/``, ``\\``, ``..``, control characters or more than 200 characters are rejected; a duplicate
id's later lines are errors (the set of ids seen is kept in memory).

Manifest: ``DIR/manifest.jsonl``, append-only, one JSON row per attempt, written in one
``write()`` and flushed; the last row of an id is its state. A row torn by ``kill -9`` is
skipped when read, and the next append starts on a new line. Rows for lines without an id
carry ``line`` and ``raw_id``; ``skipped`` rows (blank lines) carry ``line`` so a resumed run
does not record the same blank line twice.

Audio files are written to ``.<name>.<pid>.tmp`` in DIR, fsync'd and renamed into place, so a
crash never leaves a partial file under a final name; `clean_leftovers` removes such temporary
files from earlier runs.
"""

from __future__ import annotations

import json
import os
import queue
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

FORMATS = ("auto", "text", "id-text", "jsonl")
FLUSH = object()
"""Yielded by `read_items` when a stream has been idle for `idle_seconds`."""

MANIFEST = "manifest.jsonl"
MAX_ID_CHARS = 200
_ID_TEXT_START = re.compile(rb"^[A-Za-z0-9_.-]{1,64}\|")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TEMP_FILE = re.compile(r"^\..+\.\d+\.tmp$")
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class InputItem:
    """One input line: an utterance to speak, a blank line, or an error to record."""

    line: int
    id: str | None
    raw_id: str | None
    text: str | None
    error: str | None = None
    blank: bool = False


def default_id(line: int) -> str:
    return f"{line:06d}"


def id_problem(raw_id: str) -> str | None:
    """Why an id cannot name a file in the output folder, or None if it can."""
    if raw_id == "":
        return "empty id"
    if raw_id.startswith(("-", ".")):
        return f"id {raw_id!r} starts with {raw_id[0]!r}"
    if "/" in raw_id or "\\" in raw_id or ".." in raw_id:
        return f"id {raw_id!r} contains a path separator or '..'"
    if _CONTROL.search(raw_id):
        return f"id {raw_id!r} contains control characters"
    if len(raw_id) > MAX_ID_CHARS:
        return f"id is longer than {MAX_ID_CHARS} characters"
    return None


def detect_format(path: str | None, first_line: bytes | None) -> str:
    """auto: JSONL for .jsonl (or a JSON object first line on stdin), id|text, else text."""
    if path and path.lower().endswith(".jsonl"):
        return "jsonl"
    line = (first_line or b"").lstrip(_BOM).strip()
    if path is None and line.startswith(b"{"):
        try:
            if isinstance(json.loads(line), dict):
                return "jsonl"
        except ValueError:
            pass
    if _ID_TEXT_START.match(line):
        return "id-text"
    return "text"


def _lines(stream: BinaryIO) -> Iterator[bytes]:
    first = True
    for raw in iter(stream.readline, b""):
        if first:
            raw = raw[len(_BOM) :] if raw.startswith(_BOM) else raw
            first = False
        yield raw.rstrip(b"\n").rstrip(b"\r")


def _idle_lines(stream: BinaryIO, idle_seconds: float) -> Iterator[bytes | object]:
    """Lines from a background reader; FLUSH after each idle period of idle_seconds."""
    lines: queue.Queue = queue.Queue(maxsize=1000)
    end = object()

    def reader() -> None:
        try:
            for line in _lines(stream):
                lines.put(line)
        finally:
            lines.put(end)

    threading.Thread(target=reader, daemon=True, name="ttscli-stdin").start()
    flushed = True
    while True:
        try:
            line = lines.get(timeout=None if flushed else idle_seconds)
        except queue.Empty:
            yield FLUSH
            flushed = True
            continue
        if line is end:
            return
        flushed = False
        yield line


def read_items(
    stream: BinaryIO,
    fmt: str = "auto",
    *,
    path: str | None = None,
    idle_seconds: float | None = None,
) -> Iterator[InputItem | object]:
    """Parse a byte stream into InputItems (and FLUSH markers when idle_seconds is set)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}")
    source = _idle_lines(stream, idle_seconds) if idle_seconds else _lines(stream)
    parser = _Parser(fmt)
    held: list[bytes] = []  # with auto, blank lines before the first real one
    for raw in source:
        if raw is FLUSH:
            if parser.fmt != "auto":
                yield FLUSH
            continue
        if parser.fmt == "auto":
            held.append(raw)
            if not raw.strip():
                continue
            parser.fmt = detect_format(path, raw)
            for line in held:
                yield parser.parse(line)
            held = []
            continue
        yield parser.parse(raw)
    if held:  # only blank lines
        parser.fmt = "text"
        for line in held:
            yield parser.parse(line)


@dataclass
class _Parser:
    fmt: str
    line: int = 0
    seen: dict[str, int] = field(default_factory=dict)

    def parse(self, raw: bytes) -> InputItem:
        self.line += 1
        n = self.line
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad = raw[exc.start : exc.start + 1].hex()
            message = f"line is not valid UTF-8 (byte 0x{bad} at position {exc.start})"
            return InputItem(n, None, None, None, message)
        if not text.strip():
            return InputItem(n, default_id(n), None, "", blank=True)
        if self.fmt == "jsonl":
            return self._jsonl(n, text)
        if self.fmt == "id-text":
            if "|" not in text:
                return InputItem(n, None, None, text, "no '|' between id and text")
            raw_id, text = text.split("|", 1)
            return self._with_id(n, raw_id, text)
        return self._with_id(n, None, text)

    def _jsonl(self, n: int, text: str) -> InputItem:
        try:
            row = json.loads(text)
        except ValueError as exc:
            return InputItem(n, None, None, None, f"not valid JSON ({exc.msg})")
        if not isinstance(row, dict):
            return InputItem(n, None, None, None, "a JSONL line must be a JSON object")
        raw_id = row.get("id")
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int, float, type(None))):
            return InputItem(n, None, str(raw_id), None, "id must be a string or a number")
        raw_id = None if raw_id is None else str(raw_id)
        if not isinstance(row.get("text"), str):
            return InputItem(n, None, raw_id, None, 'the object has no string "text"')
        return self._with_id(n, raw_id, row["text"])

    def _with_id(self, n: int, raw_id: str | None, text: str) -> InputItem:
        item_id = default_id(n) if raw_id is None else raw_id
        if raw_id is not None:
            problem = id_problem(raw_id)
            if problem:
                return InputItem(n, None, raw_id, text, problem)
        if item_id in self.seen:
            first = self.seen[item_id]
            return InputItem(
                n, None, item_id, text, f"duplicate id {item_id!r} (first on line {first})"
            )
        self.seen[item_id] = n
        if not text.strip():
            return InputItem(n, item_id, raw_id, text, "empty text")
        return InputItem(n, item_id, raw_id, text)


# -- manifest rows ---------------------------------------------------------------------------
def _row(item: InputItem, status: str, **values) -> dict:
    row = {
        "id": item.id,
        "text": item.text,
        "file": None,
        "status": status,
        "error": None,
        "audio_seconds": None,
        "decoder_steps": None,
        "rtf": None,
    }
    row.update(values)
    if item.id is None:
        row["line"] = item.line
        row["raw_id"] = item.raw_id
    return row


def ok_row(item: InputItem, file: str, audio_seconds: float, decoder_steps: int, rtf: float):
    return _row(
        item,
        "ok",
        file=file,
        audio_seconds=round(float(audio_seconds), 4),
        decoder_steps=int(decoder_steps),
        rtf=round(float(rtf), 3),
    )


def error_row(item: InputItem, message: str) -> dict:
    return _row(item, "error", error=message or "failed")


def skipped_row(item: InputItem) -> dict:
    row = _row(item, "skipped")
    row["line"] = item.line
    return row


@dataclass
class ManifestState:
    """What earlier runs recorded: the last row of each id, and blank lines already skipped."""

    rows_by_id: dict[str, dict] = field(default_factory=dict)
    blank_lines: set[int] = field(default_factory=set)


class Manifest:
    """Append-only manifest.jsonl in an output folder."""

    def __init__(self, out_dir: Path) -> None:
        self.path = Path(out_dir) / MANIFEST
        self._file = None

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def load(self) -> ManifestState:
        state = ManifestState()
        if not self.path.exists():
            return state
        with open(self.path, "rb") as f:
            for raw in f:
                try:
                    row = json.loads(raw)
                except ValueError:
                    continue  # a row torn by a crash
                if not isinstance(row, dict):
                    continue
                if row.get("status") == "skipped" and isinstance(row.get("line"), int):
                    state.blank_lines.add(row["line"])
                if isinstance(row.get("id"), str):
                    state.rows_by_id[row["id"]] = row
        return state

    def reset(self) -> None:
        """Start from an empty manifest (for --overwrite)."""
        self.close()
        tmp = self.path.with_name(f".{MANIFEST}.{os.getpid()}.tmp")
        tmp.write_bytes(b"")
        os.replace(tmp, self.path)

    def append(self, row: dict) -> None:
        if self._file is None:
            self._file = open(self.path, "ab")  # noqa: SIM115
            if self._file.tell() > 0:
                with open(self.path, "rb") as f:
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":
                        self._file.write(b"\n")
        self._file.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def audio_path(out_dir: Path, item_id: str, ext: str = ".wav") -> Path:
    return Path(out_dir) / f"{item_id}{ext}"


def should_skip(item: InputItem, out_dir: Path, state: ManifestState, ext: str) -> bool:
    """True when an earlier run already wrote this line: ok row, same text, file present."""
    row = state.rows_by_id.get(item.id or "")
    return (
        row is not None
        and row.get("status") == "ok"
        and row.get("text") == item.text
        and audio_path(out_dir, item.id, ext).is_file()
    )


def write_audio_atomic(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write 16-bit PCM WAV/FLAC (by extension) under a temporary name, then rename it."""
    import soundfile

    path = Path(path)
    kind = {".wav": "WAV", ".flac": "FLAC"}.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"{path}: audio files must end in .wav or .flac")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
    try:
        with open(tmp, "wb") as f:
            soundfile.write(f, data, sample_rate, format=kind, subtype="PCM_16")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def clean_leftovers(out_dir: Path) -> int:
    """Remove temporary audio/manifest files left by interrupted runs; return how many."""
    removed = 0
    for entry in Path(out_dir).iterdir():
        if entry.is_file() and _TEMP_FILE.match(entry.name):
            entry.unlink(missing_ok=True)
            removed += 1
    return removed
