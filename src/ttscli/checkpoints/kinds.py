"""The model kinds a checkpoint may hold, and what loading, saving and inspecting each needs.

Each kind's layout module (``tacotron2_layout``, ``waveglow_layout``, ``hifigan_layout``)
describes its kind with a ``ModelKind`` and registers it; reading, loading, saving and
``inspect_checkpoint`` go through this registry, so another model plugs in with one more layout
module. A kind may also take a folder as a path (``folder_file``), read its config from a JSON
file beside the checkpoint (``config_file``), and hold its weights under its own key.
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
    # extra ``inspect_checkpoint`` entries: the Checkpoint read -> dict
    describe: Callable[[Any], dict[str, Any]] | None = None
    # the key under which a checkpoint dict holds this kind's weights besides "state_dict"
    weights_key: str | None = None
    # a config as published (in the file or beside it) -> the model's constructor arguments
    read_config: Callable[[dict[str, Any], StateDict], dict[str, Any]] = lambda config, sd: dict(
        config
    )
    # a JSON file beside a checkpoint that holds its config when the file holds none
    config_file: str | None = None
    # a folder given as a path -> the one checkpoint file in it (None: folders are refused)
    folder_file: Callable[[Path], Path] | None = None
    # this kind's names for the generic formats ("dle", "state-dict"), and who publishes each
    format_names: tuple[tuple[str, str], ...] = ()
    origins: tuple[tuple[str, str], ...] = ()

    def format_name(self, generic: str) -> str:
        """This kind's name for a generic format (``"dle"`` -> ``"hifigan-dle"``)."""
        return dict(self.format_names).get(generic, generic)

    def origin(self, fmt: str) -> str | None:
        """Who publishes files of format ``fmt`` (recorded as metadata "origin"), if known."""
        return dict(self.origins).get(fmt)


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


def weights_keys() -> list[str]:
    """The keys a checkpoint dict may hold weights under: "state_dict", then the kinds' own."""
    keys = ["state_dict"]
    keys += [k.weights_key for k in KINDS.values() if k.weights_key and k.weights_key not in keys]
    return keys


def folder_kinds() -> list[ModelKind]:
    """The kinds whose checkpoints may be given as a folder."""
    return [kind for kind in KINDS.values() if kind.folder_file is not None]


def pickled_kind(qualname: str) -> ModelKind | None:
    """The kind whose pickled module class ``qualname`` names (e.g. ``glow.WaveGlow``)."""
    for kind in KINDS.values():
        if kind.pickled_class is not None and qualname.endswith(kind.pickled_class):
            return kind
    return None
