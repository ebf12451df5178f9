"""Free-running decoding: DecodeOptions in, DecodeResult out, run by a reusable DecoderInference."""

from __future__ import annotations

import threading
import weakref
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from ttscli.errors import SynthesisError, TextError
from ttscli.pausing import pause_point
from ttscli.tacotron2.fused_lstm import (
    OverlappedMatmuls,
    PooledMatmuls,
    doubled_cell_gate,
    fuse_lstm_weights,
    lstm_cell,
    onednn_linear_available,
)
from ttscli.tacotron2.model import Decoder, Tacotron2, padding_mask
from ttscli.threads import intra_op_threads

__all__ = ["DecodeOptions", "DecodeResult", "DecoderInference", "decode", "inference_for"]

# stop_at_text_end: the attention summed over the steps on the last text position must reach
# _TEXT_END_REACHED before a gate counts; at _TEXT_END_MAX_DWELL the item stops (measured on
# the embedded voice: natural stops at sums of 1.4-7.6; "OK?" fired at 0.06, cutting the
# text; "A" never fired in 3 of 5 runs and ran to the step limit).
_TEXT_END_REACHED = 0.5
_TEXT_END_MAX_DWELL = 12.0
# Initial number of decoder steps the output buffers hold; they double when full.
_INITIAL_STEP_CAPACITY = 256
# On accelerators the host asks whether decoding may stop only every this many steps, so the
# device is not drained on every step; the few extra steps decoded are discarded.
_ACCELERATOR_STOP_CHECK_EVERY = 16
# The LSTM matmuls are overlapped with the rest of the step (OverlappedMatmuls) only for
# weights this large (bytes): smaller ones sit in the CPU's caches, where handing work between
# threads (tens of microseconds per step) costs more than it saves (the embedded voice's
# 5.5 MB: 0.45 ms per step pooled, 0.52 overlapped; NVIDIA's 71 MB: ~1.4x faster).
OVERLAP_MIN_WEIGHT_BYTES = 16 << 20
# integer dtype of each element size, to checksum weights bit for bit (see _bit_sum)
_BITS = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


@dataclass(frozen=True)
class DecodeOptions:
    """How one free-running decode runs; ``DecodeOptions.from_model`` reads a model's defaults.

    - ``prenet_dropout``: the prenet's dropout probability, on at inference as in NVIDIA's
      code (0.0: off);
    - ``max_decoder_steps``: the step limit (at least 1);
    - ``gate_threshold``: an item's gate fires when sigmoid(gate logit) > this;
    - ``early_stopping``: stop once every item's gate fired; off: run ``max_decoder_steps``;
    - ``stop_at_text_end`` (not NVIDIA's rule, off for its voices): a gate counts only once
      the attention summed over the steps so far on the item's last text position reaches
      ``_TEXT_END_REACHED`` (a gate firing early cannot cut a short text off), and an item
      stops anyway once that sum reaches ``_TEXT_END_MAX_DWELL`` (a gate that never fires
      cannot run on to the step limit); the steps counted follow the same rule;
    - ``stop_check_every``: steps between host checks for "every gate fired" (None: 1 on the
      CPU, 16 on accelerators). With 1 the random stream is consumed exactly as NVIDIA's code
      consumes it; with k > 1 up to k-1 extra steps are decoded and dropped (same outputs,
      more dropout draws) in exchange for far fewer device syncs.
    """

    prenet_dropout: float = 0.5
    max_decoder_steps: int = 1000
    gate_threshold: float = 0.5
    early_stopping: bool = True
    stop_at_text_end: bool = False
    stop_check_every: int | None = None

    @classmethod
    def from_model(cls, model: Tacotron2) -> DecodeOptions:
        """The defaults a Tacotron2 carries as attributes (its checkpoint's, or set by hand)."""
        return cls(
            prenet_dropout=float(model.prenet_dropout),
            max_decoder_steps=int(model.max_decoder_steps),
            gate_threshold=float(model.gate_threshold),
            early_stopping=bool(model.early_stopping),
            stop_at_text_end=bool(getattr(model, "stop_at_text_end", False)),
            stop_check_every=getattr(model, "stop_check_every", None),
        )

    def check_interval(self, device: torch.device) -> int:
        """Steps between host checks for "every gate fired" on ``device``."""
        if self.stop_check_every is not None:
            return max(1, int(self.stop_check_every))
        return 1 if device.type == "cpu" else _ACCELERATOR_STOP_CHECK_EVERY


