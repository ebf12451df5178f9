"""The model kinds a checkpoint may hold, and what loading, saving and inspecting each needs.

Each kind's layout module (``tacotron2_layout``, ``waveglow_layout``...) describes its kind with
a ``ModelKind`` and registers it; reading, loading, saving and ``inspect_checkpoint`` go through
this registry, so another model (a HiFi-GAN vocoder) plugs in with one more layout module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ttscli.errors import CheckpointError

StateDict = dict[str, torch.Tensor]


def _unchanged(sd: StateDict, dims: dict[str, int]) -> tuple[StateDict, dict[str, int], None]:
    return sd, dims, None


def _own_state_dict(model: torch.nn.Module) -> StateDict:
    return model.state_dict()


@dataclass(frozen=True)
class ModelKind:
    """One model kind: how to recognise its weights, map them onto DLE's keys and build it."""

    name: str  # as stored in ttscli files: "tacotron2"
    title: str  # for messages: "Tacotron2"
    recognises: Callable[[StateDict], bool]  # whether (DLE-keyed) weights are of this kind
    model_class: Callable[[], type]  # imported when first needed
    config_from_state_dict: Callable[[StateDict, dict[str, Any] | None], dict[str, Any]]
    # a key only this kind's DLE config holds (None: the kind of configs no other kind claims)
    config_marker: str | None = None
    # NVIDIA layouts -> DLE keys: (state dict, weight-norm dims) -> (state dict, dims, layout)
    to_dle: Callable[..., tuple[StateDict, dict[str, int], str | None]] = _unchanged
    # the model as built for loading (e.g. with weight norm removed) and the weights it takes
    prepare_model: Callable[[torch.nn.Module], torch.nn.Module] = lambda model: model
    loadable_weights: Callable[[StateDict, dict[str, int]], StateDict] = lambda sd, dims: sd
    saved_weights: Callable[[torch.nn.Module], StateDict] = _own_state_dict
    save_extras: tuple[tuple[str, Any], ...] = ()
    # a whole pickled module of this kind: its class name's ending, and a check of its config
    pickled_class: str | None = None
    check_pickled: Callable[[dict[str, Any], str, Path], None] | None = None
    # extra ``inspect_checkpoint`` entries: (DLE-keyed weights, layout) -> dict
    describe: Callable[[StateDict, str | None], dict[str, Any]] | None = None


KINDS: dict[str, ModelKind] = {}


def register(kind: ModelKind) -> ModelKind:
    """Add a kind to the registry (its layout module does this when imported)."""
    KINDS[kind.name] = kind
    return kind


def get_kind(name: str) -> ModelKind:
    """The registered kind called ``name``, or a CheckpointError."""
    try:
        return KINDS[name]
    except KeyError:
        raise CheckpointError(f"unknown checkpoint kind {name!r}") from None


def title(name: str) -> str:
    """A kind's name for messages ("WaveGlow")."""
    return KINDS[name].title if name in KINDS else name


def kind_of_state_dict(sd: StateDict) -> str | None:
    """The one kind whose weights these are, or None when none or several recognise them."""
    found = [kind.name for kind in KINDS.values() if kind.recognises(sd)]
    return found[0] if len(found) == 1 else None


def kind_of_config(config: dict[str, Any]) -> str:
    """The kind a DLE config describes: the one whose marker key it holds, else the default."""
    for kind in KINDS.values():
        if kind.config_marker is not None and kind.config_marker in config:
            return kind.name
    return next(k.name for k in KINDS.values() if k.config_marker is None)


def pickled_kind(qualname: str) -> ModelKind | None:
    """The kind whose pickled module class ``qualname`` names (e.g. ``glow.WaveGlow``)."""
    for kind in KINDS.values():
        if kind.pickled_class is not None and qualname.endswith(kind.pickled_class):
            return kind
    return None
