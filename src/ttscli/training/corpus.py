"""The teacher corpus: festival's HTS voice renders cleaned text lines into log-mels."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import random
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

SAMPLE_RATE = 22050
FESTIVAL_VOICE = "voice_cmu_us_slt_arctic_hts"
TEACHER = "festival cmu_us_slt_arctic_hts"


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "ttscli" / "train"
    return Path(os.environ.get("TTSCLI_TRAIN_CACHE", default))


def read_transcripts(path: Path) -> list[tuple[str, str]]:
    """LJSpeech `id|text` lines."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if "|" in line:
            rows.append(tuple(line.split("|", 1)))
    return rows


FORTUNES_DIR = Path("/usr/share/games/fortunes")
# Collections of the Debian `fortunes` package read for everyday sentences (LJSpeech is 19th- and
# 20th-century prose with few questions, exclamations or short replies). Offensive ones are left.
FORTUNE_COLLECTIONS = (
    "fortunes", "wisdom", "people", "work", "food", "education", "computers", "science", "love",
    "family", "friendship", "humorists", "literature", "medicine", "miscellaneous", "pets",
    "platitudes", "sports", "kids", "law", "cookie", "magic", "news", "riddles", "linux",
)  # fmt: skip
_FORTUNE_SENTENCE = re.compile(r"[A-Za-z0-9 ,.;:!?'$%&()-]+[.!?]")


def everyday_sentences(
    n: int, folder: Path = FORTUNES_DIR, exclude: set[str] = frozenset(), seed: int = 0
) -> list[tuple[str, str]]:
    """Up to n (id, sentence) pairs of 4-120 characters split out of fortune-cookie files.

    Attributions ("-- Author") and anything with markup, dialogue labels ("Q:") or odd symbols
    are dropped; the order is seeded; the id hashes the sentence, so renderings stay cached.
    """
    found: set[str] = set()
    for name in FORTUNE_COLLECTIONS:
        path = folder / name
        if not path.exists():
            continue
        for cookie in path.read_text(encoding="latin-1").split("\n%\n"):
            cookie = " ".join(re.sub(r"\n\s*--.*$", "", cookie.strip(), flags=re.S).split())
            for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z])", cookie):
                sentence = sentence.strip()
                if (
                    4 <= len(sentence) <= 120
                    and _FORTUNE_SENTENCE.fullmatch(sentence)
                    and not re.match(r"^[A-Za-z' -]{1,20}:", sentence)
                    and not sentence.isupper()
                    and sentence not in exclude
                ):
                    found.add(sentence)
    rows = sorted(found)
    random.Random(seed).shuffle(rows)
    return [("everyday-" + hashlib.sha1(s.encode()).hexdigest()[:12], s) for s in rows[:n]]


def model_text(text: str) -> str:
    """What the model reads, as characters: the cleaned text rebuilt from its symbol ids."""
    from ttscli.text import sequence_to_text, text_to_sequence

    return sequence_to_text(text_to_sequence(text)).strip()


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", " ").replace('"', " ") + '"'


def render_with_festival(items: list[tuple[str, str]], out_dir: Path, processes: int = 2) -> None:
    """Render (name, text) pairs to out_dir/<name>.wav (32 kHz) with batched festival runs."""
    if shutil.which("festival") is None:
        raise RuntimeError("festival is not installed: apt-get install festival festvox-us-slt-hts")
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = [(n, t) for n, t in items if not (out_dir / f"{n}.wav").exists()]
    chunks = [todo[i : i + 100] for i in range(0, len(todo), 100)]

    def run(chunk: list[tuple[str, str]]) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".scm", delete=False) as script:
            script.write(f"({FESTIVAL_VOICE})\n")
            for name, text in chunk:
                tmp = out_dir / f".{name}.tmp.wav"
                script.write(f'(utt.save.wave (SynthText {_scheme_string(text)}) "{tmp}" \'riff)\n')
        try:
            subprocess.run(["nice", "-n", "10", "festival", "-b", script.name], check=False,
                           capture_output=True, timeout=3600)  # fmt: skip
        finally:
            os.unlink(script.name)
        for name, _ in chunk:
            tmp = out_dir / f".{name}.tmp.wav"
            if tmp.exists():
                os.replace(tmp, out_dir / f"{name}.wav")

    with ThreadPoolExecutor(processes) as pool:
        list(pool.map(run, chunks))


def load_teacher_audio(path: Path) -> np.ndarray:
    """Teacher WAV -> float32 mono at 22,050 Hz, leading/trailing silence trimmed."""
    import soundfile

    audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if rate != SAMPLE_RATE:
        from scipy.signal import resample_poly  # the `train` extra

        g = math.gcd(rate, SAMPLE_RATE)
        audio = resample_poly(audio, SAMPLE_RATE // g, rate // g).astype(np.float32)
    return trim_silence(audio)


def trim_silence(audio: np.ndarray, top_db: float = 40.0, frame: int = 256) -> np.ndarray:
    """Cut leading/trailing frames quieter than top_db below the loudest (one frame kept)."""
    from ttscli.audio import loud_frames

    n = len(audio) // frame
    if n == 0:
        return audio
    loud = loud_frames(audio, top_db, frame)
    start = max(0, loud[0] - 1) * frame
    end = min(n, loud[-1] + 2) * frame
    return audio[start:end]


def build_split(name: str, rows: list[tuple[str, str]], processes: int = 2) -> Path:
    """Render a split and store ids, mels (float16) and teacher lengths in one .pt file."""
    from ttscli.audio import mel_spectrogram
    from ttscli.text import text_to_sequence

    root = cache_dir()
    target = root / f"{name}.pt"
    wanted = [rid for rid, _ in rows]
    if target.exists() and torch.load(target, weights_only=True)["names"] == wanted:
        return target
    texts = [(rid, model_text(text)) for rid, text in rows]
    render_with_festival(texts, root / "wavs", processes)
    data = {"ids": [], "texts": [], "mels": [], "names": []}
    for rid, text in texts:
        wav = root / "wavs" / f"{rid}.wav"
        if not wav.exists():
            log.warning("festival gave no audio for %s", rid)
            continue
        audio = load_teacher_audio(wav)
        with torch.no_grad():
            mel = mel_spectrogram(torch.from_numpy(audio)[None])[0]
        data["ids"].append(torch.tensor(text_to_sequence(text), dtype=torch.int16))
        data["texts"].append(text)
        data["mels"].append(mel.to(torch.float16))
        data["names"].append(rid)
    torch.save(data, target)
    return target
