"""Tacotron2, WaveGlow and HiFi-GAN checkpoints: every NVIDIA format read safely, loaded, saved, inspected.

Formats read (``inspect_checkpoint(path)["format"]``):

- ``dle``: NVIDIA DeepLearningExamples / torch.hub, ``{"state_dict", "config", ...}`` with keys
  usually prefixed by ``module.`` (current and 2019 layouts).
- ``tacotron2-original``: NVIDIA/tacotron2 training checkpoints, ``{"state_dict", "optimizer",
  "learning_rate", "iteration"}`` without a config; the sizes come from the tensor shapes.
- ``waveglow-original-pickle``: NVIDIA/waveglow checkpoints, a whole pickled ``glow.WaveGlow``
  module. Read by ``safe_pickle`` without NVIDIA's code and without running anything
  from the file; its state dict (layout A, B or C) is mapped onto DLE's keys. A pickled
  ``glow_old.WaveGlow`` (NVIDIA's first published model) couples the other half of the channels
  on odd flows: its config gets ``alternate_halves``.
- ``state-dict``: a bare dict of tensors (or ``{"state_dict"}`` of a WaveGlow) whose kind is
  clear from its keys; the config is inferred from the shapes.
- ``hifigan-dle``, ``hifigan-jik876``: HiFi-GAN generators (NVIDIA's torch.hub dict; jik876's
  generator files with ``config.json`` beside them, or their release folder), see
  ``hifigan_layout``.
- ``ttscli``: written by ``save_tacotron2`` / ``save_waveglow`` / ``save_hifigan``.

Every file except the WaveGlow pickle (and jik876's legacy-format files, read by the same
restricted unpickler when torch refuses them) is read with ``torch.load(weights_only=True)``. Every
problem with a file is reported as ``CheckpointError``.

Modules: ``reading`` (a file to an object: torch.load(weights_only=True), else the restricted
unpickler of ``safe_pickle``), ``formats`` (what the object is), ``kinds`` (the registry of model
kinds) with one layout module per kind (``tacotron2_layout``, ``waveglow_layout``,
``hifigan_layout``) and
``weight_norm``, then ``loading``, ``saving`` and ``inspection``.
"""

from .formats import TTSCLI_FORMAT_VERSION, Checkpoint, open_checkpoint
from .hifigan_layout import HIFIGAN, find_generator_file, hop_length_of
from .inspection import inspect_checkpoint
from .kinds import KINDS, ModelKind, register
from .loading import (
    load_hifigan,
    load_model,
    load_tacotron2,
    load_waveglow,
    model_from_checkpoint,
)
from .saving import save_hifigan, save_model, save_tacotron2, save_waveglow
from .tacotron2_layout import TACOTRON2
from .waveglow_layout import (
    WAVEGLOW,
    check_glow_old_schedule,
    waveglow_config_from_state_dict,
    waveglow_state_dict_to_dle,
)
from .weight_norm import fold_weight_norm

_check_glow_old_schedule = check_glow_old_schedule  # its name before the package split

__all__ = [
    "HIFIGAN",
    "KINDS",
    "TACOTRON2",
    "TTSCLI_FORMAT_VERSION",
    "WAVEGLOW",
    "Checkpoint",
    "ModelKind",
    "find_generator_file",
    "fold_weight_norm",
    "hop_length_of",
    "inspect_checkpoint",
    "load_hifigan",
    "load_model",
    "model_from_checkpoint",
    "load_tacotron2",
    "load_waveglow",
    "open_checkpoint",
    "register",
    "save_hifigan",
    "save_model",
    "save_tacotron2",
    "save_waveglow",
    "waveglow_config_from_state_dict",
    "waveglow_state_dict_to_dle",
]
