"""A tiny random-weight voice whose decoder stops by itself after a fixed number of steps."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

TINY_TACOTRON2 = dict(
    n_mel_channels=80, n_symbols=148, symbols_embedding_dim=16, encoder_kernel_size=5,
    encoder_n_convolutions=1, encoder_embedding_dim=16, attention_rnn_dim=16, attention_dim=8,
    attention_location_n_filters=4, attention_location_kernel_size=5, n_frames_per_step=1,
    decoder_rnn_dim=16, prenet_dim=8, max_decoder_steps=60, gate_threshold=0.5,
    postnet_embedding_dim=16, postnet_kernel_size=5, postnet_n_convolutions=2,
)  # fmt: skip

TINY_WAVEGLOW = dict(
    n_mel_channels=80, n_flows=2, n_group=8, n_early_every=4, n_early_size=2,
    WN_config=dict(n_layers=2, kernel_size=3, n_channels=8),
)  # fmt: skip

_DRIVE = 0.02  # the decoder cell grows by tanh(0.02) per step


def stop_after(model: torch.nn.Module, steps: int | None) -> torch.nn.Module:
    """Make the decoder's gate fire once `steps` frames were made (None: never fire).

    The decoder LSTM gets zero weights and saturated input/forget/output gates, so its first
    hidden unit after step t is exactly tanh(t * tanh(0.02)) whatever the text; the gate
    layer reads only that unit and fires between step `steps` and `steps + 1`.
    """
    rnn = model.decoder.decoder_rnn
    n = rnn.hidden_size
    with torch.no_grad():
        rnn.weight_ih.zero_()
        rnn.weight_hh.zero_()
        rnn.bias_hh.zero_()
        rnn.bias_ih.copy_(torch.cat([torch.full((n,), 12.0), torch.full((n,), 12.0),
                                     torch.full((n,), _DRIVE), torch.full((n,), 12.0)]))  # fmt: skip
        gate = model.decoder.gate_layer.linear_layer
        gate.weight.zero_()
        if steps is None:
            gate.bias.fill_(-50.0)
        else:
            g = math.tanh(_DRIVE)
            # fire at step steps+1: between hidden values after `steps` and `steps + 1` steps
            midpoint = 0.5 * (math.tanh(steps * g) + math.tanh((steps + 1) * g))
            gate.weight[0, 0] = 400.0
            gate.bias.fill_(-400.0 * midpoint)
    return model


def tiny_tacotron2(steps: int | None = 20, seed: int = 0, **overrides) -> torch.nn.Module:
    from ttscli.tacotron2 import Tacotron2

    torch.manual_seed(seed)
    return stop_after(Tacotron2(**{**TINY_TACOTRON2, **overrides}).eval(), steps)


def tiny_waveglow(seed: int = 0) -> torch.nn.Module:
    from ttscli.waveglow import WaveGlow

    torch.manual_seed(seed)
    model = WaveGlow(**TINY_WAVEGLOW)
    return model.remove_weightnorm().eval()


def write_voice(folder: Path, vocoder: str = "griffin-lim", steps: int | None = 20, **extra):
    """A voice folder (voice.json + tacotron2.pt [+ waveglow.pt]) for --voice DIR."""
    from ttscli.checkpoints import save_tacotron2, save_waveglow

    folder.mkdir(parents=True, exist_ok=True)
    save_tacotron2(tiny_tacotron2(steps), folder / "tacotron2.pt")
    config = {
        "name": "tiny",
        "language": "en-US",
        "sample_rate": 22050,
        "frontend": "dle",
        "vocoder": vocoder,
        "griffin_lim": {"n_iter": 4, "momentum": 0.99},
        "sigma": 0.0,
        "denoiser_strength": 0.0,
        "max_decoder_steps": 400,
        "gate_threshold": 0.5,
        "prenet_dropout": 0.0,
        "batch_size": 4,
        **extra,
    }
    if vocoder == "waveglow":
        save_waveglow(tiny_waveglow(), folder / "waveglow.pt")
    (folder / "voice.json").write_text(json.dumps(config), encoding="utf-8")
    return folder
