"""Writing ttscli's own checkpoint format (atomically): a kind, its config, weights and metadata."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import torch

from ttscli.atomicfile import atomic_write
from ttscli.errors import CheckpointError

from .formats import TTSCLI_FORMAT_VERSION
from .kinds import get_kind
from .reading import PathLike

if TYPE_CHECKING:
    from ttscli.hifigan import HiFiGAN
    from ttscli.tacotron2 import Tacotron2
    from ttscli.waveglow import WaveGlow


def _check_metadata(value: Any, where: str = "metadata") -> Any:
    if value is None:
        return None
    for plain in (bool, int, float, str):  # subclasses (numpy floats, TorchVersion) become plain
        if isinstance(value, plain):
            return plain(value)
    if isinstance(value, list | tuple):
        return [_check_metadata(v, where) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise CheckpointError(f"{where} keys must be strings, got {k!r}")
            out[k] = _check_metadata(v, f"{where}[{k!r}]")
        return out
    raise CheckpointError(f"{where} holds a {type(value).__name__}; use JSON-like values")


def _portable(sd: dict[str, torch.Tensor], dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = OrderedDict()
    for key, value in sd.items():
        t = value.detach().to("cpu")
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        if t.untyped_storage().nbytes() != t.numel() * t.element_size() or not t.is_contiguous():
            t = t.contiguous().clone()  # store only this tensor's bytes
        out[key] = t
    return out


def _save_dtype(dtype: torch.dtype | None, half: bool) -> torch.dtype | None:
    if half:
        if dtype not in (None, torch.float16):
            raise CheckpointError("half=True contradicts dtype")
        return torch.float16
    if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
        raise CheckpointError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    return dtype


def _payload(kind: str, config: dict[str, Any], sd: dict[str, torch.Tensor], metadata: Any):
    import ttscli

    meta = {"ttscli_version": ttscli.__version__, "torch_version": str(torch.__version__)}
    meta.update(_check_metadata(dict(metadata or {})))
    return {
        "format": "ttscli",
        "format_version": TTSCLI_FORMAT_VERSION,
        "kind": kind,
        "config": _check_metadata(config, "config"),
        "state_dict": sd,
        "metadata": meta,
    }


def save_model(
    kind: str,
    model: torch.nn.Module,
    path: PathLike,
    metadata: dict[str, Any] | None = None,
    *,
    dtype: torch.dtype | None = None,
    half: bool = False,
) -> None:
    """Write a model of the registered ``kind`` in ttscli's format (atomically)."""
    model_kind = get_kind(kind)
    if not isinstance(model, model_kind.model_class()):
        cls = model_kind.model_class()
        raise CheckpointError(f"save_{kind} needs a {cls.__name__}, got {type(model).__name__}")
    sd = _portable(model_kind.saved_weights(model), _save_dtype(dtype, half))
    payload = _payload(kind, model.config, sd, metadata)
    payload.update(model_kind.save_extras)
    with atomic_write(path, error=CheckpointError) as f:
        torch.save(payload, f)


def save_tacotron2(
    model: Tacotron2,
    path: PathLike,
    metadata: dict[str, Any] | None = None,
    *,
    dtype: torch.dtype | None = None,
    half: bool = False,
) -> None:
    """Write ``model`` in ttscli's format (atomically); ``half``/``dtype`` cast the weights."""
    save_model("tacotron2", model, path, metadata, dtype=dtype, half=half)


def save_waveglow(
    model: WaveGlow,
    path: PathLike,
    metadata: dict[str, Any] | None = None,
    *,
    dtype: torch.dtype | None = None,
    half: bool = False,
) -> None:
    """Write ``model`` in ttscli's format (atomically), with weight norm folded into ``weight``.

    The model itself is not changed. ``half``/``dtype`` cast the weights after folding.
    """
    save_model("waveglow", model, path, metadata, dtype=dtype, half=half)


def save_hifigan(
    model: HiFiGAN,
    path: PathLike,
    metadata: dict[str, Any] | None = None,
    *,
    dtype: torch.dtype | None = None,
    half: bool = False,
) -> None:
    """Write ``model`` in ttscli's format (atomically), weight norm folded; the model is unchanged.

    ``metadata`` may say the generator's ``origin`` ("nvidia" or "jik876"), which sets the
    default denoiser strength of a voice built on the file.
    """
    save_model("hifigan", model, path, metadata, dtype=dtype, half=half)
