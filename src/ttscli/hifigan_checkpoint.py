"""Reading HiFi-GAN generators in NVIDIA's and jik876's layouts, and ttscli's own HiFi-GAN files.

Forms read (``inspect_checkpoint(path)["format"]``):

- ``hifigan-dle``: NVIDIA DeepLearningExamples / torch.hub, ``{"generator", "config", ...}``
  (config inside; storages possibly tagged ``cuda:0``).
- ``hifigan-jik876``: jik876/hifi-gan, a release folder holding one ``generator_*`` file and
  ``config.json``, or that generator file (``{"generator": state_dict}``, often torch's legacy
  pre-1.6 format) with ``config.json`` beside it. A bare generator state dict is read the same.
- ``ttscli``: written by ``save_hifigan`` (weight norm folded, config and metadata inside).

Keys may be nested (``resblocks.<stage>.<kernel>.``, NVIDIA) or flat
(``resblocks.<stage * kernels + kernel>.``, jik876 and older NVIDIA files), may carry
``module.``, and conv weights may differ from the model's by a trailing singleton dimension.
Files are read by ``ttscli.checkpoints`` (``torch.load(weights_only=True)``, else its restricted
unpickler); every problem is a ``CheckpointError`` naming the file.
"""

from __future__ import annotations

import json
import os
import re
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ttscli.errors import CheckpointError

if TYPE_CHECKING:
    from ttscli.checkpoints import _Checkpoint
    from ttscli.hifigan import HiFiGAN

__all__ = [
    "GENERATOR_FILE_PATTERN",
    "describe_hifigan",
    "find_generator_file",
    "hifigan_config",
    "hifigan_state_dict_to_nested",
    "hop_length_of",
    "interpret_hifigan",
    "is_hifigan_object",
    "load_hifigan",
    "open_hifigan_folder",
    "save_hifigan",
]

_PathLike = str | os.PathLike[str]
# jik876's release files (generator_v1, ...) and training checkpoints (g_02500000).
GENERATOR_FILE_PATTERN = re.compile(r"^(generator_.+|g_\d+)$")
_CONFIG_FILE = "config.json"
_ORIGINS = {"hifigan-dle": "nvidia", "hifigan-jik876": "jik876"}


def _is_generator_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
        and any(k.split(".")[-2:-1] == ["conv_pre"] for k in obj)
        and any(".ups." in f".{k}" for k in obj)
    )


def is_hifigan_object(obj: Any) -> bool:
    """Whether a loaded file is a HiFi-GAN generator in NVIDIA's or jik876's form."""
    if isinstance(obj, dict) and obj.get("format") == "ttscli":
        return False  # ttscli's own files are read with the other kinds
    if isinstance(obj, dict) and "generator" in obj:
        return _is_generator_state_dict(obj["generator"])
    return _is_generator_state_dict(obj)


def hifigan_config(config: Any, where: str) -> dict[str, Any]:
    """The generator's constructor arguments from a NVIDIA or jik876 config (other keys dropped)."""
    from ttscli.hifigan import CONFIG_KEYS

    if not isinstance(config, dict):
        raise CheckpointError(f"{where}: the HiFi-GAN config is not a dict")
    missing = [k for k in CONFIG_KEYS if k not in config]
    if missing:
        raise CheckpointError(f"{where}: the HiFi-GAN config lacks {', '.join(missing)}")
    out = {k: config[k] for k in CONFIG_KEYS}
    if "n_mel_channels" in config:
        out["n_mel_channels"] = config["n_mel_channels"]
    return out


def hop_length_of(config: dict[str, Any]) -> int:
    """Audio samples per mel frame of a HiFi-GAN config: the product of its upsample rates."""
    hop = 1
    for rate in config["upsample_rates"]:
        hop *= int(rate)
    return hop


