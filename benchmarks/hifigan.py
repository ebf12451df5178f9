"""HiFi-GAN benchmark sections: ttscli's generator against NVIDIA's code, and NVIDIA's voice end to end.

``hifigan``: the full-size torch.hub V1 generator (512 initial channels) with the same random
weights in NVIDIA's code (imported from the exported DLE tree: ``$TTS_REF``, ``--ref`` or
``../ref``) and in ttscli (read back by ``load_hifigan`` from a DLE-style checkpoint), one mel
of 200 frames, timed interleaved in one process: fp32 speed-up and parity, and ttscli in
bfloat16 (model and mel cast) against NVIDIA's fp32 with the SNR of its audio in dB.

``hifigan_end_to_end`` (runs without the reference tree too): the full-size Tacotron2
(exactly 200 decoder steps, random weights) followed by HiFi-GAN V1 or by the 512-channel
WaveGlow: seconds, real-time factors, and how many times faster the HiFi-GAN voice is.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

from . import sections

ROOT = Path(__file__).resolve().parents[1]
_KEYS_JSON = ROOT / "tests" / "data" / "hifigan" / "full_size_dle_v1_keys.json"
_DLE_HIFIGAN = Path("dle") / "PyTorch" / "SpeechSynthesis" / "HiFiGAN"
SAMPLE_RATE = 22050


def _reference_dir() -> Path:
    candidates = [os.environ.get("TTS_REF"), os.environ.get("REF")]
    candidates += [str(ROOT.parent / "ref"), str(ROOT.parents[1] / "ref")]  # beside a checkout
    for root in filter(None, candidates):
        for folder in (Path(root) / _DLE_HIFIGAN, Path(root)):
            if (folder / "hifigan" / "models.py").is_file():
                return folder
    raise sections.Skip("no exported DLE HiFiGAN tree (set TTS_REF or pass --ref)")


def _nvidia_generator_class():
    folder = str(_reference_dir())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from hifigan.models import Generator  # NVIDIA's code

    return Generator


def _random_pair(tmp: Path):
    """NVIDIA's V1 generator with random weights (gains varied) and ttscli's copy of it."""
    import torch

    from ttscli.checkpoints import load_hifigan
    from ttscli.hifigan import HIFIGAN_V1_CONFIG

    generator_class = _nvidia_generator_class()
    torch.manual_seed(1234)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = generator_class(dict(HIFIGAN_V1_CONFIG))
    with torch.no_grad():
        for name, tensor in reference.named_parameters():
            if name.endswith("weight_g"):
                tensor.mul_(torch.rand(tensor.shape) * 0.4 + 0.8)
    state_dict = reference.state_dict()
    if _KEYS_JSON.is_file():
        expected = json.loads(_KEYS_JSON.read_text())
        found = {k: list(v.shape) for k, v in state_dict.items()}
        if found != expected:
            raise RuntimeError("NVIDIA's V1 generator no longer has the torch.hub keys")
    path = tmp / "hifigan_v1.pt"
    torch.save({"generator": state_dict, "config": dict(HIFIGAN_V1_CONFIG)}, path)
    with contextlib.redirect_stdout(io.StringIO()):  # NVIDIA's prints a line
        reference.remove_weight_norm()
    return reference.eval(), load_hifigan(path), path


def _random_hifigan():
    """ttscli's V1 generator with the weights of ``_random_pair`` (or its own without NVIDIA's)."""
    import torch

    from ttscli.hifigan import HIFIGAN_V1_CONFIG, HiFiGAN

    try:
        with tempfile.TemporaryDirectory() as tmp:
            return _random_pair(Path(tmp))[1]
    except sections.Skip:
        torch.manual_seed(1234)
        return HiFiGAN(**HIFIGAN_V1_CONFIG, weight_norm=True).remove_weight_norm().eval()


def _interleaved(fns: dict, repeat: int) -> dict[str, float]:
    """Best wall seconds of each callable, one warm-up, runs interleaved and order alternated."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(repeat):
        order = list(fns.items()) if r % 2 == 0 else list(reversed(fns.items()))
        for name, fn in order:
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    return {name: min(values) for name, values in times.items()}


