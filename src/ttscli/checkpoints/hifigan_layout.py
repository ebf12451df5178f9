"""HiFi-GAN generators in NVIDIA's and jik876's layouts: keys, configs, release folders.

Formats read (``inspect_checkpoint(path)["format"]``):

- ``hifigan-dle``: NVIDIA DeepLearningExamples / torch.hub, ``{"generator", "config", ...}``
  (config inside; storages possibly tagged ``cuda:0``). Origin ``nvidia``.
- ``hifigan-jik876``: jik876/hifi-gan, a release folder holding one ``generator_*`` (or
  ``g_<step>``) file and ``config.json``, or that generator file (``{"generator": state_dict}``,
  often torch's legacy pre-1.6 format) with ``config.json`` beside it; a bare generator state
  dict is read the same. Origin ``jik876``.
- ``ttscli``: written by ``save_hifigan`` (weight norm folded; ``convert`` keeps the origin).

Keys may be nested (``resblocks.<stage>.<kernel>.``, NVIDIA) or flat
(``resblocks.<stage * kernels + kernel>.``, jik876 and older NVIDIA files), may carry
``module.``, and conv weights may carry a trailing singleton dimension (a conv2d form).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ttscli.errors import CheckpointError
from ttscli.hifigan import CONFIG_KEYS

from .kinds import ModelKind, StateDict, register
from .weight_norm import fold_weight_norm, folded_state_dict

# jik876's release files (generator_v1, ...) and training checkpoints (g_02500000).
GENERATOR_FILE_PATTERN = re.compile(r"^(generator_.+|g_\d+)$")
CONFIG_FILE = "config.json"


def _recognises(sd: StateDict) -> bool:
    return any(k.startswith("conv_pre.") for k in sd) and any(k.startswith("ups.") for k in sd)


def _model_class() -> type:
    from ttscli.hifigan import HiFiGAN

    return HiFiGAN


def hop_length_of(config: dict[str, Any]) -> int:
    """Audio samples per mel frame of a HiFi-GAN config: the product of its upsample rates."""
    hop = 1
    for rate in config["upsample_rates"]:
        hop *= int(rate)
    return hop


def _indices(sd: StateDict, prefix: str) -> set[int]:
    return {int(k.split(".")[1]) for k in sd if k.startswith(prefix) and k.split(".")[1].isdigit()}


def hifigan_state_dict_to_nested(
    state_dict: StateDict, dims: dict[str, int] | None = None
) -> tuple[StateDict, dict[str, int], str]:
    """Flat ``resblocks.<n>.`` keys to nested ``resblocks.<stage>.<kernel>.``; 4-d convs to 3-d.

    Both references build ``kernels`` residual blocks per upsampling stage, so a flat index n
    is block ``n % kernels`` of stage ``n // kernels``, with ``kernels`` = blocks / stages.
    Returns (state dict, dims, layout ``"nested"`` or ``"flat"``).
    """
    flat = any(
        k.startswith("resblocks.") and not k.split(".")[2].isdigit()
        for k in state_dict
        if k.count(".") >= 2
    )
    stages = len(_indices(state_dict, "ups."))
    blocks = len(_indices(state_dict, "resblocks."))
    if flat and (stages == 0 or blocks % stages):
        raise CheckpointError(
            f"HiFi-GAN weights with {blocks} residual blocks for {stages} upsampling stages"
        )
    kernels = blocks // stages if flat else 0
    out: StateDict = OrderedDict()
    for key, value in state_dict.items():
        parts = key.split(".")
        if flat and parts[0] == "resblocks" and len(parts) > 2:
            n = int(parts[1])
            parts = ["resblocks", str(n // kernels), str(n % kernels), *parts[2:]]
        if value.dim() == 4 and value.shape[-1] == 1 and parts[-1].startswith("weight"):
            value = value.squeeze(-1)  # NVIDIA's rule: a conv2d-shaped weight of a conv1d
        out[".".join(parts)] = value
    return out, dict(dims or {}), "flat" if flat else "nested"


def read_hifigan_config(config: dict[str, Any], sd: StateDict) -> dict[str, Any]:
    """The generator's constructor arguments from a NVIDIA or jik876 config (and its weights)."""
    missing = [k for k in CONFIG_KEYS if k not in config]
    if missing:
        raise CheckpointError(f"the HiFi-GAN config lacks {', '.join(missing)}")
    out = {k: config[k] for k in CONFIG_KEYS}
    if "n_mel_channels" in config:
        out["n_mel_channels"] = config["n_mel_channels"]
    else:  # neither reference's config says it: conv_pre's input channels
        pre = sd.get("conv_pre.weight_v", sd.get("conv_pre.weight"))
        if pre is None or pre.dim() < 2:
            raise CheckpointError("HiFi-GAN weights without conv_pre")
        out["n_mel_channels"] = int(pre.shape[1])
    return out


def _config_from_shapes(sd: StateDict, attrs: dict[str, Any] | None) -> dict[str, Any]:
    raise CheckpointError(
        f"HiFi-GAN weights without a config (its dilations are not in the shapes): keep the "
        f"{CONFIG_FILE} of its release folder beside the file"
    )


def find_generator_file(folder: Path) -> Path:
    """The one generator file of a jik876 release folder (error if none or several)."""
    found = sorted(
        p for p in folder.iterdir() if GENERATOR_FILE_PATTERN.match(p.name) and p.is_file()
    )
    if not found:
        raise CheckpointError(
            f"{folder} is a directory without a HiFi-GAN generator file (expected a checkpoint "
            f"file, or a jik876 release folder: one generator_* file and {CONFIG_FILE})"
        )
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise CheckpointError(
            f"{folder} holds several HiFi-GAN generator files ({names}); name one"
        )
    if not (folder / CONFIG_FILE).is_file():
        raise CheckpointError(f"{folder} holds {found[0].name} but no {CONFIG_FILE}")
    return found[0]


def _describe(ckpt: Any) -> dict[str, Any]:
    """``inspect_checkpoint``'s extras for a HiFi-GAN: hop, weight norm, origin."""
    return {
        "hop_length": hop_length_of(ckpt.config),
        "weight_norm": any(k.endswith(".weight_g") for k in ckpt.state_dict),
        "origin": ckpt.metadata.get("origin"),
    }


HIFIGAN = register(
    ModelKind(
        name="hifigan",
        title="HiFi-GAN",
        recognises=_recognises,
        model_class=_model_class,
        config_from_state_dict=_config_from_shapes,
        config_marker="upsample_rates",
        to_dle=hifigan_state_dict_to_nested,
        loadable_weights=fold_weight_norm,
        saved_weights=folded_state_dict,
        save_extras=(("weight_norm_removed", True),),
        describe=_describe,
        weights_key="generator",
        read_config=read_hifigan_config,
        config_file=CONFIG_FILE,
        folder_file=find_generator_file,
        format_names=(("dle", "hifigan-dle"), ("state-dict", "hifigan-jik876")),
        origins=(("hifigan-dle", "nvidia"), ("hifigan-jik876", "jik876")),
    )
)
