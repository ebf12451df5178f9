"""Loading Tacotron2 and WaveGlow checkpoints in every NVIDIA format, and saving ttscli's own.

Formats read (``inspect_checkpoint(path)["format"]``):

- ``dle``: NVIDIA DeepLearningExamples / torch.hub, ``{"state_dict", "config", ...}`` with keys
  usually prefixed by ``module.`` (current and 2019 layouts).
- ``tacotron2-original``: NVIDIA/tacotron2 training checkpoints, ``{"state_dict", "optimizer",
  "learning_rate", "iteration"}`` without a config; the sizes come from the tensor shapes.
- ``waveglow-original-pickle``: NVIDIA/waveglow checkpoints, a whole pickled ``glow.WaveGlow``
  module. Read by ``ttscli.legacy_pickle`` without NVIDIA's code and without running anything
  from the file; its state dict (layout A, B or C) is mapped onto DLE's keys. A pickled
  ``glow_old.WaveGlow`` (NVIDIA's first published model) couples the other half of the channels
  on odd flows: its config gets ``alternate_halves``.
- ``state-dict``: a bare dict of tensors (or ``{"state_dict"}`` of a WaveGlow) whose kind is
  clear from its keys; the config is inferred from the shapes.
- ``ttscli``: written by ``save_tacotron2`` / ``save_waveglow`` / ``save_hifigan``.
- ``hifigan-dle``, ``hifigan-jik876``: HiFi-GAN generators (files, or a jik876 release folder),
  see ``ttscli.hifigan_checkpoint``.

Every file except the WaveGlow pickle is read with ``torch.load(weights_only=True)``. Every
problem with a file is reported as ``CheckpointError``.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ttscli import hifigan_checkpoint
from ttscli.errors import CheckpointError
from ttscli.legacy_pickle import (
    PickledObject,
    is_pickled_module,
    module_attributes,
    module_state_dict,
    read_pickled_checkpoint,
)

if TYPE_CHECKING:
    from ttscli.hifigan import HiFiGAN
    from ttscli.tacotron2 import Tacotron2
    from ttscli.waveglow import WaveGlow

__all__ = [
    "TTSCLI_FORMAT_VERSION",
    "fold_weight_norm",
    "inspect_checkpoint",
    "load_hifigan",
    "load_tacotron2",
    "load_waveglow",
    "save_hifigan",
    "save_tacotron2",
    "save_waveglow",
    "waveglow_config_from_state_dict",
    "waveglow_state_dict_to_dle",
]

TTSCLI_FORMAT_VERSION = 1
_KIND_NAMES = {"tacotron2": "Tacotron2", "waveglow": "WaveGlow", "hifigan": "HiFi-GAN"}
_BUFFER_SUFFIXES = (".running_mean", ".running_var", ".num_batches_tracked")
_PathLike = str | os.PathLike[str]


@dataclass
class _Checkpoint:
    """What a file holds, in DLE terms: kind, config and state dict with DLE keys."""

    format: str
    kind: str
    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    safe: bool
    weight_norm_dims: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    layout: str | None = None


# -- reading files --------------------------------------------------------------------------------
def _check_path(path: _PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint {p} does not exist")
    if p.is_dir():
        raise CheckpointError(f"{p} is a directory; expected a checkpoint file")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise CheckpointError(f"cannot read {p}: {exc.strerror or exc}") from exc
    if size == 0:
        raise CheckpointError(f"{p} is empty; expected a checkpoint file")
    return p


def _read(path: _PathLike) -> tuple[Any, bool, Path]:
    """The saved object and whether it came through torch.load(weights_only=True)."""
    p = _check_path(path)
    try:
        with warnings.catch_warnings():  # e.g. "pickle protocol 4": failures are reported below
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(p, map_location="cpu", weights_only=True), True, p
    except Exception as exc:  # refused or unreadable: the restricted reader says which
        torch_error = exc
    try:
        obj = read_pickled_checkpoint(p)
    except CheckpointError as exc:
        message = str(exc)
        if "truncated or corrupt" in message and not _looks_like_torch_file(p):
            message = f"{p} is not a PyTorch checkpoint (neither a zip archive nor a pickle)"
        elif str(p) not in message:
            message = f"cannot load {p}: {message}"
        raise CheckpointError(message) from torch_error
    return obj, False, p


def _looks_like_torch_file(path: Path) -> bool:
    """torch.save writes a zip archive, or before torch 1.6 a pickle (protocol 2: byte 0x80)."""
    with open(path, "rb") as f:
        head = f.read(2)
    return head == b"PK" or head[:1] == b"\x80"


def _strip_module_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """DLE's rule: if any key contains ``module.``, drop ``module.1.`` then ``module.``."""
    if not any("module." in k for k in state_dict):
        return state_dict
    out: dict[str, torch.Tensor] = OrderedDict()
    for key, value in state_dict.items():
        out[key.replace("module.1.", "").replace("module.", "")] = value
    return out


