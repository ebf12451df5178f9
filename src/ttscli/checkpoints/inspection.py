"""Describing a checkpoint without building its model (for ``ttscli info``)."""

from __future__ import annotations

from typing import Any

from .formats import open_checkpoint
from .kinds import get_kind
from .reading import PathLike

_BUFFER_SUFFIXES = (".running_mean", ".running_var", ".num_batches_tracked")


def inspect_checkpoint(path: PathLike) -> dict[str, Any]:
    """Describe a checkpoint without building its model (for ``ttscli info``).

    Keys: path, bytes, format, kind, safe (whether torch.load(weights_only=True) reads it),
    needs_conversion (whether ``ttscli convert`` is advised), config, parameters (count,
    without BatchNorm statistics), tensors, dtypes, weight_norm (WaveGlow: whether the file
    stores weight_g/weight_v), layout (WaveGlow: NVIDIA/waveglow layout A, B or C) and
    metadata (ttscli files).
    """
    ckpt, p = open_checkpoint(path)
    sd = ckpt.state_dict
    info: dict[str, Any] = {
        "path": str(p),
        "bytes": p.stat().st_size,
        "format": ckpt.format,
        "kind": ckpt.kind,
        "safe": ckpt.safe,
        "needs_conversion": not ckpt.safe,
        "config": ckpt.config,
        "parameters": sum(v.numel() for k, v in sd.items() if not k.endswith(_BUFFER_SUFFIXES)),
        "tensors": len(sd),
        "dtypes": sorted({str(v.dtype).removeprefix("torch.") for v in sd.values()}),
    }
    describe = get_kind(ckpt.kind).describe
    if describe is not None:
        info.update(describe(ckpt))
    if ckpt.format == "ttscli":
        info["metadata"] = ckpt.metadata
    return info
