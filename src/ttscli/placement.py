"""Models moved to a device and dtype only when they are not there already."""

from __future__ import annotations

import torch


def placed(module: torch.nn.Module, device: torch.device | str, dtype: torch.dtype) -> bool:
    """Whether a model (judged by its first parameter) is on `device` in `dtype` ("cuda"
    means the current GPU)."""
    weight = next(module.parameters())
    device = torch.device(device)
    index = device.index
    if device.type == "cuda" and index is None:
        index = torch.cuda.current_device()
    same_device = weight.device.type == device.type and (
        device.type != "cuda" or weight.device.index == index
    )
    return same_device and weight.dtype == dtype


def place(module: torch.nn.Module, device: torch.device | str, dtype: torch.dtype) -> bool:
    """Move and cast a model unless it is in place already; whether it was moved.

    Not when in place: ``.to()`` rewrites every parameter's ``.data`` and an LSTM's weight
    list even when nothing changes, which another thread rendering with the same model may
    be reading.
    """
    if placed(module, device, dtype):
        return False
    module.to(device=device, dtype=dtype)
    return True
