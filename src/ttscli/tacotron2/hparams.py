"""Tacotron2's 22 DLE constructor keys: their torch.hub defaults and the checks they must pass."""

from __future__ import annotations

from typing import Any

from ttscli.errors import CheckpointError

__all__ = ["DEFAULT_CONFIG", "validate_config"]

# The 22 constructor keys of DLE's Tacotron2, in DLE's order, with the torch.hub defaults.
DEFAULT_CONFIG: dict[str, Any] = {
    "mask_padding": False,
    "n_mel_channels": 80,
    "n_symbols": 148,
    "symbols_embedding_dim": 512,
    "encoder_kernel_size": 5,
    "encoder_n_convolutions": 3,
    "encoder_embedding_dim": 512,
    "attention_rnn_dim": 1024,
    "attention_dim": 128,
    "attention_location_n_filters": 32,
    "attention_location_kernel_size": 31,
    "n_frames_per_step": 1,
    "decoder_rnn_dim": 1024,
    "prenet_dim": 256,
    "max_decoder_steps": 1000,
    "gate_threshold": 0.5,
    "p_attention_dropout": 0.1,
    "p_decoder_dropout": 0.1,
    "postnet_embedding_dim": 512,
    "postnet_kernel_size": 5,
    "postnet_n_convolutions": 5,
    "decoder_no_early_stopping": False,
}


def validate_config(cfg: dict[str, Any]) -> None:
    """A ``CheckpointError`` naming the first setting no Tacotron2 can be built with."""
    positive = [k for k, v in cfg.items() if isinstance(v, int) and not isinstance(v, bool)]
    bad = [k for k in positive if k != "max_decoder_steps" and int(cfg[k]) < 1]
    if bad:
        raise CheckpointError(f"Tacotron2 config values must be positive: {', '.join(bad)}")
    for key in ("encoder_kernel_size", "postnet_kernel_size", "attention_location_kernel_size"):
        if int(cfg[key]) % 2 != 1:
            raise CheckpointError(f"Tacotron2 config {key} must be odd, got {cfg[key]}")
    if int(cfg["encoder_embedding_dim"]) % 2:
        raise CheckpointError("Tacotron2 encoder_embedding_dim must be even (bidirectional LSTM)")
    if int(cfg["postnet_n_convolutions"]) < 2:
        raise CheckpointError("Tacotron2 postnet_n_convolutions must be at least 2")
