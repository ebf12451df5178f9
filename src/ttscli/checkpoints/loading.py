"""Building models from checkpoints: strict key and shape checks, then the device and dtype asked."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ttscli.errors import CheckpointError

from .formats import Checkpoint, open_checkpoint
from .kinds import get_kind, title
from .reading import PathLike

if TYPE_CHECKING:
    from ttscli.hifigan import HiFiGAN
    from ttscli.tacotron2 import Tacotron2
    from ttscli.waveglow import WaveGlow


def load_tacotron2(
    path: PathLike, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> Tacotron2:
    """Load a Tacotron2 checkpoint of any supported format, in eval mode on ``device``/``dtype``."""
    return load_model("tacotron2", path, device, dtype)


def load_waveglow(
    path: PathLike, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> WaveGlow:
    """Load a WaveGlow checkpoint of any supported format, weight norm removed, in eval mode.

    The weights are loaded in float32 (weight norm folded in float32) and then cast to
    ``dtype``; the model computes its 1x1-convolution inverses itself.
    """
    return load_model("waveglow", path, device, dtype)


def load_hifigan(
    path: PathLike, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> HiFiGAN:
    """Load a HiFi-GAN generator of any supported form, weight norm folded, in eval mode.

    ``path`` is a file or a jik876 release folder. Weights are folded in float32 and then cast
    to ``dtype``; the model's ``hop_length`` is the product of its upsample rates.
    """
    return load_model("hifigan", path, device, dtype)


def load_model(
    kind: str,
    path: PathLike,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Any:
    """Load a checkpoint of the registered ``kind``, in eval mode on ``device``/``dtype``."""
    ckpt, p = open_checkpoint(path)
    _expect_kind(ckpt, kind, p)
    return model_from_checkpoint(ckpt, p, device, dtype)


def model_from_checkpoint(
    ckpt: Checkpoint,
    path: Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Any:
    """The model an opened checkpoint (``open_checkpoint``) holds, whatever its kind, in eval
    mode on ``device``/``dtype``; ``path`` names the file in errors."""
    model_kind = get_kind(ckpt.kind)
    config = {k: dict(v) if isinstance(v, dict) else v for k, v in ckpt.config.items()}
    model = model_kind.prepare_model(_build(model_kind.model_class(), config, ckpt.kind, path))
    weights = model_kind.loadable_weights(ckpt.state_dict, ckpt.weight_norm_dims)
    _load_strict(model, weights, path)
    return _place(model, device, dtype)


def _expect_kind(ckpt: Checkpoint, kind: str, path: Path) -> None:
    if ckpt.kind != kind:
        raise CheckpointError(
            f"{path} is a {title(ckpt.kind)} checkpoint (format {ckpt.format}); "
            f"expected a {title(kind)} checkpoint"
        )


def _fit_problems(model: torch.nn.Module, sd: dict[str, torch.Tensor]) -> list[str]:
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in sd if k not in expected]
    mismatched = [
        f"{k} {list(sd[k].shape)} (expected {list(v.shape)})"
        for k, v in expected.items()
        if k in sd and sd[k].shape != v.shape
    ]
    problems = []
    if mismatched:
        problems.append("shape mismatch: " + ", ".join(mismatched[:4]))
    if missing:
        problems.append("missing: " + ", ".join(missing[:4]) + (" ..." if len(missing) > 4 else ""))
    if unexpected:
        problems.append(
            "unexpected: " + ", ".join(unexpected[:4]) + (" ..." if len(unexpected) > 4 else "")
        )
    return problems


def _load_strict(model: torch.nn.Module, sd: dict[str, torch.Tensor], path: Path) -> None:
    problems = _fit_problems(model, sd)
    if problems:
        raise CheckpointError(f"{path}: weights do not fit the model: " + "; ".join(problems))
    try:
        model.load_state_dict(sd, strict=True)
    except (RuntimeError, TypeError) as exc:
        raise CheckpointError(f"{path}: weights do not fit the model: {exc}") from exc


def _place(model: torch.nn.Module, device: str | torch.device, dtype: torch.dtype) -> Any:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise CheckpointError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    try:
        target = torch.device(device)
        model = model.to(device=target, dtype=dtype)
    except (RuntimeError, TypeError, ValueError, AssertionError) as exc:
        raise CheckpointError(f"cannot place the model on {device!r} in {dtype}: {exc}") from exc
    return model.eval()


def _build(cls: type, config: dict[str, Any], kind: str, path: Path) -> Any:
    try:
        return cls(**config)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{path}: cannot build {title(kind)} from its config: {exc}") from exc
