"""NVIDIA's Tacotron2 layouts: recognising its weights and reading its config from their shapes."""

from __future__ import annotations

from typing import Any

from .kinds import ModelKind, StateDict, register


def _recognises(sd: StateDict) -> bool:
    return "embedding.weight" in sd and any(k.startswith("decoder.") for k in sd)


def _model_class() -> type:
    from ttscli.tacotron2 import Tacotron2

    return Tacotron2


def tacotron2_config_from_state_dict(
    state_dict: StateDict, attributes: dict[str, Any] | None = None
) -> dict[str, Any]:
    """DLE's Tacotron2 config from a DLE-keyed state dict (the sizes come from the shapes)."""
    from ttscli.tacotron2 import config_from_state_dict

    return config_from_state_dict(state_dict)


TACOTRON2 = register(
    ModelKind(
        name="tacotron2",
        title="Tacotron2",
        recognises=_recognises,
        model_class=_model_class,
        config_from_state_dict=tacotron2_config_from_state_dict,
    )
)
