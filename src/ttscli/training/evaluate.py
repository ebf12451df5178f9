"""Quality figures of the embedded voice on held-out lines (needs the `train` extra)."""

from __future__ import annotations

import json
import logging
import math
import statistics

import numpy as np

from .corpus import SAMPLE_RATE, cache_dir, load_teacher_audio, read_transcripts

log = logging.getLogger(__name__)


def cepstra(y: np.ndarray) -> np.ndarray:
    """MFCC c1-c24 of the trimmed signal (top_db 35, n_fft 1024, hop 256, 80 mels)."""
    import librosa

    y, _ = librosa.effects.trim(y, top_db=35)
    mfcc = librosa.feature.mfcc(
        y=y, sr=SAMPLE_RATE, n_mfcc=25, n_fft=1024, hop_length=256, n_mels=80
    )
    return mfcc[1:]


def cepstral_distance(ref: np.ndarray, test: np.ndarray) -> float:
    """10/ln(10) x mean Euclidean MFCC distance along the DTW path (lower is closer)."""
    import librosa

    a, b = cepstra(ref), cepstra(test)
    _, path = librosa.sequence.dtw(X=a, Y=b, metric="euclidean")
    d = np.linalg.norm(a[:, path[:, 0]] - b[:, path[:, 1]], axis=0)
    return float(10.0 / math.log(10.0) * d.mean())


def griffin_lim_baseline(ref: np.ndarray) -> np.ndarray:
    """A 32-iteration librosa Griffin-Lim of the teacher's own mel (a perfect Tacotron2)."""
    import librosa

    kw = dict(sr=SAMPLE_RATE, n_fft=1024, hop_length=256, fmin=0, fmax=8000, power=1)
    mel = librosa.feature.melspectrogram(y=ref, n_mels=80, **kw)
    return librosa.feature.inverse.mel_to_audio(mel, n_iter=32, **kw)


def leading_trailing_silence_seconds(
    audio: np.ndarray, top_db: float = 40.0
) -> tuple[float, float]:
    frame = 256
    n = len(audio) // frame
    rms = np.sqrt(np.mean(audio[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)
    loud = np.nonzero(20 * np.log10(rms / rms.max()) > -top_db)[0]
    return loud[0] * frame / SAMPLE_RATE, (n - 1 - loud[-1]) * frame / SAMPLE_RATE


def evaluate(n_lines: int = 60) -> dict:
    """Render test lines with the shipped voice and compare them with the teacher's audio."""
    from ttscli.synthesizer import Synthesizer
    from ttscli.voices import load_voice

    from .__main__ import DATA

    rows = read_transcripts(DATA / "ljspeech_test.txt")[:n_lines]
    synth = Synthesizer(load_voice("ttscli-en"))
    wav_dir = cache_dir() / "wavs"
    stopped, within, dists, bases, peaks, silences, finite = 0, 0, [], [], [], [], True
    results = list(synth.stream(rows))
    for (rid, _), result in zip(rows, results, strict=True):
        ref_path = wav_dir / f"{rid}.wav"
        if not ref_path.exists():
            continue
        ref = load_teacher_audio(ref_path)
        if result.audio is None:
            continue
        stopped += int(not result.gate_failed)
        within += int(abs(len(result.audio) / len(ref) - 1) <= 0.2)
        finite &= bool(np.isfinite(result.audio).all())
        peaks.append(20 * math.log10(float(np.abs(result.audio).max()) + 1e-12))
        silences.append(max(leading_trailing_silence_seconds(result.audio)))
        dists.append(cepstral_distance(ref, result.audio))
        bases.append(cepstral_distance(ref, griffin_lim_baseline(ref)))
    n = len(dists)
    figures = {
        "lines": n,
        "gate_stop_rate": stopped / max(n, 1),
        "length_within_20pct_rate": within / max(n, 1),
        "median_cepstral_distance": statistics.median(dists) if dists else None,
        "median_baseline_distance": statistics.median(bases) if bases else None,
        "distance_ratio": statistics.median(dists) / statistics.median(bases) if dists else None,
        "all_finite": finite,
        "peak_dbfs_range": [min(peaks), max(peaks)] if peaks else None,
        "max_edge_silence_seconds": max(silences) if silences else None,
        "errors": sum(1 for r in results if r.error),
    }
    log.info("evaluation: %s", json.dumps(figures))
    print(json.dumps(figures))
    return figures
