"""Reading a checkpoint file: torch.load(weights_only=True) first, else the restricted unpickler."""

from __future__ import annotations

import json
import os
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from ttscli.errors import CheckpointError

from .safe_pickle import PickledObject, read_pickled_checkpoint

PathLike = str | os.PathLike[str]


def check_path(path: PathLike) -> Path:
    """``path`` as a Path, or a CheckpointError when it is missing, a folder or empty."""
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


def read_object(path: PathLike) -> tuple[Any, bool, Path]:
    """The saved object, whether it came through torch.load(weights_only=True), and the path."""
    p = check_path(path)
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
        if "truncated or corrupt" in message and not looks_like_torch_file(p):
            message = f"{p} is not a PyTorch checkpoint (neither a zip archive nor a pickle)"
        elif str(p) not in message:
            message = f"cannot load {p}: {message}"
        raise CheckpointError(message) from torch_error
    return obj, False, p


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path`` (a config beside a checkpoint), or a CheckpointError."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise CheckpointError(f"{path} does not hold a JSON object")
    return value


def looks_like_torch_file(path: Path) -> bool:
    """torch.save writes a zip archive, or before torch 1.6 a pickle (protocol 2: byte 0x80)."""
    with open(path, "rb") as f:
        head = f.read(2)
    return head == b"PK" or head[:1] == b"\x80"


def strip_module_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """DLE's rule: if any key contains ``module.``, drop ``module.1.`` then ``module.``."""
    if not any("module." in k for k in state_dict):
        return state_dict
    out: dict[str, torch.Tensor] = OrderedDict()
    for key, value in state_dict.items():
        out[key.replace("module.1.", "").replace("module.", "")] = value
    return out


def as_state_dict(obj: Any, what: str) -> dict[str, torch.Tensor]:
    """``obj`` checked to be a non-empty dict of named tensors, without DLE's module prefix."""
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{what} is not a non-empty dict of tensors")
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{what} holds {key!r}: {type(value).__name__}, not a tensor")
    return strip_module_prefix(obj)


def describe(obj: Any) -> str:
    """A few words on what an unrecognised file holds, for error messages."""
    if isinstance(obj, dict):
        keys = ", ".join(repr(k) for k in list(obj)[:8])
        return f"a dict with keys {keys}{', ...' if len(obj) > 8 else ''}"
    if isinstance(obj, PickledObject):
        return f"a pickled {obj.qualname}"
    return f"a {type(obj).__name__}"