def hifigan_state_dict_to_nested(
    state_dict: dict[str, torch.Tensor], n_kernels: int
) -> dict[str, torch.Tensor]:
    """Strip ``module.`` and map flat ``resblocks.<n>.`` keys to ``resblocks.<stage>.<kernel>.``."""
    from ttscli.checkpoints import _strip_module_prefix

    out: dict[str, torch.Tensor] = OrderedDict()
    for key, value in _strip_module_prefix(state_dict).items():
        parts = key.split(".")
        if parts[0] == "resblocks" and len(parts) > 2 and not parts[2].isdigit():
            n = int(parts[1])
            parts = ["resblocks", str(n // n_kernels), str(n % n_kernels), *parts[2:]]
        out[".".join(parts)] = value
    return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} does not hold a JSON object")
    return config


def _config_beside(path: Path) -> dict[str, Any]:
    config_path = path.parent / _CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointError(
            f"{path} is a jik876 HiFi-GAN generator without its config: expected "
            f"{config_path} (the config.json of its release folder)"
        )
    return _read_json(config_path)


def interpret_hifigan(obj: Any, safe: bool, path: Path) -> _Checkpoint:
    """A loaded NVIDIA or jik876 generator file as a HiFi-GAN checkpoint with nested keys."""
    from ttscli.checkpoints import _Checkpoint

    has_config = isinstance(obj, dict) and isinstance(obj.get("config"), dict)
    fmt = "hifigan-dle" if has_config else "hifigan-jik876"
    raw = obj["config"] if has_config else _config_beside(path)
    config = hifigan_config(raw, str(path))
    sd = obj.get("generator", obj) if isinstance(obj, dict) else obj
    sd = hifigan_state_dict_to_nested(sd, len(config["resblock_kernel_sizes"]))
    if "n_mel_channels" not in config:
        pre = sd.get("conv_pre.weight_v", sd.get("conv_pre.weight"))
        if pre is None or pre.dim() < 2:
            raise CheckpointError(f"{path}: HiFi-GAN weights without conv_pre")
        config["n_mel_channels"] = int(pre.shape[1])
    metadata = {"origin": _ORIGINS[fmt]}
    return _Checkpoint(fmt, "hifigan", config, sd, safe, metadata=metadata)


def find_generator_file(folder: Path) -> Path:
    """The one generator file of a jik876 release folder (error if none or several)."""
    found = sorted(
        p for p in folder.iterdir() if GENERATOR_FILE_PATTERN.match(p.name) and p.is_file()
    )
    if not found:
        raise CheckpointError(
            f"{folder} is a directory without a HiFi-GAN generator file (expected a checkpoint "
            f"file, or a jik876 release folder: one generator_* file and {_CONFIG_FILE})"
        )
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise CheckpointError(
            f"{folder} holds several HiFi-GAN generator files ({names}); name one"
        )
    if not (folder / _CONFIG_FILE).is_file():
        raise CheckpointError(f"{folder} holds {found[0].name} but no {_CONFIG_FILE}")
    return found[0]


def open_hifigan_folder(path: _PathLike) -> tuple[_Checkpoint, Path]:
    """Read a jik876 release folder (``generator_*`` + ``config.json``)."""
    from ttscli.checkpoints import _open

    return _open(find_generator_file(Path(path)))


def _fit_shapes(model: torch.nn.Module, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Squeeze or add a trailing singleton dimension where only that differs (NVIDIA's rule)."""
    expected = model.state_dict()
    out: dict[str, torch.Tensor] = OrderedDict()
    for key, value in sd.items():
        want = expected.get(key)
        if want is not None and value.shape != want.shape:
            if value.dim() == want.dim() + 1 and value.shape[-1] == 1:
                value = value.squeeze(-1)
            elif value.dim() + 1 == want.dim() and want.shape[-1] == 1:
                value = value.unsqueeze(-1)
        out[key] = value
    return out


def _fold(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Fold weight norm, first dropping trailing singleton dims of a 4-d v/g pair (conv2d form)."""
    from ttscli.checkpoints import fold_weight_norm

    fixed = OrderedDict(
        (k, v.squeeze(-1) if k.endswith((".weight_v", ".weight_g")) and v.dim() == 4 else v)
        for k, v in sd.items()
    )
    return fold_weight_norm(fixed)


def load_hifigan(
    path: _PathLike, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> HiFiGAN:
    """Load a HiFi-GAN generator of any supported form, weight norm folded, in eval mode.

    ``path`` is a file or a jik876 release folder. Weights are folded in float32 and then cast
    to ``dtype``; the model's ``hop_length`` is the product of its upsample rates.
    """
    from ttscli.checkpoints import _build, _expect_kind, _load_strict, _open, _place
    from ttscli.hifigan import HiFiGAN

    ckpt, p = _open(path)
    _expect_kind(ckpt, "hifigan", p)
    model = _build(HiFiGAN, ckpt.config, "hifigan", p)
    _load_strict(model, _fit_shapes(model, _fold(ckpt.state_dict)), p)
    return _place(model, device, dtype)


def describe_hifigan(ckpt: _Checkpoint) -> dict[str, Any]:
    """What ``inspect_checkpoint`` adds for a HiFi-GAN: hop, weight norm, origin."""
    return {
        "hop_length": hop_length_of(ckpt.config),
        "weight_norm": any(k.endswith(".weight_g") for k in ckpt.state_dict),
        "origin": ckpt.metadata.get("origin"),
    }


def save_hifigan(
    model: HiFiGAN,
    path: _PathLike,
    metadata: dict[str, Any] | None = None,
    *,
    dtype: torch.dtype | None = None,
    half: bool = False,
) -> None:
    """Write ``model`` in ttscli's format (atomically), weight norm folded; the model is unchanged.

    ``metadata`` may say the generator's ``origin`` ("nvidia" or "jik876"), which a loader of
    the file can use for defaults such as the denoiser strength.
    """
    from ttscli.checkpoints import _atomic_save, _payload, _portable, _save_dtype, fold_weight_norm
    from ttscli.hifigan import HiFiGAN

    if not isinstance(model, HiFiGAN):
        raise CheckpointError(f"save_hifigan needs a HiFiGAN, got {type(model).__name__}")
    folded = fold_weight_norm(model.state_dict())
    sd = _portable(folded, _save_dtype(dtype, half))
    payload = _payload("hifigan", model.config, sd, metadata)
    payload["weight_norm_removed"] = True
    _atomic_save(payload, path)
