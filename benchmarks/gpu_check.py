"""GPU check: the `cuda`-marked tests, then real-time factors of full-size random voices, one JSON line.

    python -m benchmarks.gpu_check                      # on a GPU machine (make gpu-check)
    python -m benchmarks.gpu_check --device cpu --quick  # smoke run: tiny models, no tests

Voices: a random full-size Tacotron2 (NVIDIA's torch.hub config) with the 512-channel WaveGlow,
and with HiFi-GAN V1; each at batch 1 and 4, fp32 and fp16 (fp16 on CUDA only; a CPU with
native bfloat16 adds bf16). Every line decodes exactly ``steps`` decoder steps (200 by
default), so the audio length is fixed. The real-time factor is seconds of audio made per
second of wall time, the median of ``repeat`` timed runs after one warm-up.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .sections import cpu_name

ROOT = Path(__file__).resolve().parents[1]
TEXT = "The quick brown fox jumps over the lazy dog while the band plays on."
# Tiny models for the smoke run (sizes only; the code paths are the full-size ones).
TINY_TACOTRON2 = dict(
    symbols_embedding_dim=32, encoder_embedding_dim=32, encoder_n_convolutions=1,
    attention_rnn_dim=32, attention_dim=16, attention_location_n_filters=4,
    decoder_rnn_dim=32, prenet_dim=16, postnet_embedding_dim=32, postnet_n_convolutions=2,
)  # fmt: skip
TINY_WAVEGLOW = dict(n_flows=4, n_group=8, n_early_every=2, n_early_size=2)
TINY_HIFIGAN = dict(
    upsample_initial_channel=32, resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3, 5]]
)


def _tacotron2(quick: bool):
    import torch

    from ttscli.tacotron2 import DEFAULT_CONFIG, Tacotron2

    torch.manual_seed(0)
    return Tacotron2(**{**DEFAULT_CONFIG, **(TINY_TACOTRON2 if quick else {})}).eval()


def _waveglow(quick: bool):
    import torch

    from ttscli.waveglow import DEFAULT_CONFIG, WaveGlow

    config = {**DEFAULT_CONFIG, "WN_config": {**DEFAULT_CONFIG["WN_config"], "n_channels": 512}}
    if quick:
        config = {
            **config,
            **TINY_WAVEGLOW,
            "WN_config": dict(n_layers=2, kernel_size=3, n_channels=8),
        }
    torch.manual_seed(0)
    return WaveGlow(**config).remove_weightnorm().eval()


def _hifigan(quick: bool):
    import torch

    from ttscli.hifigan import HIFIGAN_V1_CONFIG, HiFiGAN

    torch.manual_seed(0)
    config = {**HIFIGAN_V1_CONFIG, **(TINY_HIFIGAN if quick else {})}
    return HiFiGAN(**config, weight_norm=True).remove_weight_norm().eval()


def _precisions(device: str, quick: bool) -> list[str]:
    from ttscli.synthesizer import cpu_has_fast_bf16

    if device.startswith("cuda"):
        return ["fp32", "fp16"]
    return ["fp32", "bf16"] if cpu_has_fast_bf16() and not quick else ["fp32"]


def _real_time_factor(voice, precision: str, device: str, batch: int, steps: int, repeat: int):
    """Seconds of audio per wall second for ``batch`` lines of exactly ``steps`` steps."""
    import torch

    from ttscli.synthesizer import SynthesisConfig, Synthesizer

    config = SynthesisConfig(
        batch_size=batch, fixed_decoder_steps=steps, seed=0, device=device, precision=precision
    )
    synth = Synthesizer(voice, config)
    items = [(i, TEXT) for i in range(batch)]

    def run() -> float:
        results = list(synth.stream(items))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        bad = [r.error for r in results if not r.ok]
        if bad:
            raise RuntimeError(f"{precision} batch {batch}: {bad[0]}")
        return sum(r.audio_seconds for r in results)

    run()  # warm-up (and CUDA/oneDNN kernel selection)
    rates = []
    for _ in range(repeat):
        started = time.perf_counter()
        audio_seconds = run()
        rates.append(audio_seconds / (time.perf_counter() - started))
    return round(statistics.median(rates), 3)


def measure(device: str, quick: bool, steps: int, repeat: int) -> dict[str, Any]:
    """{vocoder: {precision: {"B1": rtf, "B4": rtf}}} for WaveGlow and HiFi-GAN voices."""
    from ttscli.config import VoiceDefaults
    from ttscli.vocoders import HiFiGANVocoder, WaveGlowVocoder
    from ttscli.voices import Voice

    defaults = VoiceDefaults(denoiser_strength=0.0, prenet_dropout=0.0, sigma=0.6)
    figures: dict[str, Any] = {}
    for name, build, wrap in (
        ("waveglow", _waveglow, WaveGlowVocoder),
        ("hifigan", _hifigan, HiFiGANVocoder),
    ):
        figures[name] = {}
        for precision in _precisions(device, quick):
            # each precision gets freshly built models: casting in place rounds them for good
            voice = Voice(
                f"random-{name}", _tacotron2(quick), wrap(build(quick)), defaults=defaults
            )
            figures[name][precision] = {
                f"B{batch}": _real_time_factor(voice, precision, device, batch, steps, repeat)
                for batch in (1, 4)
            }
    return figures


def run_cuda_tests(timeout_s: int) -> dict[str, Any]:
    """``pytest -m cuda`` in a child process: its exit status and summary line."""
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-m",
        "cuda",
        "-p",
        "no:cacheprovider",
        "tests",
    ]
    try:
        done = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        return {"rc": None, "summary": f"timed out after {timeout_s} s"}
    lines = [
        line
        for line in done.stdout.splitlines()
        if re.search(r"\d+ (passed|failed|error|skipped)", line)
    ]
    summary = lines[-1].strip("= ") if lines else done.stdout[-500:] + done.stderr[-500:]
    if done.returncode not in (0, 5):
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-2000:])
    return {"rc": done.returncode, "summary": summary}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__)
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument(
        "--quick", action="store_true", help="tiny models and few steps (smoke run)"
    )
    parser.add_argument("--steps", type=int, help="decoder steps per line (default 200; quick 8)")
    parser.add_argument("--repeat", type=int, help="timed runs per figure (default 3; quick 1)")
    parser.add_argument("--no-tests", action="store_true", help="skip the cuda-marked tests")
    parser.add_argument("--test-timeout", type=int, default=240, help="seconds for the tests")
    args = parser.parse_args(argv)

    import torch

    started = time.perf_counter()
    on_cuda = args.device.startswith("cuda")
    if on_cuda and not torch.cuda.is_available():
        print(json.dumps({"error": "no CUDA GPU visible to torch", "torch": torch.__version__}))
        return 1
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(args.device) if on_cuda else cpu_name(),
        "torch": torch.__version__,
        "quick": args.quick,
    }
    if not args.no_tests:
        result["cuda_tests"] = run_cuda_tests(args.test_timeout)
    steps = args.steps or (8 if args.quick else 200)
    repeat = args.repeat or (1 if args.quick else 3)
    result["steps"] = steps
    result["real_time_factor"] = measure(args.device, args.quick, steps, repeat)
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))
    tests_ok = args.no_tests or result["cuda_tests"]["rc"] in (0, 5)
    return 0 if tests_ok else 1


if __name__ == "__main__":
    sys.exit(main())
