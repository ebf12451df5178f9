"""Batch audio files: their names, atomic writing, and temporary files left by crashes.

Audio files (`write_audio_atomic`)
    16-bit PCM WAV or FLAC by extension, written to ``.<name>.<pid>.tmp`` in the same folder,
    flushed, fsync'd and renamed into place, so a crash never leaves a partial file under a
    final name; `clean_leftovers` removes such temporary files (and the manifest's) left by
    interrupted runs. Two runs writing into one folder at once are not supported.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomicfile import atomic_write
from ..errors import TTSError
from .inputs import id_problem

if TYPE_CHECKING:
    import numpy as np

AUDIO_FORMATS = {".wav": "WAV", ".flac": "FLAC"}
_TEMP_FILE = re.compile(r"\.(?:.+\.(?:wav|flac)|manifest\.jsonl)\.\d+\.tmp", re.IGNORECASE)


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
    if path.is_dir():
        raise TTSError(f"cannot write {path}: a folder is in the way")
    try:
        with atomic_write(path) as f:
            soundfile.write(f, data, int(sample_rate), format=kind, subtype="PCM_16")
    except RuntimeError as exc:  # soundfile's errors are RuntimeErrors
        raise TTSError(f"cannot write {path}: {exc}") from exc


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
