"""Audio signal processing: NVIDIA's conv-based STFT, Slaney mel filterbank, log-mel, Griffin-Lim."""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ttscli.errors import SynthesisError

__all__ = [
    "FILTER_LENGTH",
    "HOP_LENGTH",
    "MEL_FLOOR",
    "N_MELS",
    "SAMPLE_RATE",
    "STFT",
    "hann_window",
    "mel_filterbank",
    "mel_spectrogram",
    "window_sumsquare",
]

SAMPLE_RATE = 22050
FILTER_LENGTH = 1024
HOP_LENGTH = 256
N_MELS = 80
MEL_FMIN = 0.0
MEL_FMAX = 8000.0
# log(clamp(mel, MEL_FLOOR)) is NVIDIA's dynamic range compression: floor ln(1e-5) = -11.51.
MEL_FLOOR = 1e-5

_FLOAT32_TINY = float(np.finfo(np.float32).tiny)


# ---------------------------------------------------------------------------------------------
# Windows and bases (numpy float64, cached per process)
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _hann64(win_length: int) -> np.ndarray:
    """Periodic Hann window in float64, bit-identical to scipy's get_window('hann', fftbins=True).

    scipy evaluates 0.5 + 0.5·cos(x) on linspace(-π, π, N+1) and drops the last point; the
    textbook 0.5 − 0.5·cos(2πn/N) differs from it in the last float64 bit at half the points.
    """
    phase = np.linspace(-np.pi, np.pi, win_length + 1)
    window = 0.5 + 0.5 * np.cos(phase)
    window = window[:-1]
    window.setflags(write=False)
    return window


def _padded_window64(win_length: int, filter_length: int) -> np.ndarray:
    """The Hann window centred in filter_length samples (librosa's pad_center)."""
    window = _hann64(win_length)
    if win_length > filter_length:
        raise ValueError(f"win_length {win_length} exceeds filter_length {filter_length}")
    left = (filter_length - win_length) // 2
    return np.pad(window, (left, filter_length - win_length - left))


def hann_window(win_length: int = FILTER_LENGTH, filter_length: int | None = None) -> torch.Tensor:
    """Periodic Hann window as float32 [filter_length], zero-padded around win_length samples."""
    filter_length = win_length if filter_length is None else filter_length
    return torch.from_numpy(_padded_window64(win_length, filter_length).astype(np.float32))


@functools.lru_cache(maxsize=4)
def _fourier_basis64(filter_length: int) -> np.ndarray:
    """[2·(N/2+1), N] float64: real rows then imaginary rows of the DFT matrix (np.fft values)."""
    cutoff = filter_length // 2 + 1
    dft = np.fft.fft(np.eye(filter_length))[:cutoff]
    basis = np.vstack([dft.real, dft.imag])
    basis.setflags(write=False)
    return basis


@functools.lru_cache(maxsize=4)
def _inverse_fourier_basis64(filter_length: int, hop_length: int) -> np.ndarray:
    """pinv(scale · basis).T in float64, scale = filter_length / hop_length.

    The Fourier basis B has orthogonal rows with ‖row‖² = N, except that the DC and Nyquist
    cosine rows are counted once and their sine rows are zero, so pinv(B).T = B · w / N with
    w = 1 for DC/Nyquist and 2 elsewhere (zero rows stay zero). This closed form equals
    numpy's SVD-based pinv to ~1e-17 (tests compare them) at 1/100 of the cost, which would
    otherwise be about a second at every Denoiser construction.
    """
    basis = _fourier_basis64(filter_length)
    cutoff = filter_length // 2 + 1
    weights = np.full(2 * cutoff, 2.0)
    weights[[0, cutoff - 1]] = 1.0
    weights[[cutoff, 2 * cutoff - 1]] = 0.0  # the sine rows at DC and Nyquist are all zero
    scale = filter_length / hop_length
    inverse = basis * (weights / (filter_length * scale))[:, None]
    inverse.setflags(write=False)
    return inverse


@functools.lru_cache(maxsize=16)
def _window_sumsquare_cached(
    n_frames: int, hop_length: int, win_length: int, filter_length: int
) -> torch.Tensor:
    win_sq = _padded_window64(win_length, filter_length) ** 2
    length = filter_length + hop_length * (n_frames - 1)
    total = np.zeros(length, dtype=np.float32)
    if filter_length % hop_length == 0:
        # Every hop-sized block receives the window segments of the overlapping frames in
        # frame order; each addition is float64 then rounded to float32, as the reference's
        # in-place add into a float32 array.
        overlap = filter_length // hop_length
        blocks = total.reshape(n_frames + overlap - 1, hop_length)
        segments = win_sq.reshape(overlap, hop_length)
        for segment in range(overlap - 1, -1, -1):
            # frame i = block - segment contributes segment `segment` to block i + segment
            target = blocks[segment : segment + n_frames]
            target[:] = (target.astype(np.float64) + segments[segment]).astype(np.float32)
    else:
        for i in range(n_frames):
            start = i * hop_length
            stop = min(length, start + filter_length)
            part = total[start:stop].astype(np.float64) + win_sq[: stop - start]
            total[start:stop] = part.astype(np.float32)
    result = torch.from_numpy(total)
    return result


