"""Regenerate tests/data/waveglow_glow_old_*.pt by running NVIDIA/waveglow's own glow_old.py.

NVIDIA's first published WaveGlow (``waveglow_old.pt``) pickles ``glow_old.WaveGlow``, whose
``infer`` differs from ``glow.py`` and DLE: on odd flows the first half of the channels is
transformed, conditioned on the second. This script builds a small random ``glow_old`` model,
pickles it as NVIDIA/waveglow's ``train.py`` does (``{"model": ..., "iteration": ...}``,
legacy serialization) and records NVIDIA's ``infer`` output at sigma 0.

    ../shared/tools/export_reference.sh <DLE> <tacotron2> <waveglow mirrors>   # -> $TTS_REF
    python tests/make_glow_old_fixture.py $TTS_REF/wg_orig
"""

from __future__ import annotations

import pathlib
import sys
import warnings

import torch

DATA = pathlib.Path(__file__).parent / "data"
CONFIG = {
    "n_mel_channels": 4,
    "n_flows": 6,
    "n_group": 8,
    "n_early_every": 4,
    "n_early_size": 2,
    "WN_config": {"n_layers": 2, "n_channels": 16, "kernel_size": 3},
}


def main(waveglow_tree: str) -> None:
    sys.path.insert(0, waveglow_tree)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import glow_old
    # glow_old.infer draws its noise with torch.cuda.FloatTensor; at sigma 0 any draw will do
    torch.cuda.FloatTensor = lambda *size: torch.empty(*size)
    torch.manual_seed(20181108)
    model = glow_old.WaveGlow(**CONFIG)
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for wn in model.WN:  # NVIDIA zero-initialises `end`; random weights make every flow matter
            wn.end.weight.normal_(0.0, 0.1, generator=generator)
            wn.end.bias.normal_(0.0, 0.01, generator=generator)
    model.eval()
    torch.save(  # before infer, which caches inverse weights on the modules
        {"model": model, "iteration": 1},
        DATA / "waveglow_glow_old_checkpoint.pt",
        _use_new_zipfile_serialization=False,
    )
    mel = torch.randn(2, CONFIG["n_mel_channels"], 5, generator=generator) - 4.0
    with torch.no_grad():
        audio = model.infer(mel, sigma=0.0)
    torch.save({"mel": mel, "audio_sigma0": audio}, DATA / "waveglow_glow_old_expected.pt")
    print("audio", tuple(audio.shape), "absmax", float(audio.abs().max()))


if __name__ == "__main__":
    main(sys.argv[1])
