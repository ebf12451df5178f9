"""Vocoders behind one interface (WaveGlow, HiFi-GAN, Griffin-Lim), and the one a file holds.

A vocoder turns a log-mel batch into an audio batch. One that sets ``takes_frames`` is also
given each item's number of mel frames (``frames=``): HiFi-GAN's receptive field reaches into a
padded batch's padding, so it vocodes each item at its own length.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import torch

from .audio import HOP_LENGTH
from .errors import VoiceError
from .placement import place

GRIFFIN_LIM = "griffin-lim"  # the --vocoder value that needs no file
# Default denoiser strength of a HiFi-GAN by who published it: NVIDIA's example uses 0.005
# with its generator; jik876's code has no denoiser.
HIFIGAN_DENOISER_STRENGTH = {"nvidia": 0.005, "jik876": 0.0}


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
    default_denoiser_strength: float | None = None  # the voice's (NVIDIA's: 0.01)
    takes_frames = False

    def __init__(self, waveglow: torch.nn.Module, source: str | os.PathLike | None = None) -> None:
        self.waveglow = waveglow
        self.source = source  # the file it was read from, for a float32 copy
        self._denoiser = None

    @property
    def n_mel_channels(self) -> int | None:
        return getattr(self.waveglow, "n_mel_channels", None)

    def to(self, device: torch.device, dtype: torch.dtype) -> WaveGlowVocoder:
        if place(self.waveglow, device, dtype):
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


class HiFiGANVocoder:
    """A HiFi-GAN generator, followed by its bias-spectrum denoiser when a strength is given.

    With ``frames`` each item is vocoded at its own length (items of equal length together,
    at most ``max_batch`` at a time), so a batch gives each line the audio it gets alone.
    """

    takes_frames = True

    def __init__(
        self,
        hifigan: torch.nn.Module,
        origin: str | None = None,
        source: str | os.PathLike | None = None,
        max_batch: int | None = None,
    ) -> None:
        self.hifigan = hifigan
        self.origin = origin  # "nvidia" or "jik876": decides the default denoiser strength
        self.source = source
        self.max_batch = max_batch
        self._denoiser = None

    @property
    def hop_length(self) -> int:
        return self.hifigan.hop_length

    @property
    def n_mel_channels(self) -> int:
        return self.hifigan.n_mel_channels

    @property
    def default_denoiser_strength(self) -> float:
        return HIFIGAN_DENOISER_STRENGTH.get(self.origin or "", 0.0)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.hifigan.parameters()).dtype

    def to(self, device: torch.device, dtype: torch.dtype) -> HiFiGANVocoder:
        if place(self.hifigan, device, dtype):
            self._denoiser = None  # its bias is rendered by the generator as it is now
        return self

    def __call__(
        self,
        mel: torch.Tensor,
        *,
        sigma: float | None,
        denoiser_strength: float | None,
        frames: list[int] | None = None,
    ) -> torch.Tensor:
        from .hifigan import vocode_by_length

        mel = mel.to(self.dtype)
        lengths = [mel.shape[2]] * mel.shape[0] if frames is None else [int(n) for n in frames]
        items = [mel[row, :, :n] for row, n in enumerate(lengths)]
        audio = mel.new_zeros(mel.shape[0], mel.shape[2] * self.hop_length, dtype=torch.float32)
        for row, wave in enumerate(vocode_by_length(self.hifigan, items, self.max_batch)):
            audio[row, : wave.shape[0]] = wave.float()
        if denoiser_strength:
            if self._denoiser is None:
                from .hifigan import Denoiser

                self._denoiser = Denoiser(self.hifigan)
            audio = self._denoiser(audio, strength=denoiser_strength)
        return audio


class GriffinLimVocoder:
    """Griffin-Lim phase reconstruction from the mel (no trained vocoder needed)."""

    hop_length = HOP_LENGTH
    default_denoiser_strength: float | None = None
    takes_frames = False
    n_mel_channels: int | None = None

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


def load_vocoder(spec: str | os.PathLike, sample_rate: int = 22050) -> Vocoder:
    """The vocoder ``spec`` names: ``"griffin-lim"``, or a file (or jik876 folder) whose
    content decides: a WaveGlow or a HiFi-GAN checkpoint. Other checkpoints are a VoiceError."""
    if str(spec) == GRIFFIN_LIM:
        return GriffinLimVocoder(sample_rate=sample_rate)
    from .checkpoints import model_from_checkpoint, open_checkpoint

    path = Path(spec)
    if not path.exists():
        raise VoiceError(f"vocoder {str(spec)!r} is neither {GRIFFIN_LIM!r} nor an existing path")
    ckpt, file = open_checkpoint(path)  # read once: its content decides the vocoder
    if ckpt.kind not in ("waveglow", "hifigan"):
        raise VoiceError(
            f"{path} holds a {ckpt.kind} checkpoint, not a vocoder (WaveGlow or HiFi-GAN)"
        )
    model = model_from_checkpoint(ckpt, file)
    if ckpt.kind == "waveglow":
        return WaveGlowVocoder(model, source=path)
    return HiFiGANVocoder(model, origin=ckpt.metadata.get("origin"), source=path)


def vocoder_role(vocoder: object) -> str:
    """The name of a vocoder's file in ``Voice.files`` ("waveglow", "hifigan")."""
    return "hifigan" if isinstance(vocoder, HiFiGANVocoder) else "waveglow"


def check_fits(
    vocoder: object, n_mel_channels: int | None, hop_length: int | None, voice: str
) -> None:
    """A VoiceError when the vocoder reads other mels than the Tacotron2 writes: another
    number of channels, or another hop (audio samples per mel frame; None: not checked)."""
    read = getattr(vocoder, "n_mel_channels", None)
    name = type(vocoder).__name__.removesuffix("Vocoder")
    if n_mel_channels is not None and read is not None and read != n_mel_channels:
        raise VoiceError(
            f"voice {voice!r}: its Tacotron2 makes {n_mel_channels}-channel mels, its {name} "
            f"reads {read}-channel ones"
        )
    hop = getattr(vocoder, "hop_length", hop_length)
    if hop_length is not None and hop != hop_length:
        raise VoiceError(
            f"voice {voice!r}: its {name} makes {hop} audio samples per mel frame, but the "
            f"Tacotron2's mels are {hop_length} samples apart (another hop length)"
        )
