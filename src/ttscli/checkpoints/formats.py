"""Recognising what a checkpoint file holds: its format, model kind, config and DLE-keyed weights."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ttscli.errors import CheckpointError

from .kinds import (
    KINDS,
    folder_kinds,
    get_kind,
    kind_of_config,
    kind_of_state_dict,
    pickled_kind,
    title,
    weights_keys,
)
from .reading import PathLike, as_state_dict, describe, read_json, read_object
from .safe_pickle import PickledObject, is_pickled_module, module_attributes, module_state_dict

TTSCLI_FORMAT_VERSION = 1

_EXPECTED_FORMATS = (
    "expected a DLE/torch.hub checkpoint ({'state_dict', 'config'}), an NVIDIA/tacotron2 "
    "training checkpoint, an NVIDIA/waveglow model pickle, a HiFi-GAN generator, a state dict "
    "or a ttscli file"
)


@dataclass
class Checkpoint:
    """What a file holds, in DLE terms: kind, config and state dict with DLE keys."""

    format: str
    kind: str
    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    safe: bool
    weight_norm_dims: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    layout: str | None = None


def open_checkpoint(path: PathLike) -> tuple[Checkpoint, Path]:
    """Read and recognise a checkpoint file; every CheckpointError's message names the file.

    A folder is read as the one checkpoint file a kind finds in it (a jik876 HiFi-GAN release).
    """
    path = _file_of_folder(Path(path))
    obj, safe, p = read_object(path)
    try:
        return interpret(obj, safe, p), p
    except CheckpointError as exc:
        if str(p) in str(exc):
            raise
        raise CheckpointError(f"{p}: {exc}") from exc


def _file_of_folder(path: Path) -> Path:
    """``path`` itself, or for a folder the checkpoint file in it that a kind names."""
    if not path.is_dir():
        return path
    kinds = folder_kinds()
    if not kinds:
        raise CheckpointError(f"{path} is a directory; expected a checkpoint file")
    errors = []
    for kind in kinds:
        try:
            return kind.folder_file(path)  # type: ignore[misc]
        except CheckpointError as exc:
            errors.append(str(exc))
    raise CheckpointError("; ".join(errors))


def interpret(obj: Any, safe: bool, path: Path) -> Checkpoint:
    """The Checkpoint that a loaded object (from ``path``) stands for, or a CheckpointError."""
    if isinstance(obj, dict) and obj.get("format") == "ttscli":
        return _interpret_ttscli(obj, safe, path)
    root = obj.get("model") if isinstance(obj, dict) else obj
    if is_pickled_module(root):
        return _interpret_pickled_module(root, safe, path)
    key = _weights_key(obj)
    if key is not None:
        return _interpret_with_state_dict(obj, key, safe, path)
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        sd = as_state_dict(obj, str(path))
        kind = kind_of_state_dict(sd)
        if kind is None:
            raise CheckpointError(
                f"{path} is a state dict, but not clearly {_kinds_phrase()} one "
                f"(keys {', '.join(list(sd)[:4])}, ...)"
            )
        return _finish("state-dict", kind, None, sd, safe, path)
    raise CheckpointError(f"{path} holds {describe(obj)}; {_EXPECTED_FORMATS}")


def _kinds_phrase(joiner: str = "or") -> str:
    """ "a Tacotron2 or WaveGlow" / "a Tacotron2 nor a WaveGlow", for every registered kind."""
    titles = [kind.title for kind in KINDS.values()]
    return "a " + (" or ".join(titles) if joiner == "or" else " nor a ".join(titles))


def _weights_key(obj: Any) -> str | None:
    """The key under which a checkpoint dict holds its weights ("state_dict", "generator"...)."""
    if not isinstance(obj, dict):
        return None
    return next((k for k in weights_keys() if isinstance(obj.get(k), dict)), None)


def _interpret_with_state_dict(obj: dict[str, Any], key: str, safe: bool, path: Path) -> Checkpoint:
    """``{"state_dict", "config"?...}``: DLE's checkpoints, NVIDIA/tacotron2's training files.

    A kind may keep its weights under its own key (HiFi-GAN's ``{"generator", "config"?}``).
    """
    sd = as_state_dict(obj[key], f"{path}: {key!r}")
    kind = kind_of_state_dict(sd)
    config = obj.get("config")
    if kind is None:
        raise CheckpointError(
            f"{path}: its {key} is neither {_kinds_phrase('nor')} one "
            f"(keys {', '.join(list(sd)[:4])}, ...)"
        )
    if isinstance(config, dict):
        config_kind = kind_of_config(config)
        if config_kind != kind:
            raise CheckpointError(
                f"{path}: its config describes a {title(config_kind)} but its "
                f"state_dict holds {title(kind)} weights"
            )
        return _finish("dle", kind, dict(config), sd, safe, path)
    fmt = "tacotron2-original" if kind == "tacotron2" else "state-dict"
    return _finish(fmt, kind, None, sd, safe, path)


def _finish(
    fmt: str,
    kind: str,
    config: dict[str, Any] | None,
    sd: dict[str, torch.Tensor],
    safe: bool,
    path: Path,
    dims: dict[str, int] | None = None,
    attrs: dict[str, Any] | None = None,
) -> Checkpoint:
    """The Checkpoint of NVIDIA-layout weights: DLE keys, and the config inside, beside or
    from the shapes; the kind names the format and records who publishes it."""
    model_kind = get_kind(kind)
    sd, dims, layout = model_kind.to_dle(sd, dims)
    if config is None and model_kind.config_file is not None:
        config = _config_beside(path, model_kind.config_file, model_kind.title)
    if config is None:
        config = model_kind.config_from_state_dict(sd, attrs)
    else:
        config = model_kind.read_config(config, sd)
    fmt = model_kind.format_name(fmt)
    origin = model_kind.origin(fmt)
    metadata = {"origin": origin} if origin is not None else {}
    return Checkpoint(fmt, kind, config, sd, safe, dims or {}, metadata, layout)


def _config_beside(path: Path, name: str, kind_title: str) -> dict[str, Any]:
    """The config in the JSON file ``name`` beside ``path`` (a jik876 generator's config.json)."""
    config_path = path.parent / name
    if not config_path.is_file():
        raise CheckpointError(
            f"{path} holds {kind_title} weights without a config: expected {config_path} beside it"
        )
    return read_json(config_path)


def _interpret_ttscli(obj: dict[str, Any], safe: bool, path: Path) -> Checkpoint:
    version = obj.get("format_version")
    if version != TTSCLI_FORMAT_VERSION:
        raise CheckpointError(
            f"{path} is a ttscli checkpoint of format version {version!r}; this ttscli reads "
            f"version {TTSCLI_FORMAT_VERSION}"
        )
    kind = obj.get("kind")
    if kind not in KINDS:
        raise CheckpointError(f"{path}: unknown ttscli checkpoint kind {kind!r}")
    config = obj.get("config")
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: ttscli checkpoint without a config")
    sd = as_state_dict(obj.get("state_dict"), f"{path}: 'state_dict'")
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    found = kind_of_state_dict(sd)
    if found is not None and found != kind:
        raise CheckpointError(f"{path}: marked {kind} but holds {title(found)} weights")
    return Checkpoint("ttscli", kind, dict(config), sd, safe, metadata=dict(metadata))


def _interpret_pickled_module(root: PickledObject, safe: bool, path: Path) -> Checkpoint:
    """A whole pickled model (NVIDIA/waveglow's ``glow.WaveGlow``), read without its code."""
    kind = pickled_kind(root.qualname)
    if kind is None:
        raise CheckpointError(f"{path} holds a pickled {root.qualname}, not a WaveGlow model")
    sd, dims = module_state_dict(root)
    attrs = module_attributes(root)
    fmt = f"{kind.name}-original-pickle"
    ckpt = _finish(fmt, kind.name, None, sd, safe, path, dims, attrs)
    if kind.check_pickled is not None:
        kind.check_pickled(ckpt.config, root.qualname, path)
    return ckpt
