"""STFT, mel filterbank, log-mel and Griffin-Lim against librosa/scipy references and first principles.

``tests/data/librosa_reference.npz`` was made once with librosa 0.11.0 / scipy 1.17.1 (the
versions NVIDIA's fixtures were made with) in a throwaway virtual environment:

- ``mel_22050_1024_80_0_8000`` = librosa.filters.mel(sr=22050, n_fft=1024, n_mels=80, fmin=0,
  fmax=8000); ``mel_16000_512_40_50_none`` = the same for sr=16000, n_fft=512, n_mels=40, fmin=50,
  fmax=None (float32);
- ``hann_periodic_1024_float64`` = scipy.signal.get_window("hann", 1024, fftbins=True);
- ``window_sumsquare_7_frames[_win800]`` = librosa.filters.window_sumsquare(window="hann",
  n_frames=7, hop_length=256, win_length=1024 (or 800), n_fft=1024, dtype=float32, norm=None);
- ``signal``: 0.5 s of a 440 Hz sine + a chirp + noise (float32, 22050 Hz), and
  ``signal_log_mel`` = log(max(mel_basis @ |librosa.stft(signal, n_fft=1024, hop_length=256,
  window="hann", center=True, pad_mode="reflect")|, 1e-5)), an FFT-based derivation of what
  ttscli computes with convolutions.
"""

from __future__ import annotations

import math
import pathlib
import time

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from ttscli import audio
from ttscli.audio import STFT, GriffinLim, griffin_lim, mel_filterbank, mel_spectrogram
from ttscli.errors import SynthesisError

DATA = pathlib.Path(__file__).parent / "data"
REF = np.load(DATA / "librosa_reference.npz")


def _sine(frequency_hz: float, samples: int, sample_rate: int = 22050) -> torch.Tensor:
    t = np.arange(samples) / sample_rate
    return torch.from_numpy((0.5 * np.sin(2 * np.pi * frequency_hz * t)).astype(np.float32))


# --- windows and filterbank ------------------------------------------------------------------


def test_periodic_hann_is_scipys_bit_for_bit():
    np.testing.assert_array_equal(audio._hann64(1024), REF["hann_periodic_1024_float64"])
    assert audio.hann_window(1024).dtype == torch.float32
    np.testing.assert_array_equal(
        audio.hann_window(1024).numpy(), REF["hann_periodic_1024_float64"].astype(np.float32)
    )


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("mel_22050_1024_80_0_8000", {}),
        (
            "mel_16000_512_40_50_none",
            dict(sample_rate=16000, n_fft=512, n_mels=40, fmin=50.0, fmax=None),
        ),
    ],
)
def test_mel_filterbank_matches_librosa(name, kwargs):
    basis = mel_filterbank(**kwargs)
    assert basis.dtype == torch.float32
    assert basis.shape == REF[name].shape
    torch.testing.assert_close(basis, torch.from_numpy(REF[name]), rtol=1e-6, atol=1e-9)


def test_mel_filterbank_is_a_fresh_tensor_each_call():
    first = mel_filterbank()
    first.zero_()
    assert mel_filterbank().abs().sum() > 0


@pytest.mark.parametrize(
    ("key", "win_length"),
    [("window_sumsquare_7_frames", 1024), ("window_sumsquare_7_frames_win800", 800)],
)
def test_window_sumsquare_matches_librosa(key, win_length):
    got = audio.window_sumsquare(7, hop_length=256, win_length=win_length, filter_length=1024)
    np.testing.assert_array_equal(got.numpy(), REF[key])


def test_inverse_basis_equals_numpy_pinv():
    basis = audio._fourier_basis64(1024)
    expected = np.linalg.pinv(4.0 * basis).T
    np.testing.assert_allclose(
        audio._inverse_fourier_basis64(1024, 256), expected, rtol=0, atol=1e-15
    )


# --- STFT ------------------------------------------------------------------------------------


