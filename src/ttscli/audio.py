"""Audio signal processing: NVIDIA's conv-based STFT, Slaney mel filterbank, log-mel, Griffin-Lim."""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ttscli.errors import SynthesisError
from ttscli.pausing import pause_point

__all__ = [
    "FILTER_LENGTH",
    "HOP_LENGTH",
    "LOG_MEL_FLOOR",
    "MEL_MAGNITUDE_FLOOR",
    "N_MELS",
    "SAMPLE_RATE",
    "STFT",
    "GriffinLim",
    "griffin_lim",
    "hann_window",
    "mel_filterbank",
    "mel_spectrogram",
    "mel_to_magnitude",
    "window_sumsquare",
]

SAMPLE_RATE = 22050
FILTER_LENGTH = 1024
HOP_LENGTH = 256
N_MELS = 80
MEL_FMIN = 0.0
MEL_FMAX = 8000.0
# log(clamp(mel, MEL_MAGNITUDE_FLOOR)) is NVIDIA's dynamic range compression: the smallest mel
# magnitude (linear) kept, and so the log-mel of silence, LOG_MEL_FLOOR = ln(1e-5) = -11.51.
MEL_MAGNITUDE_FLOOR = 1e-5
LOG_MEL_FLOOR = math.log(MEL_MAGNITUDE_FLOOR)
MEL_FLOOR = MEL_MAGNITUDE_FLOOR  # the former name of MEL_MAGNITUDE_FLOOR

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
        raise SynthesisError(f"win_length {win_length} exceeds filter_length {filter_length}")
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
def _mel_stft(filter_length: int, hop_length: int, win_length: int, device: str) -> STFT:
    return STFT(filter_length, hop_length, win_length).to(device)


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
    stft = _mel_stft(filter_length, hop_length, win_length, str(audio.device))
    magnitude = stft.magnitude(audio)  # [B, n_freqs, frames]
    basis = mel_filterbank(sample_rate, filter_length, n_mels, fmin, fmax).to(audio.device)
    mel = torch.matmul(basis, magnitude)  # [B, n_mels, frames]
    log_mel = torch.log(torch.clamp(mel, min=MEL_MAGNITUDE_FLOOR))
    return log_mel[0] if squeeze else log_mel


# ---------------------------------------------------------------------------------------------
# Griffin-Lim
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _mel_pinv_cached(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float
) -> torch.Tensor:
    basis = _mel_filterbank_cached(sample_rate, n_fft, n_mels, fmin, fmax)
    return torch.linalg.pinv(basis.double()).float()  # [n_freqs, n_mels]


def mel_to_magnitude(
    log_mel: torch.Tensor,
    sample_rate: int = SAMPLE_RATE,
    n_fft: int = FILTER_LENGTH,
    fmin: float = MEL_FMIN,
    fmax: float | None = MEL_FMAX,
) -> torch.Tensor:
    """Log-mel [B, n_mels, frames] -> linear STFT magnitude [B, n_fft//2+1, frames], float32.

    exp undoes the log compression; the filterbank's pseudo-inverse maps mel bands back to
    frequency bins (least squares), and negative results are clamped to 0.
    """
    fmax = sample_rate / 2.0 if fmax is None else fmax
    pinv = _mel_pinv_cached(int(sample_rate), int(n_fft), log_mel.size(1), float(fmin), float(fmax))
    pinv = pinv.to(log_mel.device)
    return torch.clamp(torch.matmul(pinv, torch.exp(log_mel.float())), min=0.0)


