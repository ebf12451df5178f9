"""Tacotron 2's nn.Modules, with NVIDIA DeepLearningExamples' keys, state dict and numbers."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

from ttscli.errors import CheckpointError
from ttscli.tacotron2.hparams import DEFAULT_CONFIG, validate_config

if TYPE_CHECKING:
    from ttscli.tacotron2.decoding import DecodeOptions

__all__ = [
    "Attention",
    "ConvNorm",
    "Decoder",
    "Encoder",
    "LinearNorm",
    "LocationLayer",
    "Postnet",
    "Prenet",
    "Tacotron2",
    "gate_targets",
    "padding_mask",
]

# Logit written over padded gate positions by forward() when mask_padding is on (as DLE).
_PADDED_GATE_LOGIT = 1e3


def _xavier(weight: torch.Tensor, gain_name: str) -> None:
    nn.init.xavier_uniform_(weight, gain=nn.init.calculate_gain(gain_name))


class LinearNorm(nn.Module):
    """A Linear layer kept at ``.linear_layer`` (DLE's key layout), Xavier-initialised."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, gain: str = "linear") -> None:
        super().__init__()
        self.linear_layer = nn.Linear(in_dim, out_dim, bias=bias)
        _xavier(self.linear_layer.weight, gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_layer(x)  # [..., in_dim] -> [..., out_dim]


class ConvNorm(nn.Module):
    """A 'same'-padded Conv1d kept at ``.conv`` (DLE's key layout), Xavier-initialised."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        gain: str = "linear",
    ) -> None:
        super().__init__()
        self.conv = nn.Conv1d(
            in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2, bias=bias
        )
        _xavier(self.conv.weight, gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)  # [B, C_in, T] -> [B, C_out, T]


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int, gain: str) -> nn.Sequential:
    return nn.Sequential(
        ConvNorm(in_channels, out_channels, kernel_size, gain=gain), nn.BatchNorm1d(out_channels)
    )


class Encoder(nn.Module):
    """Convolution stack then a bidirectional LSTM over the embedded symbols."""

    def __init__(
        self, in_dim: int, embedding_dim: int, n_convolutions: int, kernel_size: int
    ) -> None:
        super().__init__()
        self.convolutions = nn.ModuleList(
            _conv_bn(in_dim if i == 0 else embedding_dim, embedding_dim, kernel_size, "relu")
            for i in range(n_convolutions)
        )
        self.lstm = nn.LSTM(
            embedding_dim, embedding_dim // 2, 1, batch_first=True, bidirectional=True
        )

    def forward(
        self, x: torch.Tensor, lengths_cpu: torch.Tensor, enforce_sorted: bool = True
    ) -> torch.Tensor:
        """[B, E_sym, T_in] embedded ids, lengths (CPU) -> memory [B, max(lengths), E]."""
        return self.recur(self.convolve(x), lengths_cpu, enforce_sorted)

    def convolve(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution stack: [B, E_sym, T_in] -> [B, T_in, E]."""
        for conv in self.convolutions:
            x = F.dropout(F.relu(conv(x)), 0.5, self.training)  # [B, E, T_in]
        return x.transpose(1, 2)

    def recur(
        self, x: torch.Tensor, lengths_cpu: torch.Tensor, enforce_sorted: bool = True
    ) -> torch.Tensor:
        """The bidirectional LSTM: [B, T_in, E], lengths (CPU) -> memory [B, max(lengths), E]."""
        packed = nn.utils.rnn.pack_padded_sequence(
            x, lengths_cpu, batch_first=True, enforce_sorted=enforce_sorted
        )
        outputs, _ = self.lstm(packed)
        memory, _ = nn.utils.rnn.pad_packed_sequence(outputs, batch_first=True)
        return memory  # [B, max(lengths), E]; padded steps are exactly 0


class Prenet(nn.Module):
    """Bias-free ReLU layers; dropout is applied by the caller-chosen probability."""

    def __init__(self, in_dim: int, prenet_dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [LinearNorm(in_dim, prenet_dim, bias=False), LinearNorm(prenet_dim, prenet_dim, False)]
        )

    def forward(self, x: torch.Tensor, p_dropout: float) -> torch.Tensor:
        """[..., n_mel] -> [..., prenet_dim]; dropout is always 'training' (as NVIDIA's)."""
        for layer in self.layers:
            x = F.relu(layer(x))
            if p_dropout > 0.0:
                x = F.dropout(x, p_dropout, training=True)
        return x


class LocationLayer(nn.Module):
    """Convolution over [previous, cumulative] attention weights, projected to attention_dim."""

    def __init__(self, n_filters: int, kernel_size: int, attention_dim: int) -> None:
        super().__init__()
        self.location_conv = ConvNorm(2, n_filters, kernel_size, bias=False)
        self.location_dense = LinearNorm(n_filters, attention_dim, bias=False, gain="tanh")

    def forward(self, weights_cat: torch.Tensor) -> torch.Tensor:
        x = self.location_conv(weights_cat)  # [B, 2, T_in] -> [B, n_filters, T_in]
        return self.location_dense(x.transpose(1, 2))  # [B, T_in, attention_dim]


class Attention(nn.Module):
    """Location-sensitive additive attention."""

    def __init__(
        self,
        attention_rnn_dim: int,
        embedding_dim: int,
        attention_dim: int,
        location_n_filters: int,
        location_kernel_size: int,
    ) -> None:
        super().__init__()
        self.query_layer = LinearNorm(attention_rnn_dim, attention_dim, bias=False, gain="tanh")
        self.memory_layer = LinearNorm(embedding_dim, attention_dim, bias=False, gain="tanh")
        self.v = LinearNorm(attention_dim, 1, bias=False)
        self.location_layer = LocationLayer(location_n_filters, location_kernel_size, attention_dim)

    def forward(
        self,
        query: torch.Tensor,
        memory: torch.Tensor,
        processed_memory: torch.Tensor,
        weights_cat: torch.Tensor,
        mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """query [B, A_rnn], memory [B, T_in, E], processed [B, T_in, A], cat [B, 2, T_in],
        mask [B, T_in] (True = padding) -> (context [B, E], weights [B, T_in])."""
        processed_query = self.query_layer(query.unsqueeze(1))  # [B, 1, A]
        processed_location = self.location_layer(weights_cat)  # [B, T_in, A]
        # Addition order (query + location) + memory kept for bitwise parity with NVIDIA.
        energies = self.v(torch.tanh(processed_query + processed_location + processed_memory))
        energies = energies.squeeze(2).masked_fill(mask, float("-inf"))  # [B, T_in]
        weights = F.softmax(energies, dim=1)  # [B, T_in]
        context = torch.bmm(weights.unsqueeze(1), memory).squeeze(1)  # [B, E]
        return context, weights


class Decoder(nn.Module):
    """Autoregressive attention decoder producing n_frames_per_step mel frames per step."""

    def __init__(
        self,
        n_mel_channels: int,
        n_frames_per_step: int,
        encoder_embedding_dim: int,
        attention_dim: int,
        attention_location_n_filters: int,
        attention_location_kernel_size: int,
        attention_rnn_dim: int,
        decoder_rnn_dim: int,
        prenet_dim: int,
        p_attention_dropout: float,
        p_decoder_dropout: float,
    ) -> None:
        super().__init__()
        self.n_mel_channels = n_mel_channels
        self.n_frames_per_step = n_frames_per_step
        self.attention_rnn_dim = attention_rnn_dim
        self.decoder_rnn_dim = decoder_rnn_dim
        self.p_attention_dropout = p_attention_dropout
        self.p_decoder_dropout = p_decoder_dropout
        # The prenet sees one frame (the last of the previous step), also when r > 1.
        self.prenet = Prenet(n_mel_channels, prenet_dim)
        self.attention_rnn = nn.LSTMCell(prenet_dim + encoder_embedding_dim, attention_rnn_dim)
        self.attention_layer = Attention(
            attention_rnn_dim,
            encoder_embedding_dim,
            attention_dim,
            attention_location_n_filters,
            attention_location_kernel_size,
        )
        self.decoder_rnn = nn.LSTMCell(attention_rnn_dim + encoder_embedding_dim, decoder_rnn_dim)
        self.linear_projection = LinearNorm(
            decoder_rnn_dim + encoder_embedding_dim, n_mel_channels * n_frames_per_step
        )
        self.gate_layer = LinearNorm(
            decoder_rnn_dim + encoder_embedding_dim, 1, bias=True, gain="sigmoid"
        )

    # -- one step ---------------------------------------------------------------------------
    def _initial_state(self, memory: torch.Tensor) -> list[torch.Tensor]:
        batch, t_in, embedding_dim = memory.shape
        z = memory.new_zeros
        return [
            z(batch, self.attention_rnn_dim),  # attention hidden
            z(batch, self.attention_rnn_dim),  # attention cell
            z(batch, self.decoder_rnn_dim),  # decoder hidden
            z(batch, self.decoder_rnn_dim),  # decoder cell
            z(batch, t_in),  # attention weights (previous step)
            z(batch, t_in),  # cumulative attention weights
            z(batch, embedding_dim),  # attention context
        ]

    def _step(
        self,
        prenet_out: torch.Tensor,
        state: list[torch.Tensor],
        memory: torch.Tensor,
        processed_memory: torch.Tensor,
        mask: torch.Tensor,
        in_place_cumulative: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One decoder step after the prenet; updates ``state`` -> (frames [B, n_mel*r], gate [B, 1])."""
        att_h, att_c, dec_h, dec_c, weights, weights_cum, context = state
        att_h, att_c = self.attention_rnn(torch.cat((prenet_out, context), -1), (att_h, att_c))
        att_h = F.dropout(att_h, self.p_attention_dropout, self.training)
        weights_cat = torch.cat((weights.unsqueeze(1), weights_cum.unsqueeze(1)), dim=1)
        context, weights = self.attention_layer(att_h, memory, processed_memory, weights_cat, mask)
        if in_place_cumulative:
            weights_cum += weights
        else:
            weights_cum = weights_cum + weights
        dec_h, dec_c = self.decoder_rnn(torch.cat((att_h, context), -1), (dec_h, dec_c))
        dec_h = F.dropout(dec_h, self.p_decoder_dropout, self.training)
        hidden_context = torch.cat((dec_h, context), dim=1)  # [B, D_rnn + E]
        frames = self.linear_projection(hidden_context)  # [B, n_mel * r]
        gate = self.gate_layer(hidden_context)  # [B, 1]
        state[:] = [att_h, att_c, dec_h, dec_c, weights, weights_cum, context]
        return frames, gate

    # -- teacher forcing ----------------------------------------------------------------------
    def forward(
        self,
        memory: torch.Tensor,
        targets: torch.Tensor,
        memory_lengths: torch.Tensor,
        prenet_dropout: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """memory [B, T_in, E], targets [B, n_mel, T] (any T), lengths [B] ->
        (mel [B, n_mel, T], gate logits [B, S], alignments [B, S, T_in]) with S = ceil(T / r)."""
        batch, n_mel, n_frames = targets.shape
        r = self.n_frames_per_step
        n_steps = -(-n_frames // r)
        padded = F.pad(targets, (0, n_steps * r - n_frames)) if n_steps * r != n_frames else targets
        # Step s is fed the last frame of step s-1 (frame s*r - 1); step 0 the zero go frame.
        fed = padded[:, :, r - 1 :: r].permute(2, 0, 1)  # [S, B, n_mel]
        go = memory.new_zeros(1, batch, n_mel)
        prenet_out = self.prenet(torch.cat((go, fed), dim=0), prenet_dropout)  # [S+1, B, P]
        mask = padding_mask(memory_lengths, memory.shape[1])
        processed_memory = self.attention_layer.memory_layer(memory)  # [B, T_in, A]
        state = self._initial_state(memory)
        frames_out, gates_out, weights_out = [], [], []
        for step in range(n_steps):
            frames, gate = self._step(
                prenet_out[step], state, memory, processed_memory, mask, in_place_cumulative=False
            )
            frames_out.append(frames)
            gates_out.append(gate.squeeze(1))
            weights_out.append(state[4])
        mel = torch.stack(frames_out, dim=1)  # [B, S, n_mel * r]
        mel = mel.reshape(batch, n_steps * r, n_mel).transpose(1, 2)[:, :, :n_frames]
        gates = torch.stack(gates_out, dim=1)  # [B, S]
        alignments = torch.stack(weights_out, dim=1)  # [B, S, T_in]
        return mel, gates, alignments

    def infer(
        self,
        memory: torch.Tensor,
        memory_lengths: torch.Tensor,
        prenet_dropout: float,
        max_decoder_steps: int,
        gate_threshold: float,
        early_stopping: bool,
        stop_check_every: int = 1,
        stop_at_text_end: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decode until every gate fired (or the step limit), without the postnet.

        memory [B, T_in, E], lengths [B] -> (mel [B, n_mel, S*r] (a transposed view), gate
        logits [B, S], alignments [B, S, T_in], steps before each item's gate fired [B] int32,
        still-running flags [B] bool), all in the batch order given. The options are those of
        ``ttscli.tacotron2.decoding.DecodeOptions``; the work is done by this decoder's
        ``DecoderInference`` (see ``ttscli.tacotron2.decoding.inference_for``).
        """
        from ttscli.tacotron2.decoding import DecodeOptions, inference_for

        options = DecodeOptions(
            prenet_dropout=prenet_dropout,
            max_decoder_steps=max_decoder_steps,
            gate_threshold=gate_threshold,
            early_stopping=early_stopping,
            stop_at_text_end=stop_at_text_end,
            stop_check_every=stop_check_every,
        )
        return inference_for(self).decode(memory, memory_lengths, options)


class Postnet(nn.Module):
    """Residual convolution stack refining the decoder's mel."""

    def __init__(
        self, n_mel_channels: int, embedding_dim: int, kernel_size: int, n_convolutions: int
    ) -> None:
        super().__init__()
        layers = [_conv_bn(n_mel_channels, embedding_dim, kernel_size, "tanh")]
        layers += [
            _conv_bn(embedding_dim, embedding_dim, kernel_size, "tanh")
            for _ in range(n_convolutions - 2)
        ]
        layers.append(_conv_bn(embedding_dim, n_mel_channels, kernel_size, "linear"))
        self.convolutions = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, n_mel, T] -> residual [B, n_mel, T] (to be added to the input)."""
        for conv in self.convolutions[:-1]:
            x = F.dropout(torch.tanh(conv(x)), 0.5, self.training)
        return F.dropout(self.convolutions[-1](x), 0.5, self.training)


class Tacotron2(nn.Module):
    """Tacotron 2 with NVIDIA DeepLearningExamples' constructor keys and state-dict keys.

    ``Tacotron2(**config)`` takes DLE's 22 keyword arguments (see ``DEFAULT_CONFIG``; missing
    ones take the torch.hub defaults). A key outside those 22 raises ``CheckpointError`` naming
    it, because silently ignoring an unknown setting could build a different network than the
    one a checkpoint was trained as. ``.config`` is a copy of the complete 22-key dict the model
    was built from; run-time settings changed later (``max_decoder_steps``, ...) do not alter it.

    ``n_frames_per_step`` r > 1 is supported: every decoder step emits r frames and one gate
    logit, and the next step's prenet input is the last of those r frames (so the prenet's
    input size is n_mel for every r; with r = 1 everything is exactly DLE's computation).
    """

    def __init__(self, **config: Any) -> None:
        super().__init__()
        unknown = sorted(set(config) - set(DEFAULT_CONFIG))
        if unknown:
            raise CheckpointError(f"unknown Tacotron2 config keys: {', '.join(unknown)}")
        cfg = {**DEFAULT_CONFIG, **config}
        validate_config(cfg)
        self._config = cfg
        self.mask_padding = bool(cfg["mask_padding"])
        self.n_mel_channels = int(cfg["n_mel_channels"])
        self.n_frames_per_step = int(cfg["n_frames_per_step"])
        # Defaults of infer() when it gets no DecodeOptions; callers may change them.
        self.prenet_dropout: float = 0.5
        self.max_decoder_steps: int = int(cfg["max_decoder_steps"])
        self.gate_threshold: float = float(cfg["gate_threshold"])
        self.early_stopping: bool = not bool(cfg["decoder_no_early_stopping"])
        self.stop_at_text_end: bool = False  # see DecodeOptions; not NVIDIA's rule
        self.last_hit_max_steps: torch.Tensor = torch.zeros(0, dtype=torch.bool)
        # Steps between host checks for "every gate fired"; None: 1 on CPU, 16 on accelerators.
        self.stop_check_every: int | None = None

        n_symbols = int(cfg["n_symbols"])
        symbols_dim = int(cfg["symbols_embedding_dim"])
        encoder_dim = int(cfg["encoder_embedding_dim"])
        self.embedding = nn.Embedding(n_symbols, symbols_dim)
        bound = math.sqrt(3.0) * math.sqrt(2.0 / (n_symbols + symbols_dim))
        nn.init.uniform_(self.embedding.weight, -bound, bound)
        self.encoder = Encoder(
            symbols_dim,
            encoder_dim,
            int(cfg["encoder_n_convolutions"]),
            int(cfg["encoder_kernel_size"]),
        )
        self.decoder = Decoder(
            self.n_mel_channels,
            self.n_frames_per_step,
            encoder_dim,
            int(cfg["attention_dim"]),
            int(cfg["attention_location_n_filters"]),
            int(cfg["attention_location_kernel_size"]),
            int(cfg["attention_rnn_dim"]),
            int(cfg["decoder_rnn_dim"]),
            int(cfg["prenet_dim"]),
            float(cfg["p_attention_dropout"]),
            float(cfg["p_decoder_dropout"]),
        )
        self.postnet = Postnet(
            self.n_mel_channels,
            int(cfg["postnet_embedding_dim"]),
            int(cfg["postnet_kernel_size"]),
            int(cfg["postnet_n_convolutions"]),
        )

    @property
    def config(self) -> dict[str, Any]:
        """The complete 22-key DLE config this model was built from (a copy)."""
        return dict(self._config)

    # -- training -----------------------------------------------------------------------------
    def forward(
        self, inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor, Any, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher-forced pass, DLE's tuple in and out.

        ``inputs`` = (text_ids [B, T_in] long, text_lengths [B], mel_targets [B, n_mel, T],
        max_len (unused), output_lengths [B] in frames). Rows may come in any length order.
        Returns (mel [B, n_mel, T], mel_postnet [B, n_mel, T], gate_logits [B, S],
        alignments [B, S, T_in]) where S = ceil(T / r) decoder steps: the mels always have the
        targets' T frames (targets are zero-padded to S*r internally and the extra frames cut),
        while gate logits and alignments come one per decoder STEP. With r = 1 that is one per
        frame, exactly DLE's outputs; ``gate_targets`` builds the matching per-step targets.
        Step s is fed target frame s*r - 1 (step 0 the zero go frame). The prenet's dropout
        (``prenet_dropout``) is on in every mode, drawn once on the [S+1, B, prenet_dim] stack.

        With ``mask_padding``, frames t >= output_lengths[b] are set to 0 in both mels and
        steps s >= ceil(output_lengths[b] / r) to a gate logit of 1e3: DLE's values, but
        filled out of place (not in place as DLE) so that backward through the postnet works.
        """
        text_ids, text_lengths, mel_targets, _max_len, output_lengths = inputs
        lengths_cpu = text_lengths.detach().cpu().long()
        embedded = self.embedding(text_ids).transpose(1, 2)  # [B, E_sym, T_in]
        memory = self.encoder(embedded, lengths_cpu, enforce_sorted=False)  # [B, T_in', E]
        mel, gates, alignments = self.decoder(
            memory, mel_targets, text_lengths.to(memory.device), self.prenet_dropout
        )
        mel_post = mel + self.postnet(mel)
        if self.mask_padding:
            r = self.n_frames_per_step
            out_lengths = output_lengths.to(mel.device).long()
            frame_pad = padding_mask(out_lengths, mel.shape[2])  # [B, T]
            step_pad = padding_mask(
                torch.div(out_lengths + r - 1, r, rounding_mode="floor"), gates.shape[1]
            )
            mel = mel.masked_fill(frame_pad.unsqueeze(1), 0.0)
            mel_post = mel_post.masked_fill(frame_pad.unsqueeze(1), 0.0)
            gates = gates.masked_fill(step_pad, _PADDED_GATE_LOGIT)
        return mel, mel_post, gates, alignments

    # -- inference ----------------------------------------------------------------------------
    def infer(
        self,
        text_ids: torch.Tensor,
        text_lengths: torch.Tensor,
        options: DecodeOptions | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Free-running synthesis: (mel [B, n_mel, F], mel_lengths [B] int32, alignments [B, S, T]).

        NVIDIA's call. ``options`` (a ``ttscli.tacotron2.decoding.DecodeOptions``) travel with
        the call; without them this model's attributes (``prenet_dropout``,
        ``max_decoder_steps``, ``gate_threshold``, ``early_stopping``, ``stop_at_text_end``,
        ``stop_check_every``) are used. ``last_hit_max_steps`` (bool [B], input order) then
        says which items never fired their gate: a convenience for one caller at a time;
        callers sharing the model use ``ttscli.tacotron2.decoding.decode``, whose
        ``DecodeResult`` carries it. The rules (input order, dropout draws, stopping,
        mel_lengths) are those of ``decode``.
        """
        from ttscli.tacotron2.decoding import decode

        result = decode(self, text_ids, text_lengths, options)
        self.last_hit_max_steps = result.hit_max_steps
        return result.mel, result.mel_lengths, result.alignments


def gate_targets(
    output_lengths: torch.Tensor, n_steps: int, n_frames_per_step: int = 1
) -> torch.Tensor:
    """Per-step gate targets matching ``Tacotron2.forward``'s gate logits: float [B, n_steps].

    Step s (frames s*r .. s*r+r-1) has target 1 from the step holding the last frame
    (output_lengths[b] - 1) on, else 0. With r = 1 this is DLE's per-frame gate target.
    """
    r = int(n_frames_per_step)
    last_step = torch.div(output_lengths.long() - 1, r, rounding_mode="floor")  # [B]
    steps = torch.arange(n_steps, device=output_lengths.device)
    return (steps[None, :] >= last_step[:, None]).float()


def padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """[B] lengths -> bool [B, max_len], True at padded positions."""
    positions = torch.arange(max_len, device=lengths.device)
    return positions[None, :] >= lengths[:, None]
