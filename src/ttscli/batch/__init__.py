"""Resumable batch synthesis: input lines to audio files and a manifest, locally or on Ray.

`read_items` parses the input (inputs.py), `BatchRunner` renders and records it (runner.py)
in a `Manifest` (manifest.py) of audio files written atomically (files.py). Any renderer
works: a `ttscli.synthesizer.Synthesizer`, or a `ttscli.ray.RayPool`.
"""

from ..rendering import FLUSH, Renderer, Result
from .files import AUDIO_FORMATS, audio_path, clean_leftovers, write_audio_atomic
from .inputs import FORMATS, InputItem, default_id, detect_format, id_problem, read_items
from .manifest import (
    MANIFEST,
    Manifest,
    ManifestState,
    error_row,
    ok_row,
    settings_key,
    should_skip,
    skipped_row,
)
from .runner import BatchRunner, BatchSummary, run_batch

__all__ = [
    "AUDIO_FORMATS",
    "FLUSH",
    "FORMATS",
    "MANIFEST",
    "BatchRunner",
    "BatchSummary",
    "InputItem",
    "Manifest",
    "ManifestState",
    "Renderer",
    "Result",
    "audio_path",
    "clean_leftovers",
    "default_id",
    "detect_format",
    "error_row",
    "id_problem",
    "ok_row",
    "read_items",
    "run_batch",
    "settings_key",
    "should_skip",
    "skipped_row",
    "write_audio_atomic",
]