def window_sumsquare(
    n_frames: int,
    hop_length: int = HOP_LENGTH,
    win_length: int = FILTER_LENGTH,
    filter_length: int = FILTER_LENGTH,
) -> torch.Tensor:
    """Sum of squared periodic Hann windows over n_frames frames, float32 [fl + hop·(n−1)]."""
    return _window_sumsquare_cached(n_frames, hop_length, win_length, filter_length).clone()


@functools.lru_cache(maxsize=16)
def _istft_divisor(
    n_frames: int, hop_length: int, win_length: int, filter_length: int
) -> torch.Tensor:
    """The window sum where it exceeds float32 tiny, 1 elsewhere (division by 1 is exact)."""
    total = _window_sumsquare_cached(n_frames, hop_length, win_length, filter_length)
    return torch.where(total > _FLOAT32_TINY, total, torch.ones_like(total))


# ---------------------------------------------------------------------------------------------
# STFT
# ---------------------------------------------------------------------------------------------


class STFT(nn.Module):
    """NVIDIA's STFT as convolutions with a windowed Fourier basis (float32 buffers).

    ``transform`` reflect-pads filter_length/2 on both sides, so a signal of T samples gives
    ⌊T/hop⌋ + 1 frames and needs T > filter_length/2. ``inverse`` overlap-adds with
    conv_transpose2d, divides by the window sum-square and trims the padding again.
    """

    def __init__(
        self,
        filter_length: int = FILTER_LENGTH,
        hop_length: int = HOP_LENGTH,
        win_length: int = FILTER_LENGTH,
    ) -> None:
        super().__init__()
        self.filter_length = filter_length
        self.hop_length = hop_length
        self.win_length = win_length
        window = hann_window(win_length, filter_length)  # [filter_length] float32
        forward = torch.from_numpy(_fourier_basis64(filter_length).astype(np.float32))
        inverse = torch.from_numpy(
            _inverse_fourier_basis64(filter_length, hop_length).astype(np.float32)
        )
        # [2·(N/2+1), 1, N] each; the window is applied in float32 after the cast.
        self.register_buffer("forward_basis", (forward * window)[:, None, :], persistent=False)
        self.register_buffer("inverse_basis", (inverse * window)[:, None, :], persistent=False)

    @property
    def n_freqs(self) -> int:
        return self.filter_length // 2 + 1

    def min_samples(self) -> int:
        """Shortest signal ``transform`` accepts (reflect padding needs more than half a frame)."""
        return self.filter_length // 2 + 1

    def _spectrum(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """audio [B, T] -> (real, imag), each [B, N/2+1, ⌊T/hop⌋+1]."""
        if audio.dim() != 2:
            raise SynthesisError(f"STFT expects audio [batch, samples], got {tuple(audio.shape)}")
        if audio.size(1) < self.min_samples():
            raise SynthesisError(
                f"STFT needs at least {self.min_samples()} samples, got {audio.size(1)}"
            )
        pad = self.filter_length // 2
        padded = F.pad(audio[:, None, :], (pad, pad), mode="reflect")  # [B, 1, T + 2·pad]
        spec = F.conv1d(padded, self.forward_basis, stride=self.hop_length)  # [B, 2·nf, frames]
        return spec[:, : self.n_freqs], spec[:, self.n_freqs :]

    def transform(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """audio [B, T] float32 -> (magnitude, phase), each [B, N/2+1, ⌊T/hop⌋+1]."""
        real, imag = self._spectrum(audio)
        magnitude = torch.sqrt(real**2 + imag**2)
        phase = torch.atan2(imag, real)
        return magnitude, phase

    def magnitude(self, audio: torch.Tensor) -> torch.Tensor:
        """audio [B, T] float32 -> magnitude [B, N/2+1, ⌊T/hop⌋+1] (the phase is skipped)."""
        real, imag = self._spectrum(audio)
        return torch.sqrt(real**2 + imag**2)

    def inverse(self, magnitude: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        """(magnitude, phase) [B, N/2+1, frames] -> audio [B, hop·(frames−1)]."""
        recombined = torch.cat([magnitude * torch.cos(phase), magnitude * torch.sin(phase)], dim=1)
        audio = F.conv_transpose2d(
            recombined[..., None],  # [B, 2·nf, frames, 1]
            self.inverse_basis[..., None],  # [2·nf, 1, N, 1]
            stride=(self.hop_length, 1),
        )[:, 0, :, 0]  # [B, N + hop·(frames−1)]
        divisor = _istft_divisor(
            magnitude.size(-1), self.hop_length, self.win_length, self.filter_length
        ).to(audio.device)
        audio = audio / divisor
        audio = audio * (float(self.filter_length) / self.hop_length)
        pad = self.filter_length // 2
        return audio[:, pad : audio.size(1) - pad]

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """audio [B, T] -> the same audio after a transform/inverse round trip."""
        return self.inverse(*self.transform(audio))


# ---------------------------------------------------------------------------------------------
# Mel filterbank and log-mel spectrogram
# ---------------------------------------------------------------------------------------------

# Slaney's auditory-toolbox mel scale: linear below 1 kHz, logarithmic above.
_MEL_LINEAR_HZ_PER_MEL = 200.0 / 3.0
_MEL_LOG_START_HZ = 1000.0
_MEL_LOG_START_MEL = _MEL_LOG_START_HZ / _MEL_LINEAR_HZ_PER_MEL
_MEL_LOG_STEP = math.log(6.4) / 27.0


def _hz_to_mel(frequency_hz: float) -> float:
    if frequency_hz >= _MEL_LOG_START_HZ:
        return _MEL_LOG_START_MEL + math.log(frequency_hz / _MEL_LOG_START_HZ) / _MEL_LOG_STEP
    return frequency_hz / _MEL_LINEAR_HZ_PER_MEL


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    hz = _MEL_LINEAR_HZ_PER_MEL * mels
    log_part = mels >= _MEL_LOG_START_MEL
    hz[log_part] = _MEL_LOG_START_HZ * np.exp(_MEL_LOG_STEP * (mels[log_part] - _MEL_LOG_START_MEL))
    return hz


@functools.lru_cache(maxsize=8)
def _mel_filterbank_cached(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float
) -> torch.Tensor:
    fft_hz = np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate)  # [n_fft/2+1]
    mel_points = np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2)
    edges_hz = _mel_to_hz(mel_points)  # [n_mels+2]: lower edge, centre, upper edge of each band
    widths_hz = np.diff(edges_hz)
    offsets = edges_hz[:, None] - fft_hz[None, :]  # [n_mels+2, n_freqs]
    weights = np.zeros((n_mels, fft_hz.size), dtype=np.float32)
    for band in range(n_mels):
        rising = -offsets[band] / widths_hz[band]
        falling = offsets[band + 2] / widths_hz[band + 1]
        weights[band] = np.maximum(0.0, np.minimum(rising, falling))
    # Slaney normalisation: each triangle has unit area in Hz (float32 × float64 -> float32).
    weights *= (2.0 / (edges_hz[2 : n_mels + 2] - edges_hz[:n_mels]))[:, None]
    return torch.from_numpy(weights)


def mel_filterbank(
    sample_rate: int = SAMPLE_RATE,
    n_fft: int = FILTER_LENGTH,
    n_mels: int = N_MELS,
    fmin: float = MEL_FMIN,
    fmax: float | None = MEL_FMAX,
) -> torch.Tensor:
    """Slaney-scale, Slaney-normalised triangular filters, float32 [n_mels, n_fft//2+1].

    The same numbers as ``librosa.filters.mel(sr=..., n_fft=..., n_mels=..., fmin=..., fmax=...)``
    with its defaults (htk=False, norm='slaney'); ``fmax=None`` means sample_rate / 2.
    """
    fmax = sample_rate / 2.0 if fmax is None else fmax
    return _mel_filterbank_cached(
        int(sample_rate), int(n_fft), int(n_mels), float(fmin), float(fmax)
    ).clone()


@functools.lru_cache(maxsize=4)
def _mel_stft(filter_length: int, hop_length: int, win_length: int) -> STFT:
    return STFT(filter_length, hop_length, win_length)


def mel_spectrogram(
    audio: torch.Tensor,
    sample_rate: int = SAMPLE_RATE,
    n_mels: int = N_MELS,
    filter_length: int = FILTER_LENGTH,
    hop_length: int = HOP_LENGTH,
    win_length: int = FILTER_LENGTH,
    fmin: float = MEL_FMIN,
    fmax: float | None = MEL_FMAX,
) -> torch.Tensor:
    """Log-mel spectrogram as NVIDIA's Tacotron 2 training data: [B, samples] -> [B, n_mels, frames].

    audio is float in [-1, 1] (int16 WAVs divided by 32768). frames = ⌊samples/hop⌋ + 1; the
    STFT magnitude (reflect pad, periodic Hann) goes through the mel filterbank and then
    log(clamp(·, 1e-5)). Computed in float32 on audio's device; a 1-D input is one item.
    """
    squeeze = audio.dim() == 1
    if squeeze:
        audio = audio[None]
    if audio.dim() != 2:
        raise SynthesisError(f"expected audio [batch, samples], got {tuple(audio.shape)}")
    audio = audio.float()
    stft = _mel_stft(filter_length, hop_length, win_length)
    if audio.device != stft.forward_basis.device:
        stft = STFT(filter_length, hop_length, win_length).to(audio.device)
    magnitude = stft.magnitude(audio)  # [B, n_freqs, frames]
    basis = mel_filterbank(sample_rate, filter_length, n_mels, fmin, fmax).to(audio.device)
    mel = torch.matmul(basis, magnitude)  # [B, n_mels, frames]
    log_mel = torch.log(torch.clamp(mel, min=MEL_FLOOR))
    return log_mel[0] if squeeze else log_mel