@dataclass(frozen=True)
class DecodeResult:
    """One decode's outputs, in the input's batch order (F = S * r frames for S steps run).

    - ``mel`` [B, n_mel, F]: after the postnet; frames past ``mel_lengths`` are what the
      decoder computed, and callers trim them;
    - ``mel_lengths`` [B] int32: the frames of the steps before the item's gate first fired
      (the firing step excluded, as NVIDIA's), or F if it never fired;
    - ``alignments`` [B, S, T_in]: the attention weights of every step;
    - ``hit_max_steps`` [B] bool: the item's gate never fired.
    """

    mel: torch.Tensor
    mel_lengths: torch.Tensor
    alignments: torch.Tensor
    hit_max_steps: torch.Tensor


@torch.no_grad()
def decode(
    model: Tacotron2,
    text_ids: torch.Tensor,
    text_lengths: torch.Tensor,
    options: DecodeOptions | None = None,
) -> DecodeResult:
    """Free-running synthesis of a batch of symbol ids [B, T] with lengths [B].

    ``options`` None: the model's defaults (``DecodeOptions.from_model``). Nothing is written
    on the model, so callers sharing one (threads, several synthesizers) each get their own
    options and result. Raises ``TextError`` for malformed ids or lengths, ``SynthesisError``
    for a step limit below 1.

    Rows may come in any length order; outputs keep the input order. Internally the batch is
    sorted by decreasing length (a stable sort, so rows already given longest first, as DLE
    requires, keep their order) and decoded as DLE does. The prenet's dropout masks are drawn
    per step for that sorted batch with the same ``F.dropout`` calls on the same shapes as
    DLE, so after ``torch.manual_seed(s)`` a batch given in DLE's order reproduces NVIDIA's
    output for seed s; for other orders, row i of each mask belongs to the i-th longest item.
    Decoding stops once every item's gate fired when ``early_stopping`` is on, else after
    ``max_decoder_steps`` steps. Nothing is printed or warned.
    """
    options = options or DecodeOptions.from_model(model)
    text_ids, lengths_cpu = check_inputs(model, text_ids, text_lengths)
    if int(options.max_decoder_steps) < 1:
        raise SynthesisError("max_decoder_steps must be at least 1")
    device = text_ids.device
    order = torch.sort(lengths_cpu, descending=True, stable=True).indices
    in_order = bool(torch.equal(order, torch.arange(order.numel())))
    if not in_order:
        text_ids = text_ids[order.to(device)]
        lengths_cpu = lengths_cpu[order]
    memory = _encode(model, text_ids, lengths_cpu)  # [B, T, E]
    mel, _gates, alignments, step_lengths, running = inference_for(model.decoder).decode(
        memory, lengths_cpu.to(device), options
    )
    mel_post = mel + model.postnet(mel)  # [B, n_mel, F]
    mel_lengths = step_lengths * model.n_frames_per_step
    if not in_order:
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(order.numel())
        inverse = inverse.to(device)
        mel_post, mel_lengths = mel_post[inverse], mel_lengths[inverse]
        alignments, running = alignments[inverse], running[inverse]
    return DecodeResult(mel_post, mel_lengths, alignments, running)


