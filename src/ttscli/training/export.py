"""Export the trained Tacotron2 into the package as the embedded voice `ttscli-en`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from .corpus import TEACHER
from .train import VOICE_CONFIG, state_path

log = logging.getLogger(__name__)

VOICE_JSON = {
    "name": "ttscli-en",
    "language": "en-US",
    "sample_rate": 22050,
    "frontend": "dle",
    "vocoder": "griffin-lim",
    "griffin_lim": {"n_iter": 32, "momentum": 0.99},
    "sigma": None,
    "denoiser_strength": None,
    "max_decoder_steps": 300,
    "gate_threshold": 0.5,
    "prenet_dropout": 0.5,
    "pause_seconds": 0.25,
    "batch_size": 16,
    "precision": "fp16",
    "teacher": TEACHER,
    "licence": "BSD-style (festival/HTS voice data); transcripts public domain (LJSpeech)",
    "source": "trained by ttscli's own Tacotron2 code (python -m ttscli.training)",
}


def export(out: Path | None = None) -> Path:
    """Write tacotron2.pt (fp16 storage) and voice.json from the latest training state."""
    from ttscli.checkpoints import save_tacotron2
    from ttscli.tacotron2 import Tacotron2
    from ttscli.voices import EMBEDDED_DIR, EMBEDDED_VOICE

    out = out or EMBEDDED_DIR / EMBEDDED_VOICE
    out.mkdir(parents=True, exist_ok=True)
    state = torch.load(state_path(), weights_only=False)
    model = Tacotron2(**VOICE_CONFIG)
    model.load_state_dict(state["model"])
    metadata = {"voice": "ttscli-en", "training_steps": int(state["step"]), "teacher": TEACHER}
    save_tacotron2(model.eval(), out / "tacotron2.pt", metadata=metadata, half=True)
    config = {**VOICE_JSON, "training_steps": int(state["step"])}
    (out / "voice.json").write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    log.info("exported step %d to %s", state["step"], out)
    return out
