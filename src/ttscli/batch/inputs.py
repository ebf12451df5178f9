"""Batch input lines: plain text, id|text or JSONL, parsed one line at a time into InputItems.

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
    (a warning on the ``ttscli.batch.inputs`` logger), and later lines that do not start the same
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
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from ..errors import TTSError
from ..rendering import FLUSH

log = logging.getLogger(__name__)

FORMATS = ("auto", "text", "id-text", "jsonl")
MAX_ID_CHARS = 200
QUEUE_LINES = 64  # lines buffered ahead by the stdin reader thread

_ID_TEXT_START = re.compile(rb"[A-Za-z0-9_.-]{1,64}\|")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
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