def _as_state_dict(obj: Any, what: str) -> dict[str, torch.Tensor]:
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{what} is not a non-empty dict of tensors")
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{what} holds {key!r}: {type(value).__name__}, not a tensor")
    return _strip_module_prefix(obj)


def _kind_of_state_dict(sd: dict[str, torch.Tensor]) -> str | None:
    tacotron2 = "embedding.weight" in sd and any(k.startswith("decoder.") for k in sd)
    waveglow = "upsample.weight" in sd and any(k.startswith("WN.") for k in sd)
    if tacotron2 == waveglow:
        return None
    return "tacotron2" if tacotron2 else "waveglow"


def _describe(obj: Any) -> str:
    if isinstance(obj, dict):
        keys = ", ".join(repr(k) for k in list(obj)[:8])
        return f"a dict with keys {keys}{', ...' if len(obj) > 8 else ''}"
    if isinstance(obj, PickledObject):
        return f"a pickled {obj.qualname}"
    return f"a {type(obj).__name__}"


_EXPECTED_FORMATS = (
    "expected a DLE/torch.hub checkpoint ({'state_dict', 'config'}), an NVIDIA/tacotron2 "
    "training checkpoint, an NVIDIA/waveglow model pickle, a state dict or a ttscli file"
)


def _interpret(obj: Any, safe: bool, path: Path) -> _Checkpoint:
    if isinstance(obj, dict) and obj.get("format") == "ttscli":
        return _interpret_ttscli(obj, safe, path)
    if hifigan_checkpoint.is_hifigan_object(obj):
        return hifigan_checkpoint.interpret_hifigan(obj, safe, path)
    root = obj.get("model") if isinstance(obj, dict) else obj
    if is_pickled_module(root):
        return _interpret_waveglow_pickle(root, safe, path)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        sd = _as_state_dict(obj["state_dict"], f"{path}: 'state_dict'")
        kind = _kind_of_state_dict(sd)
        config = obj.get("config")
        if kind is None:
            raise CheckpointError(
                f"{path}: its state_dict is neither a Tacotron2 nor a WaveGlow one "
                f"(keys {', '.join(list(sd)[:4])}, ...)"
            )
        if isinstance(config, dict):
            config_kind = "waveglow" if "WN_config" in config else "tacotron2"
            if config_kind != kind:
                raise CheckpointError(
                    f"{path}: its config describes a {_KIND_NAMES[config_kind]} but its "
                    f"state_dict holds {_KIND_NAMES[kind]} weights"
                )
            return _finish_interpretation("dle", kind, dict(config), sd, safe, path)
        fmt = "tacotron2-original" if kind == "tacotron2" else "state-dict"
        return _finish_interpretation(fmt, kind, None, sd, safe, path)
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        sd = _as_state_dict(obj, str(path))
        kind = _kind_of_state_dict(sd)
        if kind is None:
            raise CheckpointError(
                f"{path} is a state dict, but not clearly a Tacotron2 or WaveGlow one "
                f"(keys {', '.join(list(sd)[:4])}, ...)"
            )
        return _finish_interpretation("state-dict", kind, None, sd, safe, path)
    raise CheckpointError(f"{path} holds {_describe(obj)}; {_EXPECTED_FORMATS}")


def _finish_interpretation(
    fmt: str,
    kind: str,
    config: dict[str, Any] | None,
    sd: dict[str, torch.Tensor],
    safe: bool,
    path: Path,
    dims: dict[str, int] | None = None,
    attrs: dict[str, Any] | None = None,
) -> _Checkpoint:
    layout = None
    if kind == "waveglow":
        sd, dims, layout = waveglow_state_dict_to_dle(sd, dims)
        if config is None:
            config = waveglow_config_from_state_dict(sd, attrs)
    elif config is None:
        from ttscli.tacotron2 import config_from_state_dict

        config = config_from_state_dict(sd)
    return _Checkpoint(fmt, kind, config, sd, safe, dims or {}, layout=layout)


