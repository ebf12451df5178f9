"""The benchmark sections; each returns a dict of named figures."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
LJ_TEST = SHARED_DATA / "ljspeech_test.txt"
LJ_TRAIN = SHARED_DATA / "ljspeech_train.txt"


def cpu_name() -> str:
    """The processor's model name (/proc/cpuinfo), else what platform says."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def waveglow_hub_config(n_channels: int = 512) -> dict:
    """The torch.hub WaveGlow config, with n_channels 512 (hub) or 256 (NGC's smaller file)."""
    from ttscli.waveglow import DEFAULT_CONFIG

    return {
        **DEFAULT_CONFIG,
        "WN_config": {**DEFAULT_CONFIG["WN_config"], "n_channels": n_channels},
    }


class Skip(Exception):
    """A section that cannot run here (missing data or voice)."""


def _lj_lines(path: Path, limit: int | None = None) -> list[str]:
    if not path.is_file():
        raise Skip(f"{path} not found")
    lines = [line.split("|", 1)[1] for line in path.read_text(encoding="utf-8").splitlines()]
    return lines[:limit] if limit else lines


def _timed(fn, repeat: int = 3) -> float:
    """Median wall seconds of `repeat` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_text(quick: bool = False) -> dict:
    from ttscli.text import text_to_sequence

    lines = _lj_lines(LJ_TRAIN, 2000 if quick else None)
    text_to_sequence("warm up 1, 2, 3")
    started = time.perf_counter()
    for line in lines:
        text_to_sequence(line)
    elapsed = time.perf_counter() - started
    return {"lines": len(lines), "lines_per_second": len(lines) / elapsed}


def _random_tacotron2():
    import torch

    from ttscli.tacotron2 import DEFAULT_CONFIG, Tacotron2

    torch.manual_seed(0)
    model = Tacotron2(**DEFAULT_CONFIG).eval()
    model.prenet_dropout = 0.0
    model.early_stopping = False
    return model


def bench_tacotron2(quick: bool = False) -> dict:
    import torch

    model = _random_tacotron2()
    steps = 20 if quick else 100
    model.max_decoder_steps = steps
    figures = {}
    for batch in (1, 4, 8):
        ids = torch.randint(12, 64, (batch, 150))
        lengths = torch.full((batch,), 150, dtype=torch.long)
        with torch.inference_mode():
            seconds = _timed(lambda ids=ids, lengths=lengths: model.infer(ids, lengths), 2)
        figures[f"ms_per_step_B{batch}"] = 1000 * seconds / steps
        figures[f"step_items_per_s_B{batch}"] = steps * batch / seconds
    figures["batch8_vs_batch1_throughput"] = (
        figures["step_items_per_s_B8"] / figures["step_items_per_s_B1"]
    )
    return figures


def _random_waveglow(n_channels: int):
    import torch

    from ttscli.waveglow import WaveGlow

    torch.manual_seed(0)
    return WaveGlow(**waveglow_hub_config(n_channels)).remove_weightnorm().eval()


def bench_waveglow(quick: bool = False) -> dict:
    import torch

    from ttscli.synthesizer import cpu_has_fast_bf16

    figures = {}
    frames = 8 if quick else 40
    dtypes = [("fp32", torch.float32)]
    if cpu_has_fast_bf16():
        dtypes.append(("bf16", torch.bfloat16))
    else:  # oneDNN falls back to scalar code: ~50x slower than fp32, not worth minutes
        figures["bf16"] = "skipped: this CPU has no native bfloat16 (AVX512-BF16/AMX)"
    for dtype_name, dtype in dtypes:
        model = _random_waveglow(512).to(dtype)
        for batch in (1, 4, 8):
            mel = torch.randn(batch, 80, frames, dtype=dtype)
            with torch.inference_mode():
                seconds = _timed(lambda mel=mel, model=model: model.infer(mel, sigma=0.6), 1)
            samples = batch * frames * 256
            figures[f"{dtype_name}_samples_per_s_B{batch}"] = samples / seconds
        figures[f"{dtype_name}_x_real_time_B1"] = figures[f"{dtype_name}_samples_per_s_B1"] / 22050
    return figures


def bench_end_to_end(quick: bool = False) -> dict:
    """16 LJSpeech lines, exactly 150 decoder steps each, through Synthesizer + WAV writing."""
    from ttscli.batch import write_audio_atomic
    from ttscli.synthesizer import SynthesisConfig, Synthesizer, Voice, VoiceDefaults
    from ttscli.vocoders import WaveGlowVocoder

    lines = _lj_lines(LJ_TEST, 4 if quick else 16)
    steps = 30 if quick else 150
    voice = Voice(
        name="random-full-size",
        tacotron2=_random_tacotron2(),
        vocoder=WaveGlowVocoder(_random_waveglow(256)),
        defaults=VoiceDefaults(denoiser_strength=0.0, prenet_dropout=0.0),
    )
    figures = {}
    for batch in (1, 4, 8):
        config = SynthesisConfig(batch_size=batch, fixed_decoder_steps=steps, seed=0)
        synth = Synthesizer(voice, config)
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            audio_seconds = 0.0
            for result in synth.stream(enumerate(lines)):
                write_audio_atomic(Path(tmp) / f"{result.id}.wav", result.audio, 22050)
                audio_seconds += result.audio_seconds
            elapsed = time.perf_counter() - started
        figures[f"x_real_time_B{batch}"] = audio_seconds / elapsed
    return figures


def bench_embedded_voice(quick: bool = False) -> dict:
    """`ttscli batch` of the LJSpeech test lines, and `ttscli say "hello world"` wall time."""
    from ttscli.voices import EMBEDDED_DIR, EMBEDDED_VOICE

    if not (EMBEDDED_DIR / EMBEDDED_VOICE / "tacotron2.pt").is_file():
        raise Skip("the embedded voice is not installed")
    lines = _lj_lines(LJ_TEST, 40 if quick else None)
    ttscli = str(Path(sys.executable).with_name("ttscli"))
    env = {**os.environ, "TTSCLI_VOICE": EMBEDDED_VOICE}
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "lines.txt"
        src.write_text("\n".join(lines) + "\n", encoding="utf-8")
        started = time.perf_counter()
        proc = subprocess.run(
            [ttscli, "batch", str(src), "-o", f"{tmp}/out", "-q"], env=env, capture_output=True
        )
        wall = time.perf_counter() - started
        rows = [json.loads(r) for r in Path(f"{tmp}/out/manifest.jsonl").read_text().splitlines()]
        audio = sum(r["audio_seconds"] or 0 for r in rows)
        figures["batch_lines"] = len(lines)
        figures["batch_ok"] = sum(r["status"] == "ok" for r in rows)
        figures["batch_exit_status"] = proc.returncode
        figures["batch_audio_seconds"] = audio
        figures["batch_wall_seconds"] = wall
        figures["batch_x_real_time"] = audio / wall

        def run(cmd):
            started = time.perf_counter()
            subprocess.run(cmd, env=env, check=True, capture_output=True)
            return time.perf_counter() - started

        say = [ttscli, "say", "hello world", "-o", f"{tmp}/hello.wav"]
        import_torch = [sys.executable, "-c", "import torch"]
        figures["say_hello_seconds"] = statistics.median(run(say) for _ in range(3))
        figures["import_torch_seconds"] = statistics.median(run(import_torch) for _ in range(3))
        figures["say_minus_import_torch_seconds"] = (
            figures["say_hello_seconds"] - figures["import_torch_seconds"]
        )
    return figures


def bench_ray(quick: bool = False) -> dict:
    """`ttscli batch --ray` with 1 and 2 one-thread workers (local runtime), embedded voice."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise Skip("Ray is not installed (pip install 'ttscli[ray]')")
    lines = _lj_lines(LJ_TEST, 40 if quick else 200)
    ttscli = str(Path(sys.executable).with_name("ttscli"))
    env = {**os.environ, "TTSCLI_VOICE": "ttscli-en"}
    figures = {"lines": len(lines)}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "lines.txt"
        src.write_text("\n".join(lines) + "\n", encoding="utf-8")
        for workers in (1, 2):
            out = f"{tmp}/out{workers}"
            cmd = [ttscli, "batch", str(src), "-o", out, "--ray", "--workers", str(workers)]
            started = time.perf_counter()
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - started
            rows = [json.loads(r) for r in Path(f"{out}/manifest.jsonl").read_text().splitlines()]
            audio = sum(r["audio_seconds"] or 0 for r in rows)
            figures[f"workers_{workers}_ok"] = sum(r["status"] == "ok" for r in rows)
            figures[f"workers_{workers}_exit_status"] = proc.returncode
            figures[f"workers_{workers}_wall_seconds"] = wall
            figures[f"workers_{workers}_x_real_time"] = audio / wall
    figures["speedup_2_vs_1"] = (
        figures["workers_1_wall_seconds"] / figures["workers_2_wall_seconds"]
    )
    return figures


SECTIONS = {
    "text": bench_text,
    "tacotron2": bench_tacotron2,
    "waveglow": bench_waveglow,
    "end_to_end": bench_end_to_end,
    "embedded_voice": bench_embedded_voice,
    "ray": bench_ray,
}
