"""Weight-norm folding: each ``weight_g``/``weight_v`` pair into the plain ``weight`` it stands for."""

from __future__ import annotations

from collections import OrderedDict

import torch

from ttscli.errors import CheckpointError


def fold_one(v: torch.Tensor, g: torch.Tensor, dim: int) -> torch.Tensor:
    """The effective weight of one pair (half/bfloat16 computed in float32)."""
    if v.dtype in (torch.float16, torch.bfloat16):  # as a float32 model would compute it
        v, g = v.float(), g.float()
    return torch._weight_norm(v, g, dim)


def fold_weight_norm(
    state_dict: dict[str, torch.Tensor], dims: dict[str, int] | None = None
) -> dict[str, torch.Tensor]:
    """Replace each ``X.weight_g``/``X.weight_v`` pair by ``X.weight`` (weight norm removed).

    Uses ``torch._weight_norm`` (the computation ``remove_weight_norm`` does), along dim 0
    unless ``dims`` (``{"X.weight": dim}``) says otherwise. Half/bfloat16 pairs are folded in
    float32. ``X.weight`` takes the place of ``X.weight_g``; other keys are kept in order.
    """
    dims = dims or {}
    out: dict[str, torch.Tensor] = OrderedDict()
    for key, value in state_dict.items():
        if key.endswith(".weight_v"):
            if key[: -len("_v")] + "_g" not in state_dict:
                raise CheckpointError(f"{key} has no matching weight_g")
            continue
        if key.endswith(".weight_g"):
            prefix = key[: -len(".weight_g")]
            v = state_dict.get(prefix + ".weight_v")
            if v is None:
                raise CheckpointError(f"{key} has no matching weight_v")
            dim = dims.get(prefix + ".weight", 0)
            try:
                out[prefix + ".weight"] = fold_one(v, value, dim)
            except RuntimeError as exc:
                raise CheckpointError(f"cannot apply weight norm to {prefix}: {exc}") from exc
            continue
        out[key] = value
    return out


def folded_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A model's state dict with any weight norm folded: how the vocoders are saved."""
    return fold_weight_norm(model.state_dict())


def effective_weight(
    sd: dict[str, torch.Tensor], prefix: str, dims: dict[str, int]
) -> torch.Tensor:
    """``prefix``'s weight: its plain ``weight``, else its weight-norm pair folded."""
    if prefix + ".weight" in sd:
        return sd[prefix + ".weight"]
    try:
        v, g = sd[prefix + ".weight_v"], sd[prefix + ".weight_g"]
        return fold_one(v, g, dims.get(prefix + ".weight", 0))
    except KeyError:
        raise CheckpointError(f"missing weights of {prefix}") from None
