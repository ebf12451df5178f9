"""Channels-last rows: 1-d signals and weight-normed convolution weights as oneDNN runs them fastest.

A signal [B, C, L] runs as [B, C, 1, L] in channels-last memory (a 2-d convolution with kernel
height 1): oneDNN then convolves without reordering data around each call, which in bfloat16
is most of the time a plain 1-d convolution takes.
"""

from __future__ import annotations

import torch
from torch import nn


def as_rows(x: torch.Tensor) -> torch.Tensor:
    """[B, C, L] -> a channels-last [B, C, 1, L] (a 4-d input is returned as it is)."""
    if x.dim() == 4:
        return x
    return x.unsqueeze(2).contiguous(memory_format=torch.channels_last)


def rows_layout(weight: torch.Tensor) -> torch.Tensor:
    """The same weight [a, b, k], stored so that ``weight.unsqueeze(2)`` is channels-last.

    load_state_dict copies into it and ``.to()`` keeps its strides, so the convolutions find
    their weights in oneDNN's layout instead of reordering them on every call.
    """
    return weight.unsqueeze(2).contiguous(memory_format=torch.channels_last).squeeze(2)


class WeightNormed(nn.Module):
    """A convolution's weight as torch.nn.utils.weight_norm keeps it (``weight_g``,
    ``weight_v``, dim 0) until ``remove_weight_norm()`` folds it into a plain ``weight`` in
    rows layout, computed with ``torch._weight_norm`` so that outputs do not change by a bit."""

    @property
    def has_weight_norm(self) -> bool:
        return "weight_v" in self._parameters

    def effective_weight(self) -> torch.Tensor:
        """The convolution weight [a, b, k]."""
        if self.has_weight_norm:
            return torch._weight_norm(self.weight_v, self.weight_g, 0)
        return self.weight

    def remove_weight_norm(self) -> WeightNormed:
        if self.has_weight_norm:
            with torch.no_grad():
                weight = torch._weight_norm(self.weight_v, self.weight_g, 0)
            del self.weight_g
            del self.weight_v
            self.weight = nn.Parameter(rows_layout(weight))
        return self
