"""Bias-spectrum denoising shared by the vocoders: subtract a model's bias magnitude per STFT frame."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ttscli.audio import STFT
from ttscli.errors import SynthesisError, TTSError

__all__ = ["BiasDenoiser"]


class BiasDenoiser(nn.Module):
    """NVIDIA's vocoder denoiser, given the vocoder's audio for a "silent" mel.

    The STFT magnitude of the first frame of ``bias_audio`` [1, T] is the bias, [1, n_freqs, 1]
    (float32). Denoising subtracts ``strength`` x bias from every frame's magnitude, clamps at
    0 and inverts with the original phases. Subclasses render the bias audio for their model.
    """

    def __init__(
        self,
        bias_audio: torch.Tensor,
        filter_length: int = 1024,
        n_overlap: int = 4,
        win_length: int = 1024,
    ) -> None:
        super().__init__()
        self.stft = STFT(filter_length, filter_length // n_overlap, win_length).to(
            bias_audio.device
        )
        with torch.no_grad():
            bias_spec, _ = self.stft.transform(bias_audio.float())  # [1, n_freqs, frames]
        self.register_buffer("bias_spec", bias_spec[:, :, :1], persistent=False)

    @staticmethod
    def bias_input(shape: tuple[int, ...], mode: str, like: torch.Tensor) -> torch.Tensor:
        """The mel whose audio is the bias: zeros (``mode="zeros"``) or standard normal noise."""
        if mode == "zeros":
            return torch.zeros(shape, dtype=like.dtype, device=like.device)
        if mode == "normal":
            return torch.randn(shape, dtype=like.dtype, device=like.device)
        raise TTSError(f"unknown denoiser mode {mode!r} (expected 'zeros' or 'normal')")

    def forward(self, audio: torch.Tensor, strength: float = 0.01) -> torch.Tensor:
        """audio [B, T] -> denoised float32 audio [B, T].

        For T a multiple of the hop and T > filter_length / 2 this is NVIDIA's result exactly
        (theirs has shape [B, 1, T]). Other lengths are zero-padded at the end to a whole
        number of hops, and to more than half a filter, then trimmed back to T (NVIDIA's drops
        the last T mod hop samples and fails below filter_length / 2 + 1 samples). Half and
        bfloat16 audio is converted to float32.
        """
        if audio.dim() != 2:
            raise SynthesisError(f"expected audio [batch, samples], got {tuple(audio.shape)}")
        length = audio.size(1)
        audio = audio.to(device=self.bias_spec.device, dtype=torch.float32)
        if length == 0:
            return audio
        hop = self.stft.hop_length
        padded_length = max(-(-length // hop) * hop, self.stft.min_samples())
        padded_length = -(-padded_length // hop) * hop
        if padded_length != length:
            audio = F.pad(audio, (0, padded_length - length))
        with torch.no_grad():
            magnitude, phase = self.stft.transform(audio)
            magnitude = torch.clamp(magnitude - self.bias_spec * strength, min=0.0)
            denoised = self.stft.inverse(magnitude, phase)  # [B, padded_length]
        return denoised[:, :length]
