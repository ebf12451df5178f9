"""Tacotron 2 (NVIDIA DeepLearningExamples' layout and numbers): the model and its decoding.

- ``model``: the nn.Modules (``Tacotron2`` with NVIDIA's ``infer(text, lengths)``);
- ``hparams``: the 22 constructor keys, their defaults and checks (reading them off a state
  dict's shapes is the checkpoints package's, ``ttscli.checkpoints.tacotron2_layout``);
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
from ttscli.tacotron2.hparams import DEFAULT_CONFIG
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


def __getattr__(name: str):
    # config_from_state_dict lives with the other checkpoint layouts; kept importable from here
    if name == "config_from_state_dict":
        from ttscli.checkpoints.tacotron2_layout import tacotron2_config_from_state_dict

        return tacotron2_config_from_state_dict
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
