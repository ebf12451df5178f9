"""NVIDIA's Tacotron2 layouts: recognising its weights and reading its config from their shapes."""

from __future__ import annotations

from typing import Any

import torch

from ttscli.errors import CheckpointError
from ttscli.tacotron2.hparams import DEFAULT_CONFIG

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
    return _config_from_shapes(state_dict)


TACOTRON2 = register(
    ModelKind(
        name="tacotron2",
        title="Tacotron2",
        recognises=_recognises,
        model_class=_model_class,
        config_from_state_dict=tacotron2_config_from_state_dict,
    )
)


def _config_from_shapes(state_dict: StateDict) -> dict[str, Any]:
    """Infer the 22-key DLE config from a Tacotron2 state dict's tensor shapes.

    For checkpoints that carry no config (NVIDIA/tacotron2's own format). Keys may carry a
    ``module.`` prefix. Sizes come from the shapes; settings that shapes cannot reveal
    (mask_padding, max_decoder_steps, gate_threshold, dropouts, early stopping) take the
    torch.hub defaults of ``DEFAULT_CONFIG``. Raises ``CheckpointError`` if a needed tensor is
    missing or the shapes do not fit together.
    """
    sd = _strip_module_prefix(state_dict)

    def shape(key: str) -> tuple[int, ...]:
        if key not in sd:
            raise CheckpointError(f"not a Tacotron2 state dict: missing {key}")
        return tuple(sd[key].shape)

    def count(prefix: str) -> int:
        n = 0
        while f"{prefix}.{n}.0.conv.weight" in sd:
            n += 1
        return n

    n_symbols, symbols_dim = shape("embedding.weight")
    enc_out, _, enc_kernel = shape("encoder.convolutions.0.0.conv.weight")
    post_out, n_mel, post_kernel = shape("postnet.convolutions.0.0.conv.weight")
    n_filters, _, loc_kernel = shape(
        "decoder.attention_layer.location_layer.location_conv.conv.weight"
    )
    projection_out = shape("decoder.linear_projection.linear_layer.weight")[0]
    if n_mel < 1 or projection_out % n_mel:
        raise CheckpointError(
            f"Tacotron2 projection size {projection_out} is not a multiple of n_mel {n_mel}"
        )
    prenet_in = shape("decoder.prenet.layers.0.linear_layer.weight")[1]
    if prenet_in != n_mel:
        raise CheckpointError(
            f"unsupported Tacotron2 prenet input size {prenet_in} (expected n_mel = {n_mel})"
        )
    config = dict(DEFAULT_CONFIG)
    config.update(
        n_mel_channels=n_mel,
        n_symbols=n_symbols,
        symbols_embedding_dim=symbols_dim,
        encoder_kernel_size=enc_kernel,
        encoder_n_convolutions=count("encoder.convolutions"),
        encoder_embedding_dim=enc_out,
        attention_rnn_dim=shape("decoder.attention_rnn.weight_hh")[1],
        attention_dim=shape("decoder.attention_layer.query_layer.linear_layer.weight")[0],
        attention_location_n_filters=n_filters,
        attention_location_kernel_size=loc_kernel,
        n_frames_per_step=projection_out // n_mel,
        decoder_rnn_dim=shape("decoder.decoder_rnn.weight_hh")[1],
        prenet_dim=shape("decoder.prenet.layers.0.linear_layer.weight")[0],
        postnet_embedding_dim=post_out,
        postnet_kernel_size=post_kernel,
        postnet_n_convolutions=count("postnet.convolutions"),
    )
    from ttscli.tacotron2.model import Tacotron2

    try:
        with torch.device("meta"):
            expected = Tacotron2(**config).state_dict()
    except CheckpointError:
        raise
    except (RuntimeError, ValueError) as exc:  # pragma: no cover - defensive
        raise CheckpointError(f"cannot build Tacotron2 from inferred config: {exc}") from exc
    mismatched = [
        k for k, v in expected.items() if k in sd and tuple(sd[k].shape) != tuple(v.shape)
    ]
    missing = [k for k in expected if k not in sd]
    if mismatched or missing:
        detail = ", ".join((mismatched + missing)[:5])
        raise CheckpointError(f"Tacotron2 state dict shapes do not fit together: {detail}")
    return config


def _strip_module_prefix(state_dict: StateDict) -> StateDict:
    if not any("module." in k for k in state_dict):
        return state_dict
    return {k.replace("module.1.", "").replace("module.", ""): v for k, v in state_dict.items()}
