"""NVIDIA's WaveGlow layouts: A, B and C onto DLE's keys, config from shapes, glow_old's schedule."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from ttscli.errors import CheckpointError

from .kinds import ModelKind, StateDict, register
from .weight_norm import effective_weight as _effective_weight
from .weight_norm import fold_weight_norm, folded_state_dict


def _count(sd: dict[str, Any], template: str) -> int:
    n = 0
    while any(k.startswith(template.format(n)) for k in sd):
        n += 1
    return n


def waveglow_state_dict_to_dle(
    state_dict: dict[str, torch.Tensor], dims: dict[str, int] | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, int], str]:
    """Map an NVIDIA/waveglow state dict onto DLE's keys; returns (state dict, dims, layout).

    Layout ``C`` (current glow.py): each ``WN.k.cond_layer`` (2*C*L outputs) is split along
    dim 0 into L chunks, chunk i becoming ``WN.k.cond_layers.i`` (exact: weight norm is per
    output row). Layout ``A`` (oldest): ``res_layers.i`` and ``skip_layers.i`` become
    ``res_skip_layers.i`` = [res; skip] (only skip for the last layer), built from their
    effective weights, so those entries hold a plain ``weight``. Layout ``B`` is DLE's own and
    is returned unchanged. ``dims`` (weight-norm dims by ``X.weight``) follows the keys.
    """
    dims = dict(dims or {})
    has_c = any(".cond_layer." in k for k in state_dict)
    has_a = any(".res_layers." in k or ".skip_layers." in k for k in state_dict)
    if has_c and has_a:
        raise CheckpointError("WaveGlow state dict mixes layouts A and C")
    if not has_c and not has_a:
        return state_dict, dims, "B"
    out: dict[str, torch.Tensor] = OrderedDict()
    done: set[str] = set()
    for key, value in state_dict.items():
        parts = key.split(".")
        if (
            len(parts) < 4
            or parts[0] != "WN"
            or parts[2]
            not in (
                "cond_layer",
                "res_layers",
                "skip_layers",
            )
        ):
            out[key] = value
            continue
        block = f"WN.{parts[1]}"
        if block in done:
            continue
        done.add(block)
        n_layers = _count(state_dict, block + ".in_layers.{}.")
        if n_layers < 1:
            raise CheckpointError(f"{block} has no in_layers")
        if has_c:
            _split_cond_layer(state_dict, block, n_layers, out, dims)
        else:
            _fuse_res_skip(state_dict, block, n_layers, out, dims)
    return out, dims, "C" if has_c else "A"


def _split_cond_layer(
    sd: dict[str, torch.Tensor],
    block: str,
    n_layers: int,
    out: dict[str, torch.Tensor],
    dims: dict[str, int],
) -> None:
    prefix = block + ".cond_layer."
    params = [(k[len(prefix) :], v) for k, v in sd.items() if k.startswith(prefix)]
    dim = dims.pop(block + ".cond_layer.weight", 0)
    if dim != 0:
        raise CheckpointError(f"{block}.cond_layer uses weight norm along dim {dim}, not 0")
    for i in range(n_layers):
        for name, tensor in params:
            if tensor.dim() == 0 or tensor.shape[0] % n_layers:
                raise CheckpointError(
                    f"{prefix}{name} of shape {list(tensor.shape)} does not split into "
                    f"{n_layers} layers"
                )
            rows = tensor.shape[0] // n_layers
            out[f"{block}.cond_layers.{i}.{name}"] = tensor[i * rows : (i + 1) * rows]
        if any(name == "weight_g" for name, _ in params):
            dims[f"{block}.cond_layers.{i}.weight"] = 0


def _fuse_res_skip(
    sd: dict[str, torch.Tensor],
    block: str,
    n_layers: int,
    out: dict[str, torch.Tensor],
    dims: dict[str, int],
) -> None:
    for i in range(n_layers):
        skip = f"{block}.skip_layers.{i}"
        weight, bias = _effective_weight(sd, skip, dims), sd.get(skip + ".bias")
        if i < n_layers - 1:
            res = f"{block}.res_layers.{i}"
            res_bias = sd.get(res + ".bias")
            weight = torch.cat([_effective_weight(sd, res, dims), weight], 0)
            if (bias is None) != (res_bias is None):
                raise CheckpointError(f"{res} and {skip} disagree on having a bias")
            if bias is not None and res_bias is not None:
                bias = torch.cat([res_bias, bias], 0)
        if bias is not None:
            out[f"{block}.res_skip_layers.{i}.bias"] = bias
        out[f"{block}.res_skip_layers.{i}.weight"] = weight
    for key in [k for k in dims if k.startswith((block + ".res_layers.", block + ".skip_layers."))]:
        dims.pop(key)


def _shape(sd: dict[str, torch.Tensor], key: str) -> tuple[int, ...]:
    if key not in sd:
        raise CheckpointError(f"not a WaveGlow state dict: missing {key}")
    return tuple(sd[key].shape)


def waveglow_config_from_state_dict(
    state_dict: dict[str, torch.Tensor], attributes: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Infer DLE's WaveGlow config from a DLE-keyed state dict (and a pickled model's attributes).

    n_mel_channels, n_flows, n_group and WN_config come from the shapes. n_early_every and
    n_early_size come from ``attributes`` when given, else from where the number of channels
    entering a flow drops. Raises ``CheckpointError`` if the shapes do not fit that rule.
    """
    sd = state_dict
    attrs = attributes or {}
    n_mel = _shape(sd, "upsample.weight")[0]
    n_flows = _count(sd, "convinv.{}.")
    if n_flows < 1:
        raise CheckpointError("not a WaveGlow state dict: no convinv layers")
    channels = [_shape(sd, f"convinv.{k}.conv.weight")[0] for k in range(n_flows)]
    n_group = channels[0]
    first = "WN.0.in_layers.0.weight_v"
    if first not in sd:
        first = "WN.0.in_layers.0.weight"
    _, n_wn_channels, kernel_size = _shape(sd, first)
    n_layers = _count(sd, "WN.0.in_layers.{}.")
    drops = [k for k in range(1, n_flows) if channels[k] != channels[k - 1]]
    if "n_early_every" in attrs and "n_early_size" in attrs:
        every, size = int(attrs["n_early_every"]), int(attrs["n_early_size"])
    elif drops:
        every, size = drops[0], channels[drops[0] - 1] - channels[drops[0]]
    else:
        every, size = n_flows, 2
    if every < 1 or size < 0:
        raise CheckpointError(f"invalid WaveGlow early outputs: every {every}, size {size}")
    remaining = n_group
    for k in range(n_flows):
        if k % every == 0 and k > 0:
            remaining -= size
        if channels[k] != remaining:
            raise CheckpointError(
                f"WaveGlow flow {k} takes {channels[k]} channels; with n_group {n_group}, "
                f"n_early_every {every} and n_early_size {size} it would take {remaining}"
            )
    if "n_group" in attrs and int(attrs["n_group"]) != n_group:
        raise CheckpointError(f"pickled n_group {attrs['n_group']} disagrees with the weights")
    return {
        "n_mel_channels": n_mel,
        "n_flows": n_flows,
        "n_group": n_group,
        "n_early_every": every,
        "n_early_size": size,
        "WN_config": {
            "n_layers": n_layers,
            "kernel_size": kernel_size,
            "n_channels": n_wn_channels,
        },
    }


