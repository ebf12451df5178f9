"""The decoder's two LSTM cells as one fused matmul each: weights, cell update, matmul threads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn
from torch.nn import functional as F

from ttscli.threads import IntraOpThreads

__all__ = [
    "HelperThread",
    "OverlappedMatmuls",
    "PooledMatmuls",
    "doubled_cell_gate",
    "fuse_lstm_weights",
    "lstm_cell",
    "onednn_linear_available",
]

# Share of W_dec[att_h] · att_h the decoding thread computes itself when the LSTM matmuls are
# overlapped (see OverlappedMatmuls): it balances the two threads (measured: 0 -> 1.8x the
# reference per decoder step, 0.5 -> 2.0x, 0.75 and 1.0 no better).
OVERLAP_CALLER_SHARE = 0.5


def fuse_lstm_weights(
    attention_rnn: nn.LSTMCell, decoder_rnn: nn.LSTMCell, kind: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each LSTM cell's input and hidden weights side by side, for one matmul per cell.

    Attention cell: [W_ih | W_hh] over its input [prenet | context | attention hidden].
    Decoder cell: W_ih's column blocks swapped, then W_hh, over [context | attention hidden
    | decoder hidden] (the order those sit in the decoding state row). The cell-gate rows are
    doubled (exact in floating point) for ``lstm_cell``'s tanh through sigmoid. ``kind``
    picks the layout: "dense" [K, 4H] contiguous for ``torch.addmm`` (a matrix-vector
    product streams that layout fastest), "onednn" oneDNN's packed layout for
    ``_linear_pointwise`` (tuned for 8 rows). In the weights' dtype and device; plain tensors
    (not inference tensors) even when called under ``torch.inference_mode``.
    """
    att_ih, att_hh = attention_rnn.weight_ih.detach(), attention_rnn.weight_hh.detach()
    dec_ih, dec_hh = decoder_rnn.weight_ih.detach(), decoder_rnn.weight_hh.detach()
    h_att = attention_rnn.hidden_size
    with torch.inference_mode(False), torch.no_grad():
        fused = (
            doubled_cell_gate(torch.cat((att_ih, att_hh), dim=1)),
            doubled_cell_gate(torch.cat((dec_ih[:, h_att:], dec_ih[:, :h_att], dec_hh), dim=1)),
        )
        if kind == "dense":
            return tuple(w.t().contiguous() for w in fused)
        return tuple(torch.ops.mkldnn._reorder_linear_weight(w, 8) for w in fused)


class PooledMatmuls:
    """Each LSTM cell's gates as one matmul over its whole input, on the intra-op thread pool.

    The decoding loop runs with one intra-op thread; ``pool_threads`` are switched on for these
    matmuls only. ``kind`` is the weights' layout (see ``fuse_lstm_weights``).
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
        self._pool: AbstractContextManager
        # only the CPU has intra-op threads to switch (the loop runs with one meanwhile)
        self._pool = IntraOpThreads(pool_threads) if pool_threads > 1 else nullcontext()

    def _matmul(self, operands: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
        bias, x, weight = operands
        with self._pool:
            if self._kind == "dense":
                return torch.addmm(bias, x, weight, out=out)
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")

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


class OverlappedMatmuls:
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
        split = n_ctx + n_att - int(n_att * OVERLAP_CALLER_SHARE)
        self._dec_w_att, self._dec_w_dec = dec_w[n_ctx:split], dec_w[n_ctx + n_att :]
        self._dec_w_att_caller = dec_w[split : n_ctx + n_att]
        self._att_h_helper = self._att_h[:, : split - n_ctx]
        self._att_h_caller = self._att_h[:, split - n_ctx :]
        self._att_from_h = torch.mm(self._att_h, self._att_w_h)  # next step's share
        self._dec_from_dec = self._dec_b.new_empty(1, dec_w.shape[1])
        self._dec_from_hidden = self._dec_b.new_empty(1, dec_w.shape[1])
        self._helper = HelperThread()
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


class HelperThread:
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


def onednn_linear_available() -> bool:
    ops = torch.ops.mkldnn
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(ops, "_linear_pointwise")
        and hasattr(ops, "_reorder_linear_weight")
    )


def doubled_cell_gate(weight: torch.Tensor) -> torch.Tensor:
    """A copy of LSTM gate rows [4H, ...] (or a bias [4H]) with the cell-gate rows times 2."""
    hidden = weight.shape[0] // 4
    doubled = weight.clone()
    doubled[2 * hidden : 3 * hidden] *= 2.0
    return doubled


def lstm_cell(
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
