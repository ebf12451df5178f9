"""Tacotron 2 (NVIDIA DeepLearningExamples' layout and numbers): the model and its decoding.

- ``model``: the nn.Modules (``Tacotron2`` with NVIDIA's ``infer(text, lengths)``);
- ``hparams``: the 22 constructor keys, their defaults and checks, reading them off shapes;
- ``decoding``: ``DecodeOptions`` in, ``DecodeResult`` out, the loop and the
  ``DecoderInference`` that owns what its calls reuse;
- ``fused_lstm``: the decoder's LSTM cells as one fused matmul each.
"""

from ttscli.tacotron2.decoding import (
    DecodeOptions,
    DecodeResult,
    DecoderInference,
    decode,
    inference_for,
)
from ttscli.tacotron2.hparams import DEFAULT_CONFIG, config_from_state_dict
from ttscli.tacotron2.model import Tacotron2, gate_targets

__all__ = [
    "DEFAULT_CONFIG",
    "DecodeOptions",
    "DecodeResult",
    "DecoderInference",
    "Tacotron2",
    "config_from_state_dict",
    "decode",
    "gate_targets",
    "inference_for",
]
