"""Quality figures of the embedded voice on held-out lines (needs the `train` extra)."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import statistics
from pathlib import Path

import numpy as np

from . import LJSPEECH_DIR
from .corpus import (
    SAMPLE_RATE,
    cache_dir,
    load_teacher_audio,
    model_text,
    read_transcripts,
    render_with_festival,
)

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
    from ttscli.audio import loud_frames

    frame = 256
    n = len(audio) // frame
    loud = loud_frames(audio, top_db, frame)
    return loud[0] * frame / SAMPLE_RATE, (n - 1 - loud[-1]) * frame / SAMPLE_RATE


def _baseline_distances(rows, refs) -> dict[str, float]:
    """Teacher vs Griffin-Lim of its own mel, per line; cached (it depends on the teacher only)."""
    path = cache_dir() / "baseline_distances.json"
    cached = json.loads(path.read_text()) if path.exists() else {}
    for rid, _ in rows:
        if rid in refs and rid not in cached:
            cached[rid] = cepstral_distance(refs[rid], griffin_lim_baseline(refs[rid]))
    path.write_text(json.dumps(cached))
    return cached


def _figures(rows, refs, results, baselines) -> dict:
    stopped, within, dists, bases, peaks, silences, finite = 0, 0, [], [], [], [], True
    for (rid, _), result in zip(rows, results, strict=True):
        if rid not in refs or result.audio is None:
            continue
        ref = refs[rid]
        stopped += int(not result.gate_failed)
        within += int(abs(len(result.audio) / len(ref) - 1) <= 0.2)
        finite &= bool(np.isfinite(result.audio).all())
        peaks.append(20 * math.log10(float(np.abs(result.audio).max()) + 1e-12))
        silences.append(max(leading_trailing_silence_seconds(result.audio)))
        dists.append(cepstral_distance(ref, result.audio))
        bases.append(baselines[rid])
    n = len(dists)
    return {
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


def text_file_rows(path: Path) -> list[tuple[str, str]]:
    """One sentence per non-empty line -> (id, text); the id hashes the text, so the teacher's
    renderings and baseline distances cached under it stay valid when the file changes."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if text:
            rows.append(("text-" + hashlib.sha1(text.encode()).hexdigest()[:12], text))
    return rows


def evaluate(
    n_lines: int = 500,
    griffin_lim_iters: list[int] | None = None,
    text_file: Path | None = None,
    seed: int = 1234,
    data_dir: Path = LJSPEECH_DIR,
) -> list[dict]:
    """Render test lines with the shipped voice and compare them with the teacher's audio.

    With `griffin_lim_iters`, the same lines are vocoded once per iteration count (the figure
    that decides how few iterations keep the voice's fidelity); one JSON line each. With
    `text_file`, its first `n_lines` sentences instead of LJSpeech's test lines (the teacher
    renders them first, cached), else LJSpeech's test lines from `data_dir`. The voice decodes
    with prenet dropout, so `seed` makes the figures repeatable (unseeded runs of the 500 lines
    differed by up to 0.01 in the ratio).
    """
    import time

    from ttscli.synthesizer import SynthesisConfig, Synthesizer
    from ttscli.voices import load_voice

    wav_dir = cache_dir() / "wavs"
    if text_file is None:
        rows = read_transcripts(Path(data_dir) / "ljspeech_test.txt")[:n_lines]
    else:
        rows = text_file_rows(text_file)[:n_lines]
        render_with_festival([(rid, model_text(text)) for rid, text in rows], wav_dir)
    refs = {rid: load_teacher_audio(wav_dir / f"{rid}.wav") for rid, _ in rows
            if (wav_dir / f"{rid}.wav").exists()}  # fmt: skip
    baselines = _baseline_distances(rows, refs)
    voice = load_voice("ttscli-en")
    all_figures = []
    for n_iter in griffin_lim_iters or [None]:
        if n_iter is not None:
            voice.vocoder.n_iter = n_iter
        started = time.perf_counter()
        results = list(Synthesizer(voice, SynthesisConfig(seed=seed)).stream(rows))
        seconds = time.perf_counter() - started
        figures = _figures(rows, refs, results, baselines)
        figures["griffin_lim_iters"] = voice.vocoder.n_iter
        audio_seconds = sum(r.audio_seconds for r in results)
        figures["synthesis_real_time_factor"] = round(audio_seconds / max(seconds, 1e-9), 1)
        log.info("evaluation: %s", json.dumps(figures))
        print(json.dumps(figures), flush=True)
        all_figures.append(figures)
    return all_figures