def _snr_db(reference, other) -> float:
    reference, other = reference.double(), other.double()
    noise = (other - reference).pow(2).sum().item()
    return math.inf if noise == 0 else 10 * math.log10(reference.pow(2).sum().item() / noise)


def bench_hifigan(quick: bool = False) -> dict:
    import torch

    from ttscli.checkpoints import load_hifigan
    from ttscli.synthesizer import cpu_has_fast_bf16

    frames, repeat = (50, 1) if quick else (200, 5)
    with tempfile.TemporaryDirectory() as tmp:
        reference, ours, path = _random_pair(Path(tmp))
        bf16 = load_hifigan(path, dtype=torch.bfloat16) if cpu_has_fast_bf16() else None
    torch.manual_seed(0)
    mel = torch.randn(1, 80, frames) - 5.0  # log-mel range
    fns = {"nvidia_fp32": lambda: reference(mel), "ttscli_fp32": lambda: ours(mel)}
    if bf16 is not None:
        mel_bf16 = mel.to(torch.bfloat16)
        fns["ttscli_bf16"] = lambda: bf16(mel_bf16)
    with torch.inference_mode():
        expected, got = reference(mel), ours(mel)
        seconds = _interleaved(fns, repeat)
        figures = {
            "frames": frames,
            "samples": expected.size(-1),
            "nvidia_fp32_seconds": seconds["nvidia_fp32"],
            "ttscli_fp32_seconds": seconds["ttscli_fp32"],
            "fp32_speedup": seconds["nvidia_fp32"] / seconds["ttscli_fp32"],
            "fp32_max_abs_diff": (expected - got).abs().max().item(),
            "ttscli_fp32_x_real_time": expected.size(-1) / SAMPLE_RATE / seconds["ttscli_fp32"],
        }
        if bf16 is None:
            figures["bf16"] = "skipped: this CPU has no native bfloat16 (AVX512-BF16/AMX)"
            return figures
        figures["ttscli_bf16_seconds"] = seconds["ttscli_bf16"]
        figures["bf16_speedup_vs_nvidia_fp32"] = seconds["nvidia_fp32"] / seconds["ttscli_bf16"]
        figures["bf16_snr_db"] = _snr_db(expected, bf16(mel_bf16).float())
    return figures


def bench_hifigan_end_to_end(quick: bool = False) -> dict:
    import torch

    steps, repeat = (50, 1) if quick else (200, 2)
    tacotron2 = sections._random_tacotron2()
    tacotron2.max_decoder_steps = steps
    tacotron2.gate_threshold = 1.0
    hifigan = _random_hifigan()
    waveglow = sections._random_waveglow(512)
    ids = torch.randint(12, 64, (1, 150))
    lengths = torch.tensor([150])
    with torch.inference_mode():
        mel = tacotron2.infer(ids, lengths)[0]
        if mel.size(-1) != steps:
            raise RuntimeError(f"Tacotron2 ran {mel.size(-1)} steps, not {steps}")
        seconds = _interleaved(
            {
                "tacotron2": lambda: tacotron2.infer(ids, lengths),
                "hifigan": lambda: hifigan(mel),
                "waveglow": lambda: waveglow.infer(mel, sigma=0.6),
            },
            repeat,
        )
    audio_seconds = steps * 256 / SAMPLE_RATE
    with_hifigan = seconds["tacotron2"] + seconds["hifigan"]
    with_waveglow = seconds["tacotron2"] + seconds["waveglow"]
    return {
        "decoder_steps": steps,
        "audio_seconds": audio_seconds,
        "tacotron2_seconds": seconds["tacotron2"],
        "hifigan_seconds": seconds["hifigan"],
        "waveglow_seconds": seconds["waveglow"],
        "tacotron2_hifigan_x_real_time": audio_seconds / with_hifigan,
        "tacotron2_waveglow_x_real_time": audio_seconds / with_waveglow,
        "hifigan_voice_speedup": with_waveglow / with_hifigan,
    }


SECTIONS = {"hifigan": bench_hifigan, "hifigan_end_to_end": bench_hifigan_end_to_end}
