"""Former home of HiFi-GAN checkpoint reading, now ``ttscli.checkpoints.hifigan_layout`` (re-exports)."""

from ttscli.checkpoints import load_hifigan, save_hifigan
from ttscli.checkpoints.hifigan_layout import (
    GENERATOR_FILE_PATTERN,
    find_generator_file,
    hifigan_state_dict_to_nested,
    hop_length_of,
)

__all__ = [
    "GENERATOR_FILE_PATTERN",
    "find_generator_file",
    "hifigan_state_dict_to_nested",
    "hop_length_of",
    "load_hifigan",
    "save_hifigan",
]
