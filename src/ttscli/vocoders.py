"""Vocoders behind one interface: a mel batch and its lengths in, an audio batch out."""

from __future__ import annotations

from typing import Protocol

import torch

from .audio import HOP_LENGTH


class Vocoder(Protocol):
    """Turns log-mel spectrograms [B, n_mel, frames] into audio [B, frames * hop_length]."""

    hop_length: int

    def __call__(
        self, mel: torch.Tensor, *, sigma: float | None, denoiser_strength: float | None
    ) -> torch.Tensor: ...

    def to(self, device: torch.device, dtype: torch.dtype) -> Vocoder: ...


class WaveGlowVocoder:
    """NVIDIA's WaveGlow, followed by its bias-spectrum denoiser when a strength is given."""

    hop_length = HOP_LENGTH

    def __init__(self, waveglow: torch.nn.Module) -> None:
        self.waveglow = waveglow
        self._denoiser = None

    def to(self, device: torch.device, dtype: torch.dtype) -> WaveGlowVocoder:
        weight = next(self.waveglow.parameters())
        if weight.device != torch.device(device) or weight.dtype != dtype:
            self.waveglow.to(device=device, dtype=dtype)
            self._denoiser = None  # its bias is rendered by the WaveGlow as it is now
        return self

    @property
    def dtype(self) -> torch.dtype:
        return next(self.waveglow.parameters()).dtype

    def __call__(
        self, mel: torch.Tensor, *, sigma: float | None, denoiser_strength: float | None
    ) -> torch.Tensor:
        mel = mel.to(self.dtype)
        audio = self.waveglow.infer(mel, sigma=1.0 if sigma is None else sigma)
        audio = audio.float()
        if denoiser_strength:
            if self._denoiser is None:
                from .waveglow import Denoiser

                self._denoiser = Denoiser(self.waveglow)
            audio = self._denoiser(audio, strength=denoiser_strength)
        return audio


class GriffinLimVocoder:
    """Griffin-Lim phase reconstruction from the mel (no trained vocoder needed)."""

    hop_length = HOP_LENGTH

    def __init__(self, n_iter: int = 32, momentum: float = 0.99, sample_rate: int = 22050) -> None:
        self.n_iter = n_iter
        self.momentum = momentum
        self.sample_rate = sample_rate
        self.device = torch.device("cpu")

    def to(self, device: torch.device, dtype: torch.dtype) -> GriffinLimVocoder:
        self.device = torch.device(device)  # always computed in float32
        return self

    def __call__(
        self, mel: torch.Tensor, *, sigma: float | None, denoiser_strength: float | None
    ) -> torch.Tensor:
        from .audio import griffin_lim

        return griffin_lim(
            mel.float(), n_iter=self.n_iter, momentum=self.momentum, sample_rate=self.sample_rate
        )
