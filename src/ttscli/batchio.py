"""Former home of the batch inputs, manifest and audio files: now `ttscli.batch` (re-exported)."""

from .batch import (  # noqa: F401
    AUDIO_FORMATS,
    FLUSH,
    FORMATS,
    MANIFEST,
    InputItem,
    Manifest,
    ManifestState,
    audio_path,
    clean_leftovers,
    default_id,
    detect_format,
    error_row,
    id_problem,
    ok_row,
    read_items,
    settings_key,
    should_skip,
    skipped_row,
    write_audio_atomic,
)
from .batch.inputs import MAX_ID_CHARS, QUEUE_LINES  # noqa: F401