def check_inputs(
    model: Tacotron2, text_ids: torch.Tensor, text_lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids as int64, lengths on the CPU), or a ``TextError`` saying what is malformed."""
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
    n_symbols = model.embedding.num_embeddings
    if low < 0 or high >= n_symbols:
        raise TextError(f"symbol ids must lie in [0, {n_symbols})")
    return text_ids, lengths_cpu


def _encode(model: Tacotron2, text_ids: torch.Tensor, lengths_cpu: torch.Tensor) -> torch.Tensor:
    """The encoder's memory [B, T, E] for ids sorted longest first.

    Its LSTM (two small matmuls per symbol) runs on one CPU intra-op thread: on a busy CPU
    each of its hundreds of parallel regions would wait for a descheduled pool thread
    (seconds per sentence).
    """
    embedded = model.embedding(text_ids).transpose(1, 2)  # [B, E_sym, T_in]
    convolved = model.encoder.convolve(embedded)  # [B, T_in, E]
    with _cpu_threads(convolved.device, 1):
        return model.encoder.recur(convolved, lengths_cpu)


def _cpu_threads(device: torch.device, count: int) -> AbstractContextManager:
    return intra_op_threads(count) if device.type == "cpu" else nullcontext()


# -- the inference object ---------------------------------------------------------------------
_INFERENCES: weakref.WeakKeyDictionary[Decoder, DecoderInference] = weakref.WeakKeyDictionary()
_INFERENCES_LOCK = threading.Lock()


def inference_for(decoder: Decoder) -> DecoderInference:
    """The ``DecoderInference`` of ``decoder``: built on its first decode, then reused for as
    long as the decoder lives. Copies and unpickled models get their own on first use."""
    with _INFERENCES_LOCK:
        inference = _INFERENCES.get(decoder)
        if inference is None:
            inference = _INFERENCES[decoder] = DecoderInference(decoder)
        return inference


class DecoderInference:
    """A Decoder's fast free-running loop, and what its calls reuse (as whisper's
    ``PyTorchInference`` owns its kv-cache).

    Reused across calls: the two LSTM cells' fused weights (about 71 MB at full size, one
    layout at a time, see ``fuse_lstm_weights``), built on first use and rebuilt whenever the
    decoder's weights change: other tensors (``.to()``, a new dtype, device or storage), or
    new values (in place, e.g. ``load_state_dict``: the version counter moves, or, for
    inference tensors, which have none, a checksum of their bits). The source tensors are
    kept alive with the fused ones, so their storage cannot be reused by new weights.

    Per call: ``_Run`` (buffers, their views, the small per-call weights) and the LSTM
    matmuls (``PooledMatmuls`` on the intra-op threads, or ``OverlappedMatmuls`` and its
    helper thread for one item on two threads), so calls from several threads may overlap.
    The decoder is held weakly (``inference_for`` keys on it), nothing is stored on it.
    """

    def __init__(self, decoder: Decoder) -> None:
        self._decoder = weakref.ref(decoder)
        self._lock = threading.Lock()
        self._kind = ""
        self._sources: tuple[torch.Tensor, ...] = ()
        self._fingerprint: tuple[int, ...] = ()
        self._weights: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def weights_kind(self) -> str:
        """The layout of the fused LSTM weights held ("dense", "onednn"; "" before any)."""
        return self._kind if self._weights is not None else ""

    def lstm_weights(self, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The fused (attention, decoder) LSTM weights in layout ``kind``, current."""
        decoder = self._live_decoder()
        sources = _lstm_sources(decoder)
        with self._lock:
            if self._weights is not None and kind == self._kind and self._unchanged(sources):
                return self._weights
            self._weights = None  # free the old layout before building the new one
            weights = fuse_lstm_weights(decoder.attention_rnn, decoder.decoder_rnn, kind)
            self._kind = kind
            self._sources = tuple(w.detach() for w in sources)
            self._fingerprint = _fingerprint(sources)
            self._weights = weights
            return weights

    def _unchanged(self, sources: tuple[torch.Tensor, ...]) -> bool:
        same_tensors = all(
            held.data_ptr() == w.data_ptr()
            and held.dtype == w.dtype
            and held.device == w.device
            and held.shape == w.shape
            for held, w in zip(self._sources, sources, strict=True)
        )
        return same_tensors and _fingerprint(sources) == self._fingerprint

    def _live_decoder(self) -> Decoder:
        decoder = self._decoder()
        if decoder is None:
            raise RuntimeError("the Decoder of this DecoderInference no longer exists")
        return decoder

    @torch.no_grad()
    def decode(
        self, memory: torch.Tensor, memory_lengths: torch.Tensor, options: DecodeOptions
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decode until every gate fired (or the step limit), without the postnet.

        memory [B, T_in, E], lengths [B] -> (mel [B, n_mel, S*r] (a transposed view), gate
        logits [B, S], alignments [B, S, T_in], steps before each item's gate fired [B] int32,
        still-running flags [B] bool), all in the batch order given.

        The same computation as ``Decoder._step`` (and NVIDIA's decoder), arranged for speed
        (see ``_Run``). On the CPU only the two LSTM matmuls (megabytes of weights per step)
        run on the caller's intra-op threads (``torch.get_num_threads()``); everything else,
        all small, runs on the calling thread alone (one intra-op thread meanwhile, restored
        on return): on a busy CPU every parallel region waits for a descheduled pool thread,
        which costs milliseconds per op.
        """
        pool_threads = torch.get_num_threads() if memory.device.type == "cpu" else 1
        with _cpu_threads(memory.device, 1):
            kind = _weights_kind(memory)
            att_w, dec_w = self.lstm_weights(kind)
            run = _Run(self._live_decoder(), memory, memory_lengths, options)
            lstm = run.lstm_matmuls(att_w, dec_w, kind, pool_threads)
            try:
                while not run.step(lstm):
                    pause_point()  # a more urgent render on another thread may go first
            finally:
                lstm.close()
            return run.outputs()


def _lstm_sources(decoder: Decoder) -> tuple[torch.Tensor, ...]:
    return (
        decoder.attention_rnn.weight_ih,
        decoder.attention_rnn.weight_hh,
        decoder.decoder_rnn.weight_ih,
        decoder.decoder_rnn.weight_hh,
    )


def _fingerprint(sources: tuple[torch.Tensor, ...]) -> tuple[int, ...]:
    """The tensors' version counters; inference tensors have none, so for them a checksum of
    their bits is added (one read of the weights: ~10 ms at full size, one device sync)."""
    versions = tuple(-1 if w.is_inference() else w._version for w in sources)
    inference = [w for w in sources if w.is_inference()]
    if not inference:
        return versions
    return versions + tuple(torch.stack([_bit_sum(w) for w in inference]).tolist())


def _bit_sum(weight: torch.Tensor) -> torch.Tensor:
    """The sum (modulo 2**64) of a tensor's bits read as int64 words, or as integers of its
    element size where its bytes do not split into words."""
    flat = weight.detach().reshape(-1)
    try:
        return flat.view(torch.uint8).view(torch.int64).sum()
    except RuntimeError:  # a size or offset that is not a whole number of words
        return flat.view(_BITS[flat.element_size()]).sum(dtype=torch.int64)


def _weights_kind(memory: torch.Tensor) -> str:
    """Several rows: oneDNN's packed matmul is 1.5-2x faster than MKL's for [B <= 16, K] x
    [K, 4096]; one row: a plain matrix-vector product, as fast as memory allows."""
    batch = memory.shape[0]
    cpu_fp32 = memory.device.type == "cpu" and memory.dtype == torch.float32
    if batch > 1 and cpu_fp32 and onednn_linear_available():
        return "onednn"
    return "dense"


def _grow(buffer: torch.Tensor, capacity: int) -> torch.Tensor:
    grown = buffer.new_empty(capacity, *buffer.shape[1:])
    grown[: buffer.shape[0]] = buffer
    return grown


# -- one call ---------------------------------------------------------------------------------
class _Run:
    """One decode call: setup (``__init__``), ``step`` until it says stop, then ``outputs``.

    Every step works in place in buffers made at setup. The decoder state lives in one row
    per item, ``[prenet | context | attention hidden | decoder hidden | context]``, whose
    slices are each LSTM cell's input (one matmul per cell over its fused [W_ih | W_hh]) and
    the input of one matmul giving the mel frames and the gate logit together. The location
    convolution and its dense projection (both linear, nothing between them) are folded into
    one [A, 2·K] matrix applied to the unfolded attention weights, and the memory projection
    is added by that same matmul. Summation orders differ from the step-by-step modules by
    float rounding only; the random draws (prenet dropout, and the decoder dropouts in
    training mode) are the same calls on the same shapes in the same order.
    """

    def __init__(
        self,
        decoder: Decoder,
        memory: torch.Tensor,
        memory_lengths: torch.Tensor,
        options: DecodeOptions,
    ) -> None:
        self.batch, self.t_in, _ = memory.shape
        self.memory = memory
        self.prenet = decoder.prenet
        self.prenet_dropout = float(options.prenet_dropout)
        self.max_steps = int(options.max_decoder_steps)
        self.gate_threshold = float(options.gate_threshold)
        self.early_stopping = bool(options.early_stopping)
        self.text_end = bool(options.stop_at_text_end)
        self.check_every = options.check_interval(memory.device)
        self.n_mel = decoder.n_mel_channels
        self.r = decoder.n_frames_per_step
        self.n_out = self.n_mel * self.r
        self.att_dropout = decoder.p_attention_dropout if decoder.training else 0.0
        self.dec_dropout = decoder.p_decoder_dropout if decoder.training else 0.0
        self._setup_weights(decoder, memory)
        self._setup_state(decoder, memory)
        self._setup_attention(memory, memory_lengths)
        self._setup_outputs(memory, memory_lengths)

    # -- setup ----------------------------------------------------------------------------------
    def _setup_weights(self, decoder: Decoder, memory: torch.Tensor) -> None:
        """The small per-call weights (the big LSTM ones are the DecoderInference's)."""
        att = decoder.attention_layer
        self.prenet_w = [layer.linear_layer.weight for layer in decoder.prenet.layers]
        self.att_b = doubled_cell_gate(
            decoder.attention_rnn.bias_ih + decoder.attention_rnn.bias_hh
        )
        self.dec_b = doubled_cell_gate(decoder.decoder_rnn.bias_ih + decoder.decoder_rnn.bias_hh)
        self.proj_w = torch.cat(
            (decoder.linear_projection.linear_layer.weight, decoder.gate_layer.linear_layer.weight)
        )  # [n_out + 1, D + E] over [decoder hidden | context]
        self.proj_b = torch.cat(
            (decoder.linear_projection.linear_layer.bias, decoder.gate_layer.linear_layer.bias)
        )
        conv_w = att.location_layer.location_conv.conv.weight  # [F, 2, K]
        self.kernel = conv_w.shape[2]
        loc_w = (
            att.location_layer.location_dense.linear_layer.weight.float()
            @ conv_w.flatten(1).float()
        )  # [A, 2 * K]: dense ∘ conv
        loc_w = loc_w.to(memory.dtype)
        self.attention_dim = loc_w.shape[0]
        # Energies v·tanh(x) are computed as 2v·sigmoid(2x), which differs by the constant
        # sum(v) that softmax ignores: every term inside is doubled (exactly), see lstm_cell.
        self.loc_w = loc_w * 2.0
        self.query_w = att.query_layer.linear_layer.weight * 2.0  # [A, h_att]
        self.v_w = att.v.linear_layer.weight[0] * 2.0  # [A]
        processed = att.memory_layer(memory).reshape(self.batch * self.t_in, self.attention_dim)
        self.processed_memory = processed * 2.0

    def _setup_state(self, decoder: Decoder, memory: torch.Tensor) -> None:
        """The state row and its fixed views, the LSTM cells and their scratch buffers."""
        batch, emb = self.batch, memory.shape[2]
        h_att, h_dec = decoder.attention_rnn_dim, decoder.decoder_rnn_dim
        n_pre = self.prenet_w[-1].shape[0]
        state = memory.new_zeros(batch, n_pre + emb + h_att + h_dec + emb)
        o_ctx, o_att = n_pre, n_pre + emb
        o_dec = o_att + h_att
        o_ctx2 = o_dec + h_dec
        self.prenet_slot = state[:, :n_pre]
        self.ctx_slot, self.ctx2_slot = state[:, o_ctx:o_att], state[:, o_ctx2:]
        self.att_h, self.dec_h = state[:, o_att:o_dec], state[:, o_dec:o_ctx2]
        self.prenet_ctx = state[:, :o_att]  # [prenet | context]
        self.att_in, self.dec_in = state[:, :o_dec], state[:, o_ctx:o_ctx2]
        self.proj_in = state[:, o_dec:]
        self.att_c = memory.new_zeros(batch, h_att)
        self.dec_c = memory.new_zeros(batch, h_dec)
        self.att_gates = memory.new_empty(batch, 4 * h_att)
        self.dec_gates = memory.new_empty(batch, 4 * h_dec)
        self.scratch_att = memory.new_empty(batch, h_att)
        self.scratch_dec = memory.new_empty(batch, h_dec)
        self.frame = memory.new_zeros(batch, self.n_mel)  # go frame
        self.pre_a = memory.new_empty(batch, n_pre)
        self.pre_b = memory.new_empty(batch, n_pre)

    def _setup_attention(self, memory: torch.Tensor, memory_lengths: torch.Tensor) -> None:
        """Attention weights (previous, cumulative) zero-padded for the location convolution,
        and the buffers of the energies and the context."""
        batch, t_in, kernel, dim = self.batch, self.t_in, self.kernel, self.attention_dim
        pad = (kernel - 1) // 2
        loc_in = memory.new_zeros(batch, 2, t_in + kernel - 1)
        self.prev_weights = loc_in[:, 0, pad : pad + t_in]
        self.cum_weights = loc_in[:, 1, pad : pad + t_in]
        self.loc_windows = loc_in.unfold(2, kernel, 1).permute(0, 2, 1, 3)  # [B, T_in, 2, K]
        self.loc_cols = memory.new_empty(batch, t_in, 2, kernel)
        self.loc_cols_2d = self.loc_cols.view(batch * t_in, 2 * kernel)
        self.energy_in = memory.new_empty(batch * t_in, dim)
        self.energy_in_3d = self.energy_in.view(batch, t_in, dim)
        self.query = memory.new_empty(batch, 1, dim)
        self.query_2d = self.query.view(batch, dim)
        self.energies = memory.new_empty(batch * t_in)
        self.energies_2d = self.energies.view(batch, t_in)
        self.context = memory.new_empty(batch, 1, memory.shape[2])
        self.context_2d = self.context.view(batch, memory.shape[2])
        self.mask = padding_mask(memory_lengths, t_in)  # [B, T_in]
        self.padded = bool(self.mask.any())

    def _setup_outputs(self, memory: torch.Tensor, memory_lengths: torch.Tensor) -> None:
        """Per-step output buffers (grown by doubling) and the stopping rule's state."""
        device, batch = memory.device, self.batch
        self.capacity = min(self.max_steps, _INITIAL_STEP_CAPACITY)
        self.out_buf = memory.new_empty(self.capacity, batch, self.n_out + 1)  # [frames | gate]
        self.align_buf = memory.new_empty(self.capacity, batch, self.t_in)
        self.running_buf = torch.empty(self.capacity, dtype=torch.bool, device=device)
        self.not_finished = torch.ones(batch, dtype=torch.bool, device=device)
        if self.text_end:  # per step: may this item stop here (gate fired, text end seen)
            self.keep_buf = torch.empty(self.capacity, batch, dtype=torch.bool, device=device)
            self.last_position = (memory_lengths.to(device) - 1).clamp(min=0).view(batch, 1)
            self.on_last = memory.new_empty(batch, 1)
        self.n_steps = self.checked = 0

    def lstm_matmuls(
        self, att_w: torch.Tensor, dec_w: torch.Tensor, kind: str, pool_threads: int
    ) -> PooledMatmuls | OverlappedMatmuls:
        """The LSTM cells' matmuls for this run: overlapped with the rest of the step for one
        item on two threads and weights too large for the caches, else pooled."""
        weight_bytes = sum(w.numel() * w.element_size() for w in (att_w, dec_w))
        if (
            kind == "dense"
            and self.batch == 1
            and pool_threads == 2
            and weight_bytes >= OVERLAP_MIN_WEIGHT_BYTES
        ):
            return OverlappedMatmuls(
                (att_w, self.att_b),
                (dec_w, self.dec_b),
                (self.prenet_ctx, self.ctx_slot, self.att_h, self.dec_h),
            )
        return PooledMatmuls(
            (self.att_b, self.att_in, att_w), (self.dec_b, self.dec_in, dec_w), kind, pool_threads
        )

    # -- one step -------------------------------------------------------------------------------
    def step(self, lstm: PooledMatmuls | OverlappedMatmuls) -> bool:
        """Decode one step into the output buffers; True when decoding is over."""
        if self.n_steps == self.capacity:
            self._grow()
        self._prenet()
        lstm_cell(
            lstm.attention_gates(self.att_gates),
            self.att_c,
            self.att_h,
            self.scratch_att,
            self.att_dropout,
        )
        lstm.attention_hidden_ready()
        self._attend()
        # decoder LSTM cell, then frames and gate from [decoder hidden | context]
        lstm_cell(
            lstm.decoder_gates(self.dec_gates),
            self.dec_c,
            self.dec_h,
            self.scratch_dec,
            self.dec_dropout,
        )
        lstm.decoder_hidden_ready()
        step_out = self.out_buf[self.n_steps]
        torch.addmm(self.proj_b, self.proj_in, self.proj_w.t(), out=step_out)
        self.n_steps += 1
        if self._stops(step_out):
            return True
        self.frame = step_out[:, self.n_out - self.n_mel : self.n_out]  # last frame of the step
        return False

    def _grow(self) -> None:
        self.capacity = min(self.max_steps, 2 * self.capacity)
        self.out_buf = _grow(self.out_buf, self.capacity)
        self.align_buf = _grow(self.align_buf, self.capacity)
        self.running_buf = _grow(self.running_buf, self.capacity)
        if self.text_end:
            self.keep_buf = _grow(self.keep_buf, self.capacity)

    def _prenet(self) -> None:
        """prenet(frame) -> the state row's prenet slot."""
        if self.prenet_dropout > 0.0:
            self.prenet_slot.copy_(self.prenet(self.frame, self.prenet_dropout))
            return
        first, second = self.prenet_w
        torch.mm(self.frame, first.t(), out=self.pre_a).relu_()
        torch.mm(self.pre_a, second.t(), out=self.pre_b)
        torch.clamp(self.pre_b, min=0.0, out=self.prenet_slot)

    def _attend(self) -> None:
        """Location-sensitive attention: new weights (kept for the outputs) and context."""
        torch.mm(self.att_h, self.query_w.t(), out=self.query_2d)
        self.loc_cols.copy_(self.loc_windows)
        torch.addmm(self.processed_memory, self.loc_cols_2d, self.loc_w.t(), out=self.energy_in)
        self.energy_in_3d.add_(self.query).sigmoid_()
        torch.mv(self.energy_in, self.v_w, out=self.energies)
        if self.padded:
            self.energies_2d.masked_fill_(self.mask, float("-inf"))
        weights = torch.softmax(self.energies_2d, dim=1)  # [B, T_in]
        self.prev_weights.copy_(weights)
        self.cum_weights.add_(weights)
        self.align_buf[self.n_steps].copy_(weights)
        torch.bmm(weights.unsqueeze(1), self.memory, out=self.context)
        self.ctx_slot.copy_(self.context_2d)
        self.ctx2_slot.copy_(self.context_2d)

    def _stops(self, step_out: torch.Tensor) -> bool:
        """The stopping rule after step ``n_steps``; may move ``n_steps`` back to the first
        step after which every item had stopped (deferred host checks)."""
        n_steps = self.n_steps
        if self.early_stopping or self.text_end:
            keep_going = torch.le(torch.sigmoid(step_out[:, self.n_out]), self.gate_threshold)
        if self.text_end:
            torch.gather(self.cum_weights, 1, self.last_position, out=self.on_last)
            keep_going.logical_or_(self.on_last[:, 0] < _TEXT_END_REACHED)
            keep_going.logical_and_(self.on_last[:, 0] < _TEXT_END_MAX_DWELL)
            self.keep_buf[n_steps - 1] = keep_going
        if self.early_stopping and self._all_stopped(keep_going):
            return True
        return self.n_steps == self.max_steps

    def _all_stopped(self, keep_going: torch.Tensor) -> bool:
        self.not_finished.logical_and_(keep_going)
        if self.check_every == 1:
            return not bool(self.not_finished.any())
        n_steps = self.n_steps
        torch.any(self.not_finished, dim=0, out=self.running_buf[n_steps - 1])
        if n_steps % self.check_every == 0 or n_steps == self.max_steps:
            done = (~self.running_buf[self.checked : n_steps]).nonzero()
            if done.numel():
                self.n_steps = self.checked + int(done[0, 0]) + 1
                return True
            self.checked = n_steps
        return False

    # -- outputs --------------------------------------------------------------------------------
    def outputs(
        self,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mel [B, n_mel, S*r], gate logits [B, S], alignments [B, S, T_in], steps before each
        item's gate first fired [B] int32, still-running flags [B] bool)."""
        n_steps, n_out = self.n_steps, self.n_out
        outputs = self.out_buf[:n_steps]  # [S, B, n_out + 1]
        gates = outputs[:, :, n_out]  # [S, B]
        # steps before each item's gate first fired (DLE's running count), from all gates
        if self.text_end:
            keep = self.keep_buf[:n_steps].to(torch.int32)
        else:
            keep = torch.le(torch.sigmoid(gates), self.gate_threshold).to(torch.int32)
        running = torch.cumprod(keep, dim=0)  # [S, B]
        step_lengths = running.sum(dim=0, dtype=torch.int32)
        mel = (
            outputs[:, :, :n_out].transpose(0, 1).reshape(self.batch, n_steps * self.r, self.n_mel)
        )
        return (
            mel.transpose(1, 2),
            gates.transpose(0, 1),
            self.align_buf[:n_steps].transpose(0, 1),
            step_lengths,
            running[-1].bool(),
        )