def check_glow_old_schedule(config: dict[str, Any], path: Path) -> None:
    """glow_old.WaveGlow.infer adds early noise every 4 flows, whatever n_early_every says."""
    every, n_flows = config["n_early_every"], config["n_flows"]
    if any((k % 4 == 0) != (k % every == 0) for k in range(1, n_flows)):
        raise CheckpointError(
            f"{path}: a glow_old.WaveGlow with n_early_every {every} and {n_flows} flows; "
            "NVIDIA's glow_old code outputs early channels every 4 flows and cannot run it"
        )


def _check_pickled(config: dict[str, Any], qualname: str, path: Path) -> None:
    """A pickled ``glow_old.WaveGlow`` couples the other half of the channels on odd flows."""
    if qualname.startswith("glow_old."):
        check_glow_old_schedule(config, path)
        config["alternate_halves"] = True


def _recognises(sd: StateDict) -> bool:
    return "upsample.weight" in sd and any(k.startswith("WN.") for k in sd)


def _model_class() -> type:
    from ttscli.waveglow import WaveGlow

    return WaveGlow


def _describe(ckpt: Any) -> dict[str, Any]:
    info: dict[str, Any] = {"weight_norm": any(k.endswith(".weight_g") for k in ckpt.state_dict)}
    if ckpt.layout is not None:
        info["layout"] = ckpt.layout
    return info


WAVEGLOW = register(
    ModelKind(
        name="waveglow",
        title="WaveGlow",
        recognises=_recognises,
        model_class=_model_class,
        config_from_state_dict=waveglow_config_from_state_dict,
        config_marker="WN_config",
        to_dle=waveglow_state_dict_to_dle,
        # weights load in float32 with weight norm folded; the model computes its inverses itself
        prepare_model=lambda model: model.remove_weightnorm(),
        loadable_weights=fold_weight_norm,
        saved_weights=folded_state_dict,
        save_extras=(("weight_norm_removed", True),),
        pickled_class=".WaveGlow",
        check_pickled=_check_pickled,
        describe=_describe,
    )
)