def _numpy_stft(signal: np.ndarray, n_fft: int = 1024, hop: int = 256) -> np.ndarray:
    """Centred, reflect-padded, periodic-Hann STFT from np.fft, float64 complex [F, frames]."""
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    padded = np.pad(signal.astype(np.float64), n_fft // 2, mode="reflect")
    n_frames = len(signal) // hop + 1
    frames = np.stack([padded[i * hop : i * hop + n_fft] * window for i in range(n_frames)], 1)
    return np.fft.rfft(frames, axis=0)


def test_stft_transform_matches_numpy_fft():
    signal = REF["signal"]
    magnitude, phase = STFT().transform(torch.from_numpy(signal)[None])
    expected = _numpy_stft(signal)
    assert magnitude.shape == (1, 513, len(signal) // 256 + 1)
    torch.testing.assert_close(
        magnitude[0].double(), torch.from_numpy(np.abs(expected)), rtol=1e-4, atol=1e-4
    )
    strong = np.abs(expected) > 1.0  # phase is only meaningful where there is energy
    got = np.exp(1j * phase[0].double().numpy()[strong])
    assert np.abs(got - np.exp(1j * np.angle(expected[strong]))).max() < 1e-4


def test_stft_round_trip_recovers_the_signal():
    torch.manual_seed(0)
    signal = torch.rand(3, 256 * 40) - 0.5
    stft = STFT()
    rebuilt = stft.inverse(*stft.transform(signal))
    assert rebuilt.shape == signal.shape
    torch.testing.assert_close(rebuilt, signal, rtol=0, atol=2e-6)
    # a length that is not a multiple of the hop loses its tail (NVIDIA's behaviour)
    rebuilt = stft(signal[:, :1000])
    assert rebuilt.shape == (3, 768)
    torch.testing.assert_close(rebuilt, signal[:, :768], rtol=0, atol=2e-6)


def test_stft_frame_counts_and_short_input():
    stft = STFT()
    for samples in (513, 700, 1024, 5000):
        magnitude, phase = stft.transform(torch.zeros(2, samples))
        assert magnitude.shape == phase.shape == (2, 513, samples // 256 + 1)
    with pytest.raises(SynthesisError):
        stft.transform(torch.zeros(1, 512))
    with pytest.raises(SynthesisError):
        stft.transform(torch.zeros(512))


def test_stft_other_sizes_round_trip():
    stft = STFT(filter_length=512, hop_length=128, win_length=400)
    signal = torch.rand(1, 128 * 30) - 0.5
    torch.testing.assert_close(stft(signal), signal, rtol=0, atol=5e-6)


# --- log-mel ---------------------------------------------------------------------------------


def test_mel_spectrogram_matches_librosa_derivation():
    signal = torch.from_numpy(REF["signal"])
    log_mel = mel_spectrogram(signal[None])
    assert log_mel.shape == (1, 80, len(signal) // 256 + 1)
    assert log_mel.dtype == torch.float32
    torch.testing.assert_close(
        log_mel[0], torch.from_numpy(REF["signal_log_mel"]), rtol=0, atol=1e-4
    )
    # 1-D input is one item
    torch.testing.assert_close(mel_spectrogram(signal), log_mel[0])


def _slaney_mel(hz: float) -> float:
    # independent statement of the Slaney scale: 3 bands per 200 Hz below 1 kHz, then 27 bands
    # per factor 6.4
    return 3 * hz / 200 if hz < 1000 else 15 + 27 * math.log(hz / 1000) / math.log(6.4)


@pytest.mark.parametrize("frequency_hz", [300.0, 1000.0, 2500.0, 6000.0])
def test_pure_tone_peaks_in_its_band(frequency_hz):
    log_mel = mel_spectrogram(_sine(frequency_hz, 22050)[None])[0]  # [80, frames]
    top = _slaney_mel(8000.0)
    centres = [top * (i + 1) / 81 for i in range(80)]
    expected = min(range(80), key=lambda i: abs(centres[i] - _slaney_mel(frequency_hz)))
    peak = int(log_mel[:, 5:-5].mean(dim=1).argmax())
    assert abs(peak - expected) <= 1
    # far from the tone there is (almost) nothing
    assert log_mel[(expected + 20) % 80, 5:-5].max() < log_mel[peak, 5:-5].min() - 5


def test_silence_is_at_the_floor_and_batches_are_independent():
    log_mel = mel_spectrogram(torch.zeros(1, 4096))
    assert torch.all(log_mel == math.log(1e-5))
    a = _sine(440.0, 6000)
    b = _sine(2000.0, 6000) * 0.3
    both = mel_spectrogram(torch.stack([a, b]))
    single = mel_spectrogram(b[None])[0]
    # the batched GEMM may round differently; compare linear mels (log magnifies tiny values)
    torch.testing.assert_close(both[1].exp(), single.exp(), rtol=1e-4, atol=1e-6)
    assert mel_spectrogram(torch.stack([a, b]).double()).dtype == torch.float32


# --- Griffin-Lim -----------------------------------------------------------------------------


def _voiced(seconds: float, f0_hz: float, seed: int) -> torch.Tensor:
    """A vowel-like test signal: 14 harmonics with vibrato, a slow envelope and a little noise."""
    t = torch.arange(int(seconds * 22050), dtype=torch.float64) / 22050
    f0 = f0_hz * (1 + 0.05 * torch.sin(2 * math.pi * 3 * t))
    phase = 2 * math.pi * torch.cumsum(f0, 0) / 22050
    signal = sum((0.3 / k) * torch.sin(k * phase) for k in range(1, 15))
    envelope = 0.5 + 0.5 * torch.sin(2 * math.pi * 1.5 * t)
    noise = torch.randn(t.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (signal * envelope + 0.01 * noise).float()


def _mel_error(log_mel: torch.Tensor, audio: torch.Tensor) -> float:
    """Mean |log-mel difference| over the bins of log_mel above -9 (ignoring near-silence)."""
    rebuilt = mel_spectrogram(audio)[:, :, : log_mel.size(2)]
    mask = log_mel > -9
    return float((rebuilt - log_mel)[mask].abs().mean())


@pytest.fixture(scope="module")
def voiced_mels():
    audio = torch.stack([_voiced(1.5, 120, 0), _voiced(1.5, 210, 1)])
    return mel_spectrogram(audio)[:, :, :-1]  # frames·256 = samples, as Tacotron 2's mels


def test_griffin_lim_mel_converges_towards_the_input(voiced_mels):
    errors = {n: _mel_error(voiced_mels, griffin_lim(voiced_mels, n_iter=n)) for n in (0, 4, 32)}
    # random phase alone is far off; iterations bring the rebuilt mel close to the input
    assert errors[0] > 0.5
    assert errors[32] < errors[4] < errors[0]
    assert errors[32] < 0.21


def test_griffin_lim_shapes_determinism_and_batching(voiced_mels):
    state = torch.get_rng_state()
    audio = griffin_lim(voiced_mels, n_iter=3)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is not used
    assert audio.shape == (2, voiced_mels.size(2) * 256)
    assert audio.dtype == torch.float32
    assert torch.isfinite(audio).all()
    assert torch.equal(audio, griffin_lim(voiced_mels, n_iter=3))
    # each item's audio does not depend on the rest of the batch
    assert torch.equal(audio[1:], griffin_lim(voiced_mels[1:], n_iter=3))
    # a different seed starts from a different phase
    assert not torch.equal(audio, GriffinLim(n_iter=3, seed=1)(voiced_mels))
    # classic Griffin-Lim (no momentum) also converges, more slowly
    plain = _mel_error(voiced_mels, GriffinLim(n_iter=8, momentum=0.0)(voiced_mels))
    fast = _mel_error(voiced_mels, GriffinLim(n_iter=8, momentum=0.99)(voiced_mels))
    assert fast < plain < 0.5


def test_griffin_lim_edge_cases():
    assert griffin_lim(torch.zeros(2, 80, 0)).shape == (2, 0)
    silence = griffin_lim(torch.full((1, 80, 3), math.log(1e-5)), n_iter=2)
    assert silence.shape == (1, 768)
    assert silence.abs().max() < 1e-3
    with pytest.raises(SynthesisError):
        griffin_lim(torch.zeros(80, 10))
    with pytest.raises(SynthesisError):
        GriffinLim(momentum=1.0)


@pytest.mark.slow
def test_griffin_lim_speed():
    """32 iterations on eight 3-8 s utterances, 2 threads: well over 30x real time."""
    torch.set_num_threads(2)
    audio = [
        _voiced(seconds, 100 + 15 * i, i) for i, seconds in enumerate([3, 5, 8, 4, 6, 3.5, 7, 5.5])
    ]
    samples = max(len(a) for a in audio) // 256 * 256
    batch = torch.stack([F.pad(a, (0, samples - len(a)))[:samples] for a in audio])
    log_mel = mel_spectrogram(batch)[:, :, :-1]
    griffin_lim(log_mel[:1, :, :50], n_iter=2)  # warm-up
    started = time.perf_counter()
    out = griffin_lim(log_mel, n_iter=32)
    x_real_time = out.numel() / 22050 / (time.perf_counter() - started)
    assert x_real_time > 30, x_real_time


def _tone_between_silences(lead_seconds: float, tone_seconds: float, tail_seconds: float):
    sr = 22050
    t = np.arange(int(tone_seconds * sr)) / sr
    tone = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    lead = np.zeros(int(lead_seconds * sr), np.float32)
    tail = np.full(int(tail_seconds * sr), 1e-4, np.float32)  # -74 dB below the tone: quiet
    return np.concatenate([lead, tone, tail]), tone


@pytest.mark.parametrize("max_seconds", [0.0, 0.1, 0.25])
def test_limit_edge_silence_keeps_the_sound_and_at_most_the_limit_of_quiet(max_seconds):
    signal, tone = _tone_between_silences(0.6, 0.5, 1.0)

    out = audio.limit_edge_silence(signal, 22050, max_seconds)

    frame_seconds = 256 / 22050
    assert len(out) / 22050 <= 0.5 + 2 * (max_seconds + frame_seconds)
    assert np.abs(out).max() == np.abs(tone).max()
    assert np.count_nonzero(np.abs(out) > 0.01) == np.count_nonzero(np.abs(tone) > 0.01)


def test_limit_edge_silence_leaves_loud_silent_and_unlimited_audio_alone():
    signal, tone = _tone_between_silences(0.6, 0.5, 1.0)
    assert audio.limit_edge_silence(tone, 22050, 0.0).shape == tone.shape
    silent = np.zeros(22050, np.float32)
    assert audio.limit_edge_silence(silent, 22050, 0.0).shape == silent.shape
    assert audio.limit_edge_silence(signal, 22050, math.inf).shape == signal.shape
