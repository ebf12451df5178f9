"""Tacotron 2 text-to-mel model with NVIDIA DeepLearningExamples' state-dict layout and numbers."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ttscli.errors import CheckpointError, SynthesisError, TextError

__all__ = [
    "DEFAULT_CONFIG",
    "Tacotron2",
    "config_from_state_dict",
    "gate_targets",
]

# The 22 constructor keys of DLE's Tacotron2, in DLE's order, with the torch.hub defaults.
DEFAULT_CONFIG: dict[str, Any] = {
    "mask_padding": False,
    "n_mel_channels": 80,
    "n_symbols": 148,
    "symbols_embedding_dim": 512,
    "encoder_kernel_size": 5,
    "encoder_n_convolutions": 3,
    "encoder_embedding_dim": 512,
    "attention_rnn_dim": 1024,
    "attention_dim": 128,
    "attention_location_n_filters": 32,
    "attention_location_kernel_size": 31,
    "n_frames_per_step": 1,
    "decoder_rnn_dim": 1024,
    "prenet_dim": 256,
    "max_decoder_steps": 1000,
    "gate_threshold": 0.5,
    "p_attention_dropout": 0.1,
    "p_decoder_dropout": 0.1,
    "postnet_embedding_dim": 512,
    "postnet_kernel_size": 5,
    "postnet_n_convolutions": 5,
    "decoder_no_early_stopping": False,
}

# Logit written over padded gate positions by forward() when mask_padding is on (as DLE).
_PADDED_GATE_LOGIT = 1e3
# Decoder.infer(stop_at_text_end=True): the attention summed over the steps on the last text
# position must reach _TEXT_END_REACHED before a gate counts; at _TEXT_END_MAX_DWELL the item
# stops (measured on the embedded voice: natural stops at sums of 1.4-7.6; "OK?" fired at 0.06,
# cutting the text; "A" never fired in 3 of 5 runs and ran to the step limit).
_TEXT_END_REACHED = 0.5
_TEXT_END_MAX_DWELL = 12.0
# Initial number of decoder steps the inference buffers hold; they double when full.
_INITIAL_STEP_CAPACITY = 256
# On accelerators the host asks whether decoding may stop only every this many steps, so the
# device is not drained on every step; the few extra steps decoded are discarded.
_ACCELERATOR_STOP_CHECK_EVERY = 16
# Share of W_dec[att_h] · att_h the decoding thread computes itself when the LSTM matmuls are
# overlapped (see _OverlappedMatmuls): it balances the two threads (measured: 0 -> 1.8x the
# reference per decoder step, 0.5 -> 2.0x, 0.75 and 1.0 no better).
_OVERLAP_CALLER_SHARE = 0.5
# ... and only for LSTM weights this large (bytes): smaller ones sit in the CPU's caches, where
# handing work between threads (tens of microseconds per step) costs more than it saves (the
# embedded voice's 5.5 MB: 0.45 ms per step pooled, 0.52 overlapped; NVIDIA's 71 MB: ~1.4x faster).
_OVERLAP_MIN_WEIGHT_BYTES = 16 << 20


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
        self,
        x: torch.Tensor,
        lengths_cpu: torch.Tensor,
        enforce_sorted: bool = True,
        single_threaded_lstm: bool = False,
    ) -> torch.Tensor:
        """[B, E_sym, T_in] embedded ids, lengths (CPU) -> memory [B, max(lengths), E].

        ``single_threaded_lstm`` runs the LSTM (two small matmuls per symbol) with one CPU
        intra-op thread, restored after: on a busy CPU each of its hundreds of parallel
        regions would wait for a descheduled pool thread (seconds per sentence).
        """
        for conv in self.convolutions:
            x = F.dropout(F.relu(conv(x)), 0.5, self.training)  # [B, E, T_in]
        x = x.transpose(1, 2)  # [B, T_in, E]
        packed = nn.utils.rnn.pack_padded_sequence(
            x, lengths_cpu, batch_first=True, enforce_sorted=enforce_sorted
        )
        threads = torch.get_num_threads()
        single = single_threaded_lstm and x.device.type == "cpu" and threads > 1
        if single:
            torch.set_num_threads(1)
        try:
            outputs, _ = self.lstm(packed)
        finally:
            if single:
                torch.set_num_threads(threads)
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
        # inference-only cache of the fused LSTM weights, see _fused_lstm_weights
        self._fused_cache = _WeightCache()

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
        mask = _padding_mask(memory_lengths, memory.shape[1])
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

    # -- free running -------------------------------------------------------------------------
    def _fused_lstm_weights(self, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Each LSTM cell's input and hidden weights side by side, for one matmul per cell.

        Attention cell: [W_ih | W_hh] over its input [prenet | context | attention hidden].
        Decoder cell: W_ih's column blocks swapped, then W_hh, over [context | attention hidden
        | decoder hidden] (the order those sit in the inference buffer). The cell-gate rows are
        doubled (exact in floating point) for ``_lstm_cell``'s tanh through sigmoid. ``kind``
        picks the layout: "dense" [K, 4H] contiguous for ``torch.addmm`` (a matrix-vector
        product streams that layout fastest), "onednn" oneDNN's packed layout for
        ``_linear_pointwise`` (tuned for 8 rows). In the weights' dtype and device.

        Built once and cached (about 71 MB at full size, one layout at a time); the cache
        keeps the four source tensors alive, so their storage cannot be reused by new weights,
        and is rebuilt whenever any of them changes: new values (in place, e.g.
        ``load_state_dict``, bump the version counter), dtype, device or storage (``.to()``).
        Copies and pickles of the model start with an empty cache.
        """
        sources = (
            self.attention_rnn.weight_ih,
            self.attention_rnn.weight_hh,
            self.decoder_rnn.weight_ih,
            self.decoder_rnn.weight_hh,
        )
        cache = self._fused_cache
        if (
            cache.weights is not None
            and cache.kind == kind
            and all(
                held.data_ptr() == w.data_ptr()
                and held.dtype == w.dtype
                and held.device == w.device
                and held.shape == w.shape
                and version == w._version
                for held, version, w in zip(cache.sources, cache.versions, sources, strict=True)
            )
        ):
            return cache.weights
        cache.weights = None  # free the old layout before building the new one
        att_ih, att_hh, dec_ih, dec_hh = (w.detach() for w in sources)
        h_att = self.attention_rnn_dim
        # Plain tensors (not inference tensors) even when called under torch.inference_mode.
        with torch.inference_mode(False), torch.no_grad():
            fused = (
                _doubled_cell_gate(torch.cat((att_ih, att_hh), dim=1)),
                _doubled_cell_gate(
                    torch.cat((dec_ih[:, h_att:], dec_ih[:, :h_att], dec_hh), dim=1)
                ),
            )
            if kind == "dense":
                weights = tuple(w.t().contiguous() for w in fused)
            else:
                weights = tuple(torch.ops.mkldnn._reorder_linear_weight(w, 8) for w in fused)
        cache.kind = kind
        cache.sources = tuple(w.detach() for w in sources)
        cache.versions = tuple(w._version for w in sources)
        cache.weights = weights
        return weights

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
        still-running flags [B] bool), all in the batch order given.

        ``stop_check_every`` k > 1 asks the host whether every gate fired only every k steps
        (one device sync per k steps instead of per step); the up to k-1 steps decoded past
        the stop are dropped again, so the outputs are the same, only more dropout draws are
        consumed.

        ``stop_at_text_end`` (not NVIDIA's rule, off for its voices) makes the stop follow the
        attention as well: a gate counts only once the attention summed over the steps so far
        on the item's last text position reaches ``_TEXT_END_REACHED`` (a gate firing early
        cannot cut a short text off), and an item stops anyway once that sum reaches
        ``_TEXT_END_MAX_DWELL`` (its attention parked on the last position for that many
        steps: a gate that never fires cannot run on to the step limit); the steps counted
        and returned follow the same rule.

        The same computation as ``_step`` (and NVIDIA's decoder), arranged for speed: every
        step works in place in preallocated buffers. The decoder state lives in one row per
        item, ``[prenet | context | attention hidden | decoder hidden | context]``, whose
        slices are each LSTM cell's input (one matmul per cell over its fused [W_ih | W_hh],
        see ``_fused_lstm_weights``) and the input of one matmul giving the mel frames and the
        gate logit together. The location convolution and its dense projection (both linear,
        nothing between them) are folded into one [A, 2·K] matrix applied to the unfolded
        attention weights, and the memory projection is added by that same matmul. Summation
        orders differ from the step-by-step modules by float rounding only; the random draws
        (prenet dropout, and the decoder dropouts in training mode) are the same calls on the
        same shapes in the same order.

        On the CPU only the two LSTM matmuls (megabytes of weights per step) run on the
        caller's intra-op threads (``torch.get_num_threads()``); everything else, all small,
        runs on the calling thread alone (``torch.set_num_threads(1)`` meanwhile, restored on
        return): on a busy CPU every parallel region waits for a descheduled pool thread,
        which costs milliseconds per op.
        """
        pool_threads = torch.get_num_threads() if memory.device.type == "cpu" else 1
        if pool_threads > 1:
            torch.set_num_threads(1)
        try:
            return self._decode(
                memory,
                memory_lengths,
                prenet_dropout,
                max_decoder_steps,
                gate_threshold,
                early_stopping,
                stop_check_every,
                pool_threads,
                stop_at_text_end,
            )
        finally:
            if pool_threads > 1:
                torch.set_num_threads(pool_threads)

    def _decode(
        self,
        memory: torch.Tensor,
        memory_lengths: torch.Tensor,
        prenet_dropout: float,
        max_decoder_steps: int,
        gate_threshold: float,
        early_stopping: bool,
        stop_check_every: int,
        pool_threads: int,
        stop_at_text_end: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``infer``'s work, entered with one intra-op thread; the LSTM matmuls use
        ``pool_threads``."""
        batch, t_in, emb = memory.shape
        device, dtype = memory.device, memory.dtype
        r = self.n_frames_per_step
        n_mel = self.n_mel_channels
        n_out = n_mel * r
        h_att, h_dec = self.attention_rnn_dim, self.decoder_rnn_dim
        check_every = max(1, int(stop_check_every))
        att = self.attention_layer
        prenet_w = [layer.linear_layer.weight for layer in self.prenet.layers]
        n_pre = prenet_w[-1].shape[0]

        # -- per-call weights (small; the big LSTM ones are cached) ----------------------------
        # Several rows: oneDNN's packed matmul is 1.5-2x faster than MKL's for [B <= 16, K] x
        # [K, 4096]; one row: a plain matrix-vector product, as fast as memory allows.
        kind = "dense"
        if batch > 1 and device.type == "cpu" and dtype == torch.float32:
            kind = "onednn" if _onednn_linear_available() else "dense"
        att_w, dec_w = self._fused_lstm_weights(kind)
        att_b = _doubled_cell_gate(self.attention_rnn.bias_ih + self.attention_rnn.bias_hh)
        dec_b = _doubled_cell_gate(self.decoder_rnn.bias_ih + self.decoder_rnn.bias_hh)
        proj_w = torch.cat(
            (self.linear_projection.linear_layer.weight, self.gate_layer.linear_layer.weight)
        )  # [n_out + 1, D + E] over [decoder hidden | context]
        proj_b = torch.cat(
            (self.linear_projection.linear_layer.bias, self.gate_layer.linear_layer.bias)
        )
        conv_w = att.location_layer.location_conv.conv.weight  # [F, 2, K]
        kernel = conv_w.shape[2]
        loc_w = (
            att.location_layer.location_dense.linear_layer.weight.float()
            @ conv_w.flatten(1).float()
        )  # [A, 2 * K]: dense ∘ conv
        loc_w = loc_w.to(dtype)
        attention_dim = loc_w.shape[0]
        # Energies v·tanh(x) are computed as 2v·sigmoid(2x), which differs by the constant
        # sum(v) that softmax ignores: every term inside is doubled (exactly), see _lstm_cell.
        loc_w = loc_w * 2.0
        query_w = att.query_layer.linear_layer.weight * 2.0  # [A, h_att]
        v_w = att.v.linear_layer.weight[0] * 2.0  # [A]
        processed_memory = att.memory_layer(memory).reshape(batch * t_in, attention_dim)
        processed_memory = processed_memory * 2.0
        mask = _padding_mask(memory_lengths, t_in)  # [B, T_in]
        padded = bool(mask.any())

        # -- state buffers and their fixed views ---------------------------------------------
        state = memory.new_zeros(batch, n_pre + emb + h_att + h_dec + emb)
        o_ctx, o_att = n_pre, n_pre + emb
        o_dec = o_att + h_att
        o_ctx2 = o_dec + h_dec
        prenet_slot = state[:, :n_pre]
        ctx_slot, ctx2_slot = state[:, o_ctx:o_att], state[:, o_ctx2:]
        att_h, dec_h = state[:, o_att:o_dec], state[:, o_dec:o_ctx2]
        att_in, dec_in, proj_in = state[:, :o_dec], state[:, o_ctx:o_ctx2], state[:, o_dec:]
        att_c = memory.new_zeros(batch, h_att)
        dec_c = memory.new_zeros(batch, h_dec)
        att_gates = memory.new_empty(batch, 4 * h_att)
        dec_gates = memory.new_empty(batch, 4 * h_dec)
        scratch_att = memory.new_empty(batch, h_att)
        scratch_dec = memory.new_empty(batch, h_dec)
        # attention weights (previous, cumulative) zero-padded for the location convolution
        pad = (kernel - 1) // 2
        loc_in = memory.new_zeros(batch, 2, t_in + kernel - 1)
        prev_weights = loc_in[:, 0, pad : pad + t_in]
        cum_weights = loc_in[:, 1, pad : pad + t_in]
        loc_windows = loc_in.unfold(2, kernel, 1).permute(0, 2, 1, 3)  # [B, T_in, 2, K]
        loc_cols = memory.new_empty(batch, t_in, 2, kernel)
        loc_cols_2d = loc_cols.view(batch * t_in, 2 * kernel)
        energy_in = memory.new_empty(batch * t_in, attention_dim)
        energy_in_3d = energy_in.view(batch, t_in, attention_dim)
        query = memory.new_empty(batch, 1, attention_dim)
        query_2d = query.view(batch, attention_dim)
        energies = memory.new_empty(batch * t_in)
        energies_2d = energies.view(batch, t_in)
        context = memory.new_empty(batch, 1, emb)
        context_2d = context.view(batch, emb)
        frame = memory.new_zeros(batch, n_mel)  # go frame
        pre_a = memory.new_empty(batch, n_pre)
        pre_b = memory.new_empty(batch, n_pre)
        att_dropout = self.p_attention_dropout if self.training else 0.0
        dec_dropout = self.p_decoder_dropout if self.training else 0.0

        step_capacity = min(max_decoder_steps, _INITIAL_STEP_CAPACITY)
        out_buf = memory.new_empty(step_capacity, batch, n_out + 1)  # [frames | gate logit]
        align_buf = memory.new_empty(step_capacity, batch, t_in)
        running_buf = torch.empty(step_capacity, dtype=torch.bool, device=device)
        not_finished = torch.ones(batch, dtype=torch.bool, device=device)
        if stop_at_text_end:  # per step: may this item stop here (gate fired, text end seen)
            keep_buf = torch.empty(step_capacity, batch, dtype=torch.bool, device=device)
            last_position = (memory_lengths.to(device) - 1).clamp(min=0).view(batch, 1)
            on_last = memory.new_empty(batch, 1)
        n_steps = checked = 0
        lstm: _PooledMatmuls | _OverlappedMatmuls
        weight_bytes = sum(w.numel() * w.element_size() for w in (att_w, dec_w))
        if (
            kind == "dense"
            and batch == 1
            and pool_threads == 2
            and weight_bytes >= _OVERLAP_MIN_WEIGHT_BYTES
        ):
            lstm = _OverlappedMatmuls(
                (att_w, att_b), (dec_w, dec_b), (state[:, :o_att], ctx_slot, att_h, dec_h)
            )
        else:
            lstm = _PooledMatmuls(
                (att_b, att_in, att_w), (dec_b, dec_in, dec_w), kind, pool_threads
            )
        try:
            while True:
                if n_steps == step_capacity:
                    step_capacity = min(max_decoder_steps, 2 * step_capacity)
                    out_buf, align_buf = (
                        _grow(out_buf, step_capacity),
                        _grow(align_buf, step_capacity),
                    )
                    running_buf = _grow(running_buf, step_capacity)
                    if stop_at_text_end:
                        keep_buf = _grow(keep_buf, step_capacity)
                # prenet -> state[:, :n_pre]
                if prenet_dropout > 0.0:
                    prenet_slot.copy_(self.prenet(frame, prenet_dropout))
                else:
                    torch.mm(frame, prenet_w[0].t(), out=pre_a).relu_()
                    torch.mm(pre_a, prenet_w[1].t(), out=pre_b)
                    torch.clamp(pre_b, min=0.0, out=prenet_slot)
                # attention LSTM cell
                _lstm_cell(lstm.attention_gates(att_gates), att_c, att_h, scratch_att, att_dropout)
                lstm.attention_hidden_ready()
                # location-sensitive attention
                torch.mm(att_h, query_w.t(), out=query_2d)
                loc_cols.copy_(loc_windows)
                torch.addmm(processed_memory, loc_cols_2d, loc_w.t(), out=energy_in)
                energy_in_3d.add_(query).sigmoid_()
                torch.mv(energy_in, v_w, out=energies)
                if padded:
                    energies_2d.masked_fill_(mask, float("-inf"))
                weights = torch.softmax(energies_2d, dim=1)  # [B, T_in]
                prev_weights.copy_(weights)
                cum_weights.add_(weights)
                align_buf[n_steps].copy_(weights)
                torch.bmm(weights.unsqueeze(1), memory, out=context)
                ctx_slot.copy_(context_2d)
                ctx2_slot.copy_(context_2d)
                # decoder LSTM cell, then frames and gate from [decoder hidden | context]
                _lstm_cell(lstm.decoder_gates(dec_gates), dec_c, dec_h, scratch_dec, dec_dropout)
                lstm.decoder_hidden_ready()
                step_out = out_buf[n_steps]
                torch.addmm(proj_b, proj_in, proj_w.t(), out=step_out)
                n_steps += 1
                if early_stopping or stop_at_text_end:
                    keep_going = torch.le(torch.sigmoid(step_out[:, n_out]), gate_threshold)
                if stop_at_text_end:
                    torch.gather(cum_weights, 1, last_position, out=on_last)
                    keep_going.logical_or_(on_last[:, 0] < _TEXT_END_REACHED)
                    keep_going.logical_and_(on_last[:, 0] < _TEXT_END_MAX_DWELL)
                    keep_buf[n_steps - 1] = keep_going
                if early_stopping:
                    not_finished.logical_and_(keep_going)
                    if check_every == 1:
                        if not bool(not_finished.any()):
                            break
                    else:
                        torch.any(not_finished, dim=0, out=running_buf[n_steps - 1])
                        if n_steps % check_every == 0 or n_steps == max_decoder_steps:
                            done = (~running_buf[checked:n_steps]).nonzero()
                            if done.numel():
                                n_steps = checked + int(done[0, 0]) + 1
                                break
                            checked = n_steps
                if n_steps == max_decoder_steps:
                    break
                frame = step_out[:, n_out - n_mel : n_out]  # last frame of this step
        finally:
            lstm.close()
        outputs = out_buf[:n_steps]  # [S, B, n_out + 1]
        gates = outputs[:, :, n_out]  # [S, B]
        # steps before each item's gate first fired (DLE's running count), from all gates
        if stop_at_text_end:
            keep = keep_buf[:n_steps].to(torch.int32)
        else:
            keep = torch.le(torch.sigmoid(gates), gate_threshold).to(torch.int32)
        running = torch.cumprod(keep, dim=0)  # [S, B]
        step_lengths = running.sum(dim=0, dtype=torch.int32)
        mel = outputs[:, :, :n_out].transpose(0, 1).reshape(batch, n_steps * r, n_mel)
        return (
            mel.transpose(1, 2),
            gates.transpose(0, 1),
            align_buf[:n_steps].transpose(0, 1),
            step_lengths,
            running[-1].bool(),
        )


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
        _validate_config(cfg)
        self._config = cfg
        self.mask_padding = bool(cfg["mask_padding"])
        self.n_mel_channels = int(cfg["n_mel_channels"])
        self.n_frames_per_step = int(cfg["n_frames_per_step"])
        # Run-time settings for infer(); callers may change them between calls.
        self.prenet_dropout: float = 0.5
        self.max_decoder_steps: int = int(cfg["max_decoder_steps"])
        self.gate_threshold: float = float(cfg["gate_threshold"])
        self.early_stopping: bool = not bool(cfg["decoder_no_early_stopping"])
        self.stop_at_text_end: bool = False  # see Decoder.infer; not NVIDIA's rule
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
            frame_pad = _padding_mask(out_lengths, mel.shape[2])  # [B, T]
            step_pad = _padding_mask(
                torch.div(out_lengths + r - 1, r, rounding_mode="floor"), gates.shape[1]
            )
            mel = mel.masked_fill(frame_pad.unsqueeze(1), 0.0)
            mel_post = mel_post.masked_fill(frame_pad.unsqueeze(1), 0.0)
            gates = gates.masked_fill(step_pad, _PADDED_GATE_LOGIT)
        return mel, mel_post, gates, alignments

    # -- inference ----------------------------------------------------------------------------
    @torch.no_grad()
    def infer(
        self, text_ids: torch.Tensor, text_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Free-running synthesis: (mel [B, n_mel, F], mel_lengths [B] int32, alignments [B, S, T]).

        Rows may come in any length order; outputs keep the input order. Internally the batch
        is sorted by decreasing length (a stable sort, so rows already given longest first, as
        DLE requires, keep their order) and decoded as DLE does. The prenet's dropout masks
        (probability ``prenet_dropout``; 0.0 disables it) are drawn per step for that sorted
        batch with the same ``F.dropout`` calls on the same shapes as DLE, so after
        ``torch.manual_seed(s)`` a batch given in DLE's order reproduces NVIDIA's output for
        seed s; for other orders, row i of each mask belongs to the i-th longest item.

        Decoding stops once every item's gate fired (sigmoid(gate) > ``gate_threshold``) when
        ``early_stopping`` is on, else after ``max_decoder_steps`` steps. S is the number of
        steps run and F = S * r frames. mel_lengths[b] counts the FRAMES of the steps before
        item b's gate first fired (the firing step is excluded, as DLE), or S * r if it never
        fired; frames past it are what the decoder computed and callers trim them.
        ``last_hit_max_steps`` (bool [B], input order) then says which items never fired.
        T is max(text_lengths). Nothing is printed or warned.

        ``stop_check_every`` (None: 1 on CPU, 16 on other devices) sets how many steps pass
        between host checks for "every gate fired". With 1 the random stream is consumed
        exactly as DLE consumes it; with k > 1 up to k-1 extra steps are decoded and dropped
        (same outputs, more dropout draws) in exchange for far fewer device syncs.
        """
        text_ids, lengths_cpu = self._check_inputs(text_ids, text_lengths)
        device = text_ids.device
        order = torch.sort(lengths_cpu, descending=True, stable=True).indices
        in_order = bool(torch.equal(order, torch.arange(order.numel())))
        if not in_order:
            text_ids = text_ids[order.to(device)]
            lengths_cpu = lengths_cpu[order]
        max_steps = int(self.max_decoder_steps)
        if max_steps < 1:
            raise SynthesisError("max_decoder_steps must be at least 1")

        embedded = self.embedding(text_ids).transpose(1, 2)  # [B, E_sym, T_in]
        memory = self.encoder(embedded, lengths_cpu, single_threaded_lstm=True)  # [B, T, E]
        mel, _gates, alignments, step_lengths, running = self.decoder.infer(
            memory,
            lengths_cpu.to(device),
            float(self.prenet_dropout),
            max_steps,
            float(self.gate_threshold),
            bool(self.early_stopping),
            self._stop_check_interval(device),
            stop_at_text_end=bool(self.stop_at_text_end),
        )
        mel_post = mel + self.postnet(mel)  # [B, n_mel, F]
        mel_lengths = step_lengths * self.n_frames_per_step
        if not in_order:
            inverse = torch.empty_like(order)
            inverse[order] = torch.arange(order.numel())
            inverse = inverse.to(device)
            mel_post, mel_lengths = mel_post[inverse], mel_lengths[inverse]
            alignments, running = alignments[inverse], running[inverse]
        self.last_hit_max_steps = running
        return mel_post, mel_lengths, alignments

    def _stop_check_interval(self, device: torch.device) -> int:
        if self.stop_check_every is not None:
            return max(1, int(self.stop_check_every))
        return 1 if device.type == "cpu" else _ACCELERATOR_STOP_CHECK_EVERY

    def _check_inputs(
        self, text_ids: torch.Tensor, text_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if text_ids.dim() != 2 or text_lengths.dim() != 1:
            raise TextError("text ids must be [B, T] and lengths [B]")
        if text_ids.shape[0] != text_lengths.shape[0] or text_ids.shape[0] == 0:
            raise TextError("text ids and lengths disagree on the batch size (or it is 0)")
        lengths_cpu = text_lengths.detach().cpu().long()
        if int(lengths_cpu.min()) < 1:
            raise TextError("every text needs at least one symbol id")
        if int(lengths_cpu.max()) > text_ids.shape[1]:
            raise TextError("a text length exceeds the width of the id tensor")
        text_ids = text_ids.long()
        low, high = torch.stack(torch.aminmax(text_ids)).tolist()  # one device sync
        if low < 0 or high >= self.embedding.num_embeddings:
            raise TextError(f"symbol ids must lie in [0, {self.embedding.num_embeddings})")
        return text_ids, lengths_cpu


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


def _padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """[B] lengths -> bool [B, max_len], True at padded positions."""
    positions = torch.arange(max_len, device=lengths.device)
    return positions[None, :] >= lengths[:, None]


class _WeightCache:
    """Holder of ``Decoder._fused_lstm_weights``' cache; copies and pickles start empty
    (oneDNN's packed tensors can be neither copied nor saved)."""

    def __init__(self) -> None:
        self.kind = ""
        self.sources: tuple[torch.Tensor, ...] = ()
        self.versions: tuple[int, ...] = ()
        self.weights: tuple[torch.Tensor, torch.Tensor] | None = None

    def __deepcopy__(self, memo: dict) -> _WeightCache:
        return _WeightCache()

    def __reduce__(self) -> tuple[type, tuple]:
        return (_WeightCache, ())


class _PooledMatmuls:
    """Each LSTM cell's gates as one matmul over its whole input, on the intra-op thread pool.

    The decoder loop runs with one intra-op thread; ``pool_threads`` are switched on for these
    matmuls only (see ``Decoder.infer``). ``kind`` is the weights' layout (see
    ``Decoder._fused_lstm_weights``).
    """

    def __init__(
        self,
        attention: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        decoder: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        kind: str,
        pool_threads: int,
    ) -> None:
        self._att = attention  # (bias, input view, weight)
        self._dec = decoder
        self._kind = kind
        self._pool_threads = pool_threads

    def _matmul(self, operands: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
        bias, x, weight = operands
        if self._pool_threads > 1:
            torch.set_num_threads(self._pool_threads)
        try:
            if self._kind == "dense":
                return torch.addmm(bias, x, weight, out=out)
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
        finally:
            if self._pool_threads > 1:
                torch.set_num_threads(1)

    def attention_gates(self, out: torch.Tensor) -> torch.Tensor:
        return self._matmul(self._att, out)

    def attention_hidden_ready(self) -> None:
        pass

    def decoder_gates(self, out: torch.Tensor) -> torch.Tensor:
        return self._matmul(self._dec, out)

    def decoder_hidden_ready(self) -> None:
        pass

    def close(self) -> None:
        pass


class _OverlappedMatmuls:
    """The LSTM matmuls split by input block, the blocks whose input is already known
    streamed on a second thread while this one computes the rest of the step.

    For one item on two CPU threads. A decoder step is bound by memory bandwidth (the LSTM
    weights, ~71 MB at full size, are read once per step) and one thread alone nearly
    saturates it, so a second thread gains little on a matmul but a lot when it streams
    weights while the first computes the prenet, the attention and the projection, which are
    small, serial and otherwise leave the memory bus idle. Per step:

    - after the decoder cell of step t-1: helper ``W_dec[dec_h] · dec_h(t-1)``; caller:
      projection, prenet, ``W_att[prenet | context] · [prenet | context(t-1)]``, attention cell;
    - after the attention cell: helper ``W_att[att_h] · att_h(t)`` (the attention gates' share
      for step t+1) and half of ``W_dec[att_h] · att_h(t)``; caller: attention, context(t),
      ``W_dec[context] · context(t)``, the other half, then the sum and the decoder cell.

    The same products as one matmul per cell, summed in another order (float rounding only).
    Weights are the dense [K, 4H] layout, whose row blocks are contiguous views.
    """

    def __init__(
        self,
        attention: tuple[torch.Tensor, torch.Tensor],
        decoder: tuple[torch.Tensor, torch.Tensor],
        inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    ) -> None:
        att_w, self._att_b = attention  # [n_x + H_att, 4 H_att] over [prenet | ctx | att_h]
        dec_w, self._dec_b = decoder  # [E + H_att + H_dec, 4 H_dec] over [ctx | att_h | dec_h]
        # views into the decoder state: [prenet | context], context, att hidden, dec hidden
        self._x, self._ctx, self._att_h, self._dec_h = inputs
        n_x, n_ctx, n_att = self._x.shape[1], self._ctx.shape[1], self._att_h.shape[1]
        self._att_w_x, self._att_w_h = att_w[:n_x], att_w[n_x:]
        self._dec_w_ctx = dec_w[:n_ctx]
        split = n_ctx + n_att - int(n_att * _OVERLAP_CALLER_SHARE)
        self._dec_w_att, self._dec_w_dec = dec_w[n_ctx:split], dec_w[n_ctx + n_att :]
        self._dec_w_att_caller = dec_w[split : n_ctx + n_att]
        self._att_h_helper = self._att_h[:, : split - n_ctx]
        self._att_h_caller = self._att_h[:, split - n_ctx :]
        self._att_from_h = torch.mm(self._att_h, self._att_w_h)  # next step's share
        self._dec_from_dec = self._dec_b.new_empty(1, dec_w.shape[1])
        self._dec_from_hidden = self._dec_b.new_empty(1, dec_w.shape[1])
        self._helper = _HelperThread()
        self._helper.submit(self._decoder_hidden_part)

    def _decoder_hidden_part(self) -> None:
        torch.mm(self._dec_h, self._dec_w_dec, out=self._dec_from_dec)

    def _attention_hidden_parts(self) -> None:
        torch.mm(self._att_h, self._att_w_h, out=self._att_from_h)
        torch.addmm(
            self._dec_from_dec, self._att_h_helper, self._dec_w_att, out=self._dec_from_hidden
        )

    def attention_gates(self, out: torch.Tensor) -> torch.Tensor:
        torch.addmm(self._att_b, self._x, self._att_w_x, out=out)
        return out.add_(self._att_from_h)

    def attention_hidden_ready(self) -> None:
        self._helper.wait()
        self._helper.submit(self._attention_hidden_parts)

    def decoder_gates(self, out: torch.Tensor) -> torch.Tensor:
        torch.addmm(self._dec_b, self._ctx, self._dec_w_ctx, out=out)
        out.addmm_(self._att_h_caller, self._dec_w_att_caller)
        self._helper.wait()
        return out.add_(self._dec_from_hidden)

    def decoder_hidden_ready(self) -> None:
        self._helper.submit(self._decoder_hidden_part)

    def close(self) -> None:
        self._helper.close()


class _HelperThread:
    """A background thread running one job at a time for the caller (torch ops release the
    GIL), in the caller's inference mode with gradients off; a job's exception is raised by
    the next ``wait``."""

    def __init__(self) -> None:
        self._go = threading.Event()
        self._done = threading.Event()
        self._job: Callable[[], None] | None = None
        self._error: BaseException | None = None
        self._pending = False
        self._thread = threading.Thread(
            target=self._run,
            args=(torch.is_inference_mode_enabled(),),
            name="ttscli-decoder-matmuls",
            daemon=True,
        )
        self._thread.start()

    def _run(self, inference: bool) -> None:
        with torch.inference_mode(inference), torch.no_grad():
            while True:
                self._go.wait()
                self._go.clear()
                job = self._job
                if job is None:
                    return
                try:
                    job()
                except BaseException as exc:  # handed to the caller by wait()
                    self._error = exc
                self._done.set()

    def submit(self, job: Callable[[], None]) -> None:
        self._job = job
        self._pending = True
        self._go.set()

    def wait(self) -> None:
        self._done.wait()
        self._done.clear()
        self._pending = False
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def close(self) -> None:
        """Wait for a running job (its result and error are dropped) and end the thread."""
        if self._pending:
            self._done.wait()
            self._done.clear()
            self._pending = False
        self._job = None
        self._go.set()
        self._thread.join()


def _onednn_linear_available() -> bool:
    ops = torch.ops.mkldnn
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(ops, "_linear_pointwise")
        and hasattr(ops, "_reorder_linear_weight")
    )


def _doubled_cell_gate(weight: torch.Tensor) -> torch.Tensor:
    """A copy of LSTM gate rows [4H, ...] (or a bias [4H]) with the cell-gate rows times 2."""
    hidden = weight.shape[0] // 4
    doubled = weight.clone()
    doubled[2 * hidden : 3 * hidden] *= 2.0
    return doubled


def _lstm_cell(
    gates: torch.Tensor,
    cell: torch.Tensor,
    hidden_out: torch.Tensor,
    scratch: torch.Tensor,
    dropout: float,
) -> None:
    """LSTMCell's update in place from pre-activation gates whose cell-gate part is doubled.

    tanh(x) is computed as 2·sigmoid(2x) - 1 (equal up to float rounding): with MKL, CPU tanh
    runs in MKL's own thread pool even for a few elements, and on a busy machine waking that
    pool costs milliseconds, several times per decoder step; sigmoid stays on the caller's
    thread for small tensors. ``gates`` [B, 4H] (PyTorch's order: input, forget, cell, output)
    is overwritten, ``cell`` [B, H] updated and the new hidden state written to
    ``hidden_out`` (dropout applied first when ``dropout`` > 0, drawn as F.dropout).
    """
    h = cell.shape[1]
    in_gate, forget_gate = gates[:, :h], gates[:, h : 2 * h]
    cell_gate, out_gate = gates[:, 2 * h : 3 * h], gates[:, 3 * h :]
    gates.sigmoid_()
    cell_gate.mul_(2.0).sub_(1.0)  # tanh of the (undoubled) cell gate
    cell.mul_(forget_gate).addcmul_(in_gate, cell_gate)
    torch.mul(cell, 2.0, out=scratch).sigmoid_().mul_(2.0).sub_(1.0)  # tanh(cell)
    if dropout > 0.0:
        hidden_out.copy_(F.dropout(scratch.mul_(out_gate), dropout, training=True))
    else:
        torch.mul(out_gate, scratch, out=hidden_out)


def _grow(buffer: torch.Tensor, capacity: int) -> torch.Tensor:
    grown = buffer.new_empty(capacity, *buffer.shape[1:])
    grown[: buffer.shape[0]] = buffer
    return grown


def _validate_config(cfg: dict[str, Any]) -> None:
    positive = [k for k, v in cfg.items() if isinstance(v, int) and not isinstance(v, bool)]
    bad = [k for k in positive if k != "max_decoder_steps" and int(cfg[k]) < 1]
    if bad:
        raise CheckpointError(f"Tacotron2 config values must be positive: {', '.join(bad)}")
    for key in ("encoder_kernel_size", "postnet_kernel_size", "attention_location_kernel_size"):
        if int(cfg[key]) % 2 != 1:
            raise CheckpointError(f"Tacotron2 config {key} must be odd, got {cfg[key]}")
    if int(cfg["encoder_embedding_dim"]) % 2:
        raise CheckpointError("Tacotron2 encoder_embedding_dim must be even (bidirectional LSTM)")
    if int(cfg["postnet_n_convolutions"]) < 2:
        raise CheckpointError("Tacotron2 postnet_n_convolutions must be at least 2")


def config_from_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
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


def _strip_module_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if not any("module." in k for k in state_dict):
        return state_dict
    return {k.replace("module.1.", "").replace("module.", ""): v for k, v in state_dict.items()}