@functools.lru_cache(maxsize=4)
def _initial_phase_cached(n_frames: int, n_freqs: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    # drawn frame by frame, so the first k frames do not depend on how many follow
    phase = torch.rand(n_frames, n_freqs, generator=generator, dtype=torch.float64)
    return torch.polar(torch.ones_like(phase), 2 * math.pi * phase).to(torch.complex64)


class GriffinLim:
    """Fast Griffin-Lim (Perraudin et al. 2013): phase for a log-mel spectrogram, batched.

    Each iteration takes an inverse STFT of the target magnitude with the current phase, an
    STFT of the result, and extrapolates the new phase with ``momentum`` (0 gives classic
    Griffin-Lim). The initial phase is random but fixed by ``seed`` (a private generator: the
    global RNG is untouched), so results are reproducible. Frames are centred (reflect padding)
    with a periodic Hann window, n_fft 1024 and hop 256 by default, as torch.stft/istft with
    center=True, which this computes with rfft/irfft and an overlap-add of its own (about 3x
    faster than torch.istft); the output has frames·hop_length samples.
    """

    def __init__(
        self,
        n_iter: int = 32,
        momentum: float = 0.99,
        sample_rate: int = SAMPLE_RATE,
        n_fft: int = FILTER_LENGTH,
        hop_length: int = HOP_LENGTH,
        win_length: int = FILTER_LENGTH,
        fmin: float = MEL_FMIN,
        fmax: float | None = MEL_FMAX,
        seed: int = 0,
    ) -> None:
        if n_iter < 0:
            raise SynthesisError(f"n_iter must be >= 0, got {n_iter}")
        if not 0.0 <= momentum < 1.0:
            raise SynthesisError(f"momentum must be in [0, 1), got {momentum}")
        if n_fft % hop_length != 0 or n_fft % 2 != 0:
            raise SynthesisError(f"n_fft {n_fft} must be even and a multiple of hop {hop_length}")
        self.n_iter = n_iter
        self.momentum = momentum
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.win_length = win_length
        self.fmin = fmin
        self.fmax = fmax
        self.seed = seed

    def _istft(
        self, spec: torch.Tensor, window: torch.Tensor, divisor: torch.Tensor
    ) -> torch.Tensor:
        """spec [B, frames, F] complex -> audio [B, hop·(frames−1)] (centred frames)."""
        batch, n_frames, _ = spec.shape
        frames = torch.fft.irfft(spec, n=self.n_fft, dim=-1)  # [B, frames, n_fft]
        frames.mul_(window)
        overlap = self.n_fft // self.hop_length
        blocks = frames.view(batch, n_frames, overlap, self.hop_length)
        audio = frames.new_zeros(batch, n_frames + overlap - 1, self.hop_length)
        for part in range(overlap):
            audio[:, part : part + n_frames] += blocks[:, :, part]
        audio = audio.view(batch, -1)
        audio.div_(divisor)
        pad = self.n_fft // 2
        return audio[:, pad : audio.size(1) - pad]

    def _stft(self, audio: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
        """audio [B, T] -> spec [B, T // hop + 1, F] complex (centred, reflect-padded frames)."""
        pad = self.n_fft // 2
        padded = F.pad(audio[:, None, :], (pad, pad), mode="reflect")[:, 0]
        frames = padded.unfold(-1, self.n_fft, self.hop_length) * window  # [B, frames, n_fft]
        return torch.fft.rfft(frames, dim=-1)

    def __call__(self, log_mel: torch.Tensor) -> torch.Tensor:
        """log_mel [B, n_mels, frames] -> audio [B, frames · hop_length] float32."""
        if log_mel.dim() != 3:
            raise SynthesisError(
                f"expected log-mel [batch, mels, frames], got {tuple(log_mel.shape)}"
            )
        batch, _, n_frames = log_mel.shape
        if n_frames == 0:
            return log_mel.new_zeros(batch, 0, dtype=torch.float32)
        if log_mel.device.type == "cpu" and batch > 1:
            # Items are independent; one at a time keeps the working set in cache (about 1.5x
            # faster on CPU than the whole batch at once) and gives bit-identical audio.
            return torch.cat([self(log_mel[i : i + 1]) for i in range(batch)])
        device = log_mel.device
        magnitude = mel_to_magnitude(log_mel, self.sample_rate, self.n_fft, self.fmin, self.fmax)
        # one extra (repeated) frame: centred frames over frames·hop samples number frames + 1
        magnitude = torch.cat([magnitude, magnitude[:, :, -1:]], dim=2)
        magnitude = magnitude.transpose(1, 2).contiguous()  # [B, frames + 1, F]
        window = hann_window(self.win_length, self.n_fft).to(device)
        divisor = _istft_divisor(n_frames + 1, self.hop_length, self.win_length, self.n_fft)
        divisor = divisor.to(device)
        angles = _initial_phase_cached(n_frames + 1, magnitude.size(2), self.seed).to(device)
        spec = magnitude * angles  # [B, frames + 1, F] complex
        extrapolation = self.momentum / (1.0 + self.momentum)
        previous = None
        for _ in range(self.n_iter):
            pause_point()  # a more urgent render on another thread may go first
            rebuilt = self._stft(self._istft(spec, window, divisor), window)
            if previous is None or extrapolation == 0.0:
                target = spec  # reuse the buffer: spec is recomputed below
                target.copy_(rebuilt)
            else:
                # c = rebuilt − a·previous, written over previous (no longer needed)
                target = torch.sub(rebuilt, previous, alpha=extrapolation, out=previous)
            # next spectrum: target magnitude with target's phase, c · |S| / |c|
            scale = torch.abs(target).add_(1e-16)
            torch.div(magnitude, scale, out=scale)
            spec = target
            torch.view_as_real(spec).mul_(scale[..., None])
            previous = rebuilt
        return self._istft(spec, window, divisor)


def griffin_lim(
    log_mel: torch.Tensor,
    n_iter: int = 32,
    momentum: float = 0.99,
    sample_rate: int = SAMPLE_RATE,
    seed: int = 0,
) -> torch.Tensor:
    """Audio [B, frames·256] from log-mel [B, 80, frames] by fast Griffin-Lim (see GriffinLim)."""
    return GriffinLim(n_iter=n_iter, momentum=momentum, sample_rate=sample_rate, seed=seed)(log_mel)


def loud_frames(audio: np.ndarray, top_db: float = 40.0, frame_length: int = 256) -> np.ndarray:
    """Indices of the whole frames whose RMS is within ``top_db`` of the loudest frame's."""
    n_frames = len(audio) // frame_length
    if n_frames == 0:
        return np.zeros(0, dtype=np.int64)
    frames = audio[: n_frames * frame_length].reshape(n_frames, frame_length)
    rms = np.sqrt(np.mean(frames**2, axis=1) + 1e-12)
    return np.nonzero(20 * np.log10(rms / rms.max()) > -top_db)[0]


def limit_edge_silence(
    audio: np.ndarray,
    sample_rate: int,
    max_seconds: float,
    top_db: float = 40.0,
    frame_length: int = 256,
) -> np.ndarray:
    """Keep at most ``max_seconds`` of quiet audio (frames ``top_db`` below the loudest) at each
    end; the cut falls in audio that quiet, so it needs no fade. Loud audio is never cut."""
    loud = loud_frames(audio, top_db, frame_length)
    if loud.size == 0 or not math.isfinite(max_seconds):
        return audio
    keep = int(round(max_seconds * sample_rate))
    start = max(0, int(loud[0]) * frame_length - keep)
    end = len(audio)  # the partial frame after the last whole one stays with a loud last frame
    if loud[-1] < len(audio) // frame_length - 1:
        end = min(end, (int(loud[-1]) + 1) * frame_length + keep)
    return audio[start:end]


def time_scale_mels(
    mel: torch.Tensor, frame_counts: torch.Tensor, speed: float, pad_value: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mels [B, n_mel, frames] played ``speed`` times faster (pitch kept): each row's first
    ``frame_counts[row]`` frames are interpolated linearly to ``round(count / speed)`` frames;
    the rest is ``pad_value``. Returns the new batch and its frame counts (on the CPU)."""
    if not (math.isfinite(speed) and speed > 0):
        raise ValueError(f"speed must be a positive number, not {speed!r}")
    counts = [int(c) for c in frame_counts.cpu().tolist()]
    new_counts = [max(1, round(c / speed)) if c else 0 for c in counts]
    out = mel.new_full((mel.shape[0], mel.shape[1], max(new_counts, default=0)), pad_value)
    for row, (count, new_count) in enumerate(zip(counts, new_counts, strict=True)):
        if count == 0:
            continue
        frames = mel[row : row + 1, :, :count]
        if count == 1:
            out[row, :, :new_count] = frames[0, :, :1]
            continue
        out[row, :, :new_count] = F.interpolate(
            frames, size=new_count, mode="linear", align_corners=True
        )[0]
    return out, torch.tensor(new_counts, dtype=torch.long)