def _interpret_ttscli(obj: dict[str, Any], safe: bool, path: Path) -> _Checkpoint:
    version = obj.get("format_version")
    if version != TTSCLI_FORMAT_VERSION:
        raise CheckpointError(
            f"{path} is a ttscli checkpoint of format version {version!r}; this ttscli reads "
            f"version {TTSCLI_FORMAT_VERSION}"
        )
    kind = obj.get("kind")
    if kind not in _KIND_NAMES:
        raise CheckpointError(f"{path}: unknown ttscli checkpoint kind {kind!r}")
    config = obj.get("config")
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: ttscli checkpoint without a config")
    sd = _as_state_dict(obj.get("state_dict"), f"{path}: 'state_dict'")
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    found = _kind_of_state_dict(sd)
    if found is not None and found != kind:
        raise CheckpointError(f"{path}: marked {kind} but holds {_KIND_NAMES[found]} weights")
    return _Checkpoint("ttscli", kind, dict(config), sd, safe, metadata=dict(metadata))


def _interpret_waveglow_pickle(root: PickledObject, safe: bool, path: Path) -> _Checkpoint:
    if not root.qualname.endswith(".WaveGlow"):
        raise CheckpointError(f"{path} holds a pickled {root.qualname}, not a WaveGlow model")
    sd, dims = module_state_dict(root)
    attrs = module_attributes(root)
    ckpt = _finish_interpretation(
        "waveglow-original-pickle", "waveglow", None, sd, safe, path, dims, attrs
    )
    if root.qualname.startswith("glow_old."):
        _check_glow_old_schedule(ckpt.config, path)
        ckpt.config["alternate_halves"] = True
    return ckpt


def _check_glow_old_schedule(config: dict[str, Any], path: Path) -> None:
    """glow_old.WaveGlow.infer adds early noise every 4 flows, whatever n_early_every says."""
    every, n_flows = config["n_early_every"], config["n_flows"]
    if any((k % 4 == 0) != (k % every == 0) for k in range(1, n_flows)):
        raise CheckpointError(
            f"{path}: a glow_old.WaveGlow with n_early_every {every} and {n_flows} flows; "
            "NVIDIA's glow_old code outputs early channels every 4 flows and cannot run it"
        )


def _open(path: _PathLike) -> tuple[_Checkpoint, Path]:
    if Path(path).is_dir():  # a jik876 HiFi-GAN release folder
        return hifigan_checkpoint.open_hifigan_folder(path)
    obj, safe, p = _read(path)
    try:
        return _interpret(obj, safe, p), p
    except CheckpointError as exc:  # every message names the file
        if str(p) in str(exc):
            raise
        raise CheckpointError(f"{p}: {exc}") from exc


# -- WaveGlow state-dict mappings --------------------------------------------------------------
def _count(sd: dict[str, Any], template: str) -> int:
    n = 0
    while any(k.startswith(template.format(n)) for k in sd):
        n += 1
    return n


def _fold_one(v: torch.Tensor, g: torch.Tensor, dim: int) -> torch.Tensor:
    dtype = v.dtype
    if dtype in (torch.float16, torch.bfloat16):  # as a float32 model would compute it
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
                out[prefix + ".weight"] = _fold_one(v, value, dim)
            except RuntimeError as exc:
                raise CheckpointError(f"cannot apply weight norm to {prefix}: {exc}") from exc
            continue
        out[key] = value
    return out


def _effective_weight(
    sd: dict[str, torch.Tensor], prefix: str, dims: dict[str, int]
) -> torch.Tensor:
    if prefix + ".weight" in sd:
        return sd[prefix + ".weight"]
    try:
        v, g = sd[prefix + ".weight_v"], sd[prefix + ".weight_g"]
        return _fold_one(v, g, dims.get(prefix + ".weight", 0))
    except KeyError:
        raise CheckpointError(f"missing weights of {prefix}") from None


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


# -- building models ----------------------------------------------------------------------------
def _expect_kind(ckpt: _Checkpoint, kind: str, path: Path) -> None:
    if ckpt.kind != kind:
        raise CheckpointError(
            f"{path} is a {_KIND_NAMES[ckpt.kind]} checkpoint (format {ckpt.format}); "
            f"expected a {_KIND_NAMES[kind]} checkpoint"
        )


def _load_strict(model: torch.nn.Module, sd: dict[str, torch.Tensor], path: Path) -> None:
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
        raise CheckpointError(
            f"{path}: cannot build {_KIND_NAMES[kind]} from its config: {exc}"
        ) from exc


