"""Batch input, manifest and audio files behind `ttscli batch`: nothing lost, nothing torn.

Inputs (`read_items`)
    Plain text (one utterance per line), ``id|text`` (LJSpeech / Mimic 3 style) or JSONL
    (``{"id": ..., "text": ...}``, id optional), read as bytes one line at a time, so memory
    stays constant and one bad line (invalid UTF-8, not JSON, a rejected id) becomes one error
    item while the rest go on. A UTF-8 BOM at the start and CR before LF are stripped.
    ``id|text``: the id is the text before the first ``|``, the text is what follows the last
    one, so LJSpeech's ``id|raw|normalized`` rows speak the normalized column and Mimic 3's
    ``id|voice|text`` rows their text. ``fmt="auto"`` (`detect_format`): JSONL for a ``.jsonl``
    path; else ``id-text`` when the first non-blank line starts with ``[A-Za-z0-9_.-]{1,64}``
    immediately followed by ``|``; else text. On standard input (``path=None``) a first
    non-blank line that is a JSON object also means JSONL. A guessed ``id-text`` is announced
    (a warning on the ``ttscli.batchio`` logger), and later lines that do not start the same
    way are error items, not texts cut at a ``|``.

    Every input line yields exactly one `InputItem`, in order: ``blank`` for whitespace-only
    lines, ``error`` (a message saying why) for a line that cannot be spoken, else an ``id`` and
    a ``text`` to synthesise. Texts pass through unchanged (punctuation only, emoji, any script,
    a 1 MB line: the synthesizer decides), except that a text containing NUL characters is an
    error item ("binary data or UTF-16 input?"); other control characters are left to the text
    front end, which turns them into spaces or drops them.

    Ids come from the input, else they are the 1-based line number zero-padded to 6 digits
    (``000042``; wider past 999,999). JSONL ids that are numbers become ``str(id)``, ``null``
    means none; other types are errors. Ids are untrusted (`id_problem`): empty, a leading ``-``
    or ``.``, ``/``, ``\\``, ``..``, control characters, unpaired surrogates, or more than 200
    characters (or 200 bytes of UTF-8) are rejected, so no file is ever written outside the
    output folder. Each id belongs to the first line that has it (blank lines included, by
    their line-number id); later lines with it are errors, with ``id`` None and ``raw_id``.
    The set of ids seen is kept in memory: O(number of ids).

    With ``idle_seconds`` (standard input), a background thread reads lines into a bounded
    queue and `read_items` yields `FLUSH` once whenever no line has arrived for
    ``idle_seconds`` since the last item, so a caller can speak a partial batch while the
    producer is quiet. The end of input ends the iterator (no FLUSH).

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

Audio files (`write_audio_atomic`)
    16-bit PCM WAV or FLAC by extension, written to ``.<name>.<pid>.tmp`` in the same folder,
    flushed, fsync'd and renamed into place, so a crash never leaves a partial file under a
    final name; `clean_leftovers` removes such temporary files (and the manifest's) left by
    interrupted runs. Two runs writing into one folder at once are not supported.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from .errors import TTSError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "FLUSH",
    "FORMATS",
    "MANIFEST",
    "InputItem",
    "Manifest",
    "ManifestState",
    "audio_path",
    "clean_leftovers",
    "default_id",
    "detect_format",
    "error_row",
    "id_problem",
    "ok_row",
    "read_items",
    "settings_key",
    "should_skip",
    "skipped_row",
    "write_audio_atomic",
]

FORMATS = ("auto", "text", "id-text", "jsonl")
FLUSH = object()
"""Yielded by `read_items` when the stream has been idle for ``idle_seconds``."""

MANIFEST = "manifest.jsonl"
MAX_ID_CHARS = 200
AUDIO_FORMATS = {".wav": "WAV", ".flac": "FLAC"}
QUEUE_LINES = 64  # lines buffered ahead by the stdin reader thread

_ID_TEXT_START = re.compile(rb"[A-Za-z0-9_.-]{1,64}\|")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_TEMP_FILE = re.compile(r"\.(?:.+\.(?:wav|flac)|manifest\.jsonl)\.\d+\.tmp", re.IGNORECASE)
_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_END = object()


@dataclass(frozen=True)
class InputItem:
    """One input line: an utterance to speak, a blank line, or an error to record.

    ``id`` is None when the line has no usable id (rejected, duplicate, unparseable); then
    ``raw_id`` holds the id the line gave, if any. ``text`` is None when none could be read.
    """

    line: int
    id: str | None
    raw_id: str | None
    text: str | None
    error: str | None = None
    blank: bool = False


def default_id(line: int) -> str:
    """The id of a line that gives none: its 1-based number, zero-padded to 6 digits."""
    return f"{line:06d}"


def id_problem(raw_id: str) -> str | None:
    """Why an id cannot name a file in the output folder, or None if it can."""
    if raw_id == "":
        return "empty id"
    if raw_id.startswith(("-", ".")):
        return f"id {raw_id[:40]!r} starts with {raw_id[0]!r}"
    if "/" in raw_id or "\\" in raw_id or ".." in raw_id:
        return f"id {raw_id[:40]!r} contains '/', '\\' or '..'"
    if _CONTROL.search(raw_id):
        return f"id {raw_id[:40]!r} contains control characters"
    try:
        n_bytes = len(raw_id.encode("utf-8"))
    except UnicodeEncodeError:
        return "id contains an unpaired surrogate"
    if len(raw_id) > MAX_ID_CHARS or n_bytes > MAX_ID_CHARS:
        return f"id is longer than {MAX_ID_CHARS} characters (or bytes of UTF-8)"
    return None


def detect_format(path: str | None, first_line: bytes | None) -> str:
    """The format "auto" means for a path (None: stdin) and its first non-blank line."""
    if path and path.lower().endswith(".jsonl"):
        return "jsonl"
    line = (first_line or b"").removeprefix(_BOM)
    if path is None and line.lstrip().startswith(b"{"):
        try:
            if isinstance(json.loads(line), dict):
                return "jsonl"
        except ValueError:
            pass
    if _ID_TEXT_START.match(line):
        return "id-text"
    return "text"


def read_items(
    stream: BinaryIO,
    fmt: str = "auto",
    *,
    path: str | None = None,
    idle_seconds: float | None = None,
) -> Iterator[InputItem | object]:
    """Parse a byte stream into one InputItem per line (and FLUSH when idle_seconds is set).

    ``path`` is the input's file name, used only by ``fmt="auto"`` (None for stdin). Never
    raises for bad content; a failing read of the stream raises TTSError.
    """
    if fmt not in FORMATS:
        raise TTSError(f"unknown input format {fmt!r}; choose one of {', '.join(FORMATS)}")
    source = _idle_lines(stream, idle_seconds) if idle_seconds else _lines(stream)
    parser = _Parser(None if fmt == "auto" else fmt, guessed=fmt == "auto")
    for raw in source:
        if raw is FLUSH:
            yield FLUSH
            continue
        if parser.fmt is None and not _is_blank(raw):
            parser.fmt = detect_format(path, raw)
            if parser.fmt == "id-text":
                log.warning(
                    "reading the input as id|text (its first line starts with %r); "
                    "--format text speaks whole lines",
                    raw.partition(b"|")[0].decode("utf-8", "replace") + "|",
                )
        yield parser.parse(raw)


def _is_blank(raw: bytes) -> bool:
    if raw.strip():
        try:
            return not raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            return False
    return True


def _lines(stream: BinaryIO) -> Iterator[bytes]:
    """Lines without their LF / CRLF; the BOM is dropped from the first."""
    first = True
    while True:
        try:
            raw = stream.readline()
        except OSError as exc:
            raise TTSError(f"cannot read the input: {exc}") from exc
        if not raw:
            return
        if first:
            raw = raw.removeprefix(_BOM)
            first = False
        if raw.endswith(b"\n"):
            raw = raw[:-1]
        yield raw[:-1] if raw.endswith(b"\r") else raw


def _idle_lines(stream: BinaryIO, idle_seconds: float) -> Iterator[bytes | object]:
    """Lines read by a background thread; FLUSH once after each idle period."""
    lines: queue.Queue = queue.Queue(maxsize=QUEUE_LINES)
    stop = threading.Event()

    def put(value: object) -> None:
        while not stop.is_set():
            try:
                lines.put(value, timeout=0.5)
                return
            except queue.Full:
                continue

    def reader() -> None:
        try:
            for line in _lines(stream):
                put(line)
                if stop.is_set():
                    return
        except BaseException as exc:  # handed to the consuming thread
            put(exc)
        put(_END)

    threading.Thread(target=reader, daemon=True, name="ttscli-input").start()
    pending = False  # an item was yielded since the last FLUSH
    try:
        while True:
            try:
                line = lines.get(timeout=idle_seconds if pending else None)
            except queue.Empty:
                pending = False
                yield FLUSH
                continue
            if line is _END:
                return
            if isinstance(line, BaseException):
                raise line
            pending = True
            yield line
    finally:
        stop.set()


@dataclass
class _Parser:
    fmt: str | None  # None until "auto" has seen a non-blank line
    guessed: bool = False  # fmt comes from "auto": an id|text line must look like the first
    line: int = 0
    seen: dict[str, int] = field(default_factory=dict)  # id -> the line that owns it

    def parse(self, raw: bytes) -> InputItem:
        self.line += 1
        n = self.line
        if _is_blank(raw):
            item_id = default_id(n)
            if item_id in self.seen:
                return InputItem(n, None, None, "", blank=True)
            self.seen[item_id] = n
            return InputItem(n, item_id, None, "", blank=True)
        if self.fmt == "jsonl":
            return self._jsonl(n, raw)
        if self.fmt == "id-text":
            return self._id_text(n, raw)
        text, problem = _decode(raw, n)
        return self._with_id(n, None, text, problem)

    def _id_text(self, n: int, raw: bytes) -> InputItem:
        if b"|" not in raw:
            text, problem = _decode(raw, n)
            hint = " (the input was read as id|text from its first line)" if self.guessed else ""
            return InputItem(n, None, None, text, problem or f"no '|' between id and text{hint}")
        raw_id_bytes, _, _ = raw.partition(b"|")
        text, problem = _decode(raw.rpartition(b"|")[2], n)
        if self.guessed and not _ID_TEXT_START.match(raw.removeprefix(_BOM)):
            whole, whole_problem = _decode(raw, n)
            raw_id = raw_id_bytes.decode("utf-8", "replace")
            return InputItem(
                n,
                None,
                raw_id,
                whole,
                whole_problem
                or f"{raw_id[:40]!r} is not an id (the input was read as id|text from its "
                "first line; --format text speaks whole lines)",
            )
        try:
            raw_id = raw_id_bytes.decode("utf-8")
        except UnicodeDecodeError:
            raw_id = raw_id_bytes.decode("utf-8", "replace")
            return InputItem(n, None, raw_id, text, "id is not valid UTF-8")
        return self._with_id(n, raw_id, text, problem)

    def _jsonl(self, n: int, raw: bytes) -> InputItem:
        line, problem = _decode(raw, n)
        if problem:
            return InputItem(n, None, None, None, problem)
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as exc:
            why = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            return InputItem(n, None, None, None, f"not valid JSON ({why})")
        if not isinstance(row, dict):
            kind = type(row).__name__
            return InputItem(n, None, None, None, f"a JSONL line must be an object, not {kind}")
        raw_id = row.get("id")
        if raw_id is None or isinstance(raw_id, str):
            pass
        elif isinstance(raw_id, (int, float)) and not isinstance(raw_id, bool):
            raw_id = str(raw_id)
        else:
            shown = json.dumps(raw_id)[:80]
            text = row["text"] if isinstance(row.get("text"), str) else None
            message = f"id must be a string or a number, not {shown}"
            return InputItem(n, None, shown, text, message)
        text = row.get("text")
        if not isinstance(text, str):
            return InputItem(n, None, raw_id, None, 'the object has no string "text"')
        return self._with_id(n, raw_id, text, None)

    def _with_id(self, n: int, raw_id: str | None, text: str, problem: str | None) -> InputItem:
        if raw_id is not None:
            bad_id = id_problem(raw_id)
            if bad_id:
                return InputItem(n, None, raw_id, text, bad_id)
        item_id = default_id(n) if raw_id is None else raw_id
        if item_id in self.seen:
            message = f"duplicate id {item_id[:40]!r} (first on line {self.seen[item_id]})"
            return InputItem(n, None, item_id, text, message)
        self.seen[item_id] = n
        if problem is None and not text.strip():
            problem = "empty text"
        if problem is None and "\x00" in text:
            problem = "text contains NUL characters (binary data or UTF-16 input?)"
        return InputItem(n, item_id, raw_id, text, problem)


def _decode(raw: bytes, line: int) -> tuple[str, str | None]:
    """The text of some bytes and why they are not UTF-8 (None if they are)."""
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        text = raw.decode("utf-8", "replace")
        if line == 1 and raw.startswith(_UTF16_BOMS):
            return text, "the input looks like UTF-16; convert it to UTF-8"
        byte = raw[exc.start : exc.start + 1].hex()
        return text, f"line is not valid UTF-8 (byte 0x{byte} at offset {exc.start})"


# -- manifest rows ---------------------------------------------------------------------------
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
        self._replace(lambda out: None)

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

    def _replace(self, fill) -> None:
        tmp = self.path.with_name(f".{MANIFEST}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as out:
                fill(out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise TTSError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


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


def audio_path(out_dir: Path | str, item_id: str, ext: str = ".wav") -> Path:
    """DIR/<id><ext>; raises TTSError for an id or extension that could escape or mislead."""
    problem = id_problem(item_id)
    if problem:
        raise TTSError(f"cannot name an audio file: {problem}")
    if ext.lower() not in AUDIO_FORMATS:
        raise TTSError(f"audio files end in .wav or .flac, not {ext!r}")
    return Path(out_dir) / f"{item_id}{ext}"


def write_audio_atomic(path: Path | str, audio: np.ndarray, sample_rate: int) -> None:
    """Write mono 16-bit PCM WAV or FLAC (by extension) under a temporary name, then rename.

    ``audio`` is 1-D float in [-1, 1]; values outside are clipped, NaN becomes silence.
    Raises TTSError for a bad extension, shape or rate, or when the file cannot be written;
    no partial file is left behind in any case. A symbolic link is kept: its target is replaced.
    """
    import numpy as np
    import soundfile

    path = Path(path)
    kind = AUDIO_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise TTSError(f"{path}: audio files must end in .wav or .flac")
    data = np.asarray(audio, dtype=np.float32)
    if data.ndim != 1:
        raise TTSError(f"audio must be 1-D (mono), got shape {data.shape}")
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise TTSError(f"sample rate must be a positive integer, got {sample_rate}")
    data = np.clip(np.nan_to_num(data, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
    if path.is_symlink():  # write what the link points at, as `>` would, keeping the link
        path = Path(os.path.realpath(path))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            soundfile.write(f, data, int(sample_rate), format=kind, subtype="PCM_16")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # soundfile's errors are RuntimeErrors
        tmp.unlink(missing_ok=True)
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise TTSError(f"cannot write {path}: {why}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def clean_leftovers(out_dir: Path | str) -> int:
    """Remove temporary audio/manifest files left in out_dir by interrupted runs; count them."""
    removed = 0
    try:
        entries = list(os.scandir(out_dir))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if _TEMP_FILE.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            removed += 1
    return removed