def load_tacotron2(
    path: _PathLike, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> Tacotron2:
    """Load a Tacotron2 checkpoint of any supported format, in eval mode on ``device``/``dtype``."""
    ckpt, p = _open(path)
    _expect_kind(ckpt, "tacotron2", p)
    from ttscli.tacotron2 import Tacotron2

    model = _build(Tacotron2, ckpt.config, "tacotron2", p)
    _load_strict(model, ckpt.state_dict, p)
    return _place(model, device, dtype)


def load_waveglow(
    path: _PathLike, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> WaveGlow:
    """Load a WaveGlow checkpoint of any supported format, weight norm removed, in eval mode.

    The weights are loaded in float32 (weight norm folded in float32) and then cast to
    ``dtype``; the model computes its 1x1-convolution inverses itself.
    """
    ckpt, p = _open(path)
    _expect_kind(ckpt, "waveglow", p)
    from ttscli.waveglow import WaveGlow

    config = dict(ckpt.config)
    if isinstance(config.get("WN_config"), dict):
        config["WN_config"] = dict(config["WN_config"])
    model = _build(WaveGlow, config, "waveglow", p)
    model = model.remove_weightnorm()
    _load_strict(model, fold_weight_norm(ckpt.state_dict, ckpt.weight_norm_dims), p)
    return _place(model, device, dtype)


# -- inspecting -------------------------------------------------------------------------------------
def inspect_checkpoint(path: _PathLike) -> dict[str, Any]:
    """Describe a checkpoint without building its model (for ``ttscli info``).

    Keys: path, bytes, format, kind, safe (whether torch.load(weights_only=True) reads it),
    needs_conversion (whether ``ttscli convert`` is advised), config, parameters (count,
    without BatchNorm statistics), tensors, dtypes, weight_norm (WaveGlow: whether the file
    stores weight_g/weight_v), layout (WaveGlow: NVIDIA/waveglow layout A, B or C) and
    metadata (ttscli files).
    """
    ckpt, p = _open(path)
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
    if ckpt.kind == "waveglow":
        info["weight_norm"] = any(k.endswith(".weight_g") for k in sd)
        if ckpt.layout is not None:
            info["layout"] = ckpt.layout
    if ckpt.kind == "hifigan":
        info.update(hifigan_checkpoint.describe_hifigan(ckpt))
    if ckpt.format == "ttscli":
        info["metadata"] = ckpt.metadata
    return info


# -- saving --------------------------------------------------------------------------------------------
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


def _umask() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _atomic_save(obj: dict[str, Any], path: _PathLike) -> None:
    p = Path(path)
    if p.is_dir():
        raise CheckpointError(f"{p} is a directory; expected a file name to write")
    parent = p.parent if str(p.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise CheckpointError(f"cannot write {p}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, p)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise CheckpointError(f"cannot write {p}: {exc.strerror or exc}") from exc
        raise


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


def save_tacotron2(
    model: Tacotron2,
    path: _PathLike,
    metadata: dict[str, Any] | None = None,
    *,
    dtype: torch.dtype | None = None,
    half: bool = False,
) -> None:
    """Write ``model`` in ttscli's format (atomically); ``half``/``dtype`` cast the weights."""
    from ttscli.tacotron2 import Tacotron2

    if not isinstance(model, Tacotron2):
        raise CheckpointError(f"save_tacotron2 needs a Tacotron2, got {type(model).__name__}")
    sd = _portable(model.state_dict(), _save_dtype(dtype, half))
    _atomic_save(_payload("tacotron2", model.config, sd, metadata), path)


def save_waveglow(
    model: WaveGlow,
    path: _PathLike,
    metadata: dict[str, Any] | None = None,
    *,
    dtype: torch.dtype | None = None,
    half: bool = False,
) -> None:
    """Write ``model`` in ttscli's format (atomically), with weight norm folded into ``weight``.

    The model itself is not changed. ``half``/``dtype`` cast the weights after folding.
    """
    from ttscli.waveglow import WaveGlow

    if not isinstance(model, WaveGlow):
        raise CheckpointError(f"save_waveglow needs a WaveGlow, got {type(model).__name__}")
    folded = fold_weight_norm(model.state_dict())
    sd = _portable(folded, _save_dtype(dtype, half))
    payload = _payload("waveglow", model.config, sd, metadata)
    payload["weight_norm_removed"] = True
    _atomic_save(payload, path)


def load_hifigan(
    path: _PathLike, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> HiFiGAN:
    """Load a HiFi-GAN generator (file or jik876 folder), weight norm folded, in eval mode."""
    return hifigan_checkpoint.load_hifigan(path, device, dtype)


def save_hifigan(
    model: HiFiGAN,
    path: _PathLike,
    metadata: dict[str, Any] | None = None,
    *,
    dtype: torch.dtype | None = None,
    half: bool = False,
) -> None:
    """Write a HiFi-GAN in ttscli's format (see ``hifigan_checkpoint.save_hifigan``)."""
    hifigan_checkpoint.save_hifigan(model, path, metadata, dtype=dtype, half=half)
