"""HiFi-GAN generator (any config, residual blocks "1" and "2") and its bias-spectrum Denoiser."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ttscli.denoiser import BiasDenoiser
from ttscli.errors import ConfigError
from ttscli.rows import WeightNormed, as_rows, rows_layout

__all__ = ["CONFIG_KEYS", "Denoiser", "HiFiGAN", "HIFIGAN_V1_CONFIG", "vocode_by_length"]

# Slope of every LeakyReLU inside the generator; the one before conv_post uses torch's 0.01.
_LRELU_SLOPE = 0.1
_LRELU_SLOPE_POST = 0.01
# Dilations a residual block of each type uses (the first ones given; both references do so).
_DILATIONS_USED = {"1": 3, "2": 2}
# Frames of zero log-mel whose audio defines the denoiser's bias spectrum (NVIDIA's number).
_DENOISER_BIAS_FRAMES = 88

# The config keys the generator is built from (NVIDIA's and jik876's names).
CONFIG_KEYS = (
    "resblock",
    "upsample_rates",
    "upsample_kernel_sizes",
    "upsample_initial_channel",
    "resblock_kernel_sizes",
    "resblock_dilation_sizes",
)

# The torch.hub `nvidia_hifigan` generator (jik876's V1 layout, 512 initial channels).
HIFIGAN_V1_CONFIG: dict[str, Any] = {
    "resblock": "1",
    "upsample_rates": [8, 8, 2, 2],
    "upsample_kernel_sizes": [16, 16, 4, 4],
    "upsample_initial_channel": 512,
    "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
}


class _Conv(WeightNormed):
    """A 1-d convolution (or transposed convolution) with optional weight norm (dim 0).

    Parameters are ``bias`` and ``weight`` [out, in, k] ([in, out, k] transposed), or
    ``bias``, ``weight_g`` and ``weight_v`` (the keys torch.nn.utils.weight_norm writes) until
    ``remove_weight_norm()`` folds them. It runs on signals [B, C, 1, L] in channels-last
    memory, as a 2-d convolution with kernel height 1: oneDNN then needs no layout copies
    around each convolution (in bfloat16 that is most of the time a 1-d convolution takes).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        padding: int = 0,
        transposed: bool = False,
        weight_norm: bool = False,
    ) -> None:
        super().__init__()
        self.transposed = transposed
        self.stride = stride
        self.dilation = dilation
        self.padding = padding
        shape = (
            (in_channels, out_channels, kernel_size)
            if transposed
            else (out_channels, in_channels, kernel_size)
        )
        weight = torch.empty(shape)
        nn.init.normal_(weight, 0.0, 0.01)  # both references' init_weights
        self.bias = nn.Parameter(torch.zeros(out_channels))
        if weight_norm:
            norm = torch.linalg.vector_norm(weight, dim=(1, 2), keepdim=True)
            self.weight_g = nn.Parameter(norm)
            self.weight_v = nn.Parameter(weight)
        else:
            self.weight = nn.Parameter(rows_layout(weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # [B, in, 1, L] -> [B, out, 1, L'] (channels-last in, channels-last out)
        weight = self.effective_weight().unsqueeze(2)  # [.., .., 1, k]
        if self.transposed:
            return F.conv_transpose2d(x, weight, self.bias, (1, self.stride), (0, self.padding))
        return F.conv2d(
            x, weight, self.bias, (1, self.stride), (0, self.padding), (1, self.dilation)
        )

    def _pointwise_args(self) -> tuple[torch.Tensor, torch.Tensor, list[int], list[int], list[int]]:
        return self._weight_2d(), self.bias, [0, self.padding], [1, self.stride], [1, self.dilation]

    def _weight_2d(self) -> torch.Tensor:
        """The weight as [.., .., 1, k]: channels-last (no reorder per call) once folded."""
        return self.effective_weight().unsqueeze(2)

    def conv_leaky_relu(self, x: torch.Tensor, slope: float) -> torch.Tensor:
        """leaky_relu(conv(x)), in one oneDNN call where it can."""
        if _can_fuse(x) and not self.transposed:
            return _MKLDNN.conv_pointwise(x, *self._pointwise_args(), 1, "leaky_relu", [slope], "")
        return F.leaky_relu_(self(x), slope)

    def conv_add(self, x: torch.Tensor, other: torch.Tensor, in_place: bool) -> torch.Tensor:
        """conv(x) + other, in one oneDNN call where it can; ``in_place`` overwrites ``other``."""
        same_form = other.dtype == x.dtype and other.is_contiguous(
            memory_format=torch.channels_last
        )
        if _can_fuse(x) and not self.transposed and same_form:
            args = self._pointwise_args()
            if in_place:
                return _MKLDNN.conv_add_(other, x, *args, 1, "add", 1.0, None, [], None)
            return _MKLDNN.conv_add(x, other, *args, 1, "add", 1.0, None, [], None)
        return self(x).add_(other)


class _MKLDNN:
    """oneDNN convolutions with fused post-ops (torch's own, as torch.compile uses them on CPUs)."""

    ops = getattr(torch.ops, "mkldnn", None)
    try:
        conv_pointwise = ops._convolution_pointwise.default
        conv_add = ops._convolution_pointwise.binary
        conv_add_ = ops._convolution_pointwise_.binary
        available = True
    except (AttributeError, RuntimeError):
        available = False


def _can_fuse(x: torch.Tensor) -> bool:
    """Fused oneDNN ops for inference on CPU float32/bfloat16 channels-last signals."""
    return (
        _MKLDNN.available
        and x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.bfloat16)
        and not torch.is_grad_enabled()
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
        and x.is_contiguous(memory_format=torch.channels_last)
    )


def _same_padding(kernel_size: int, dilation: int) -> int:
    return (kernel_size * dilation - dilation) // 2


class _ResBlock1(nn.Module):
    """Three pairs (dilated conv, then conv with dilation 1), each pair adding its input back.

    Only the first three dilations are used, as in both reference implementations.
    """

    def __init__(self, channels: int, kernel_size: int, dilations: Sequence[int], wn: bool) -> None:
        super().__init__()

        def conv(d: int) -> _Conv:
            pad = _same_padding(kernel_size, d)
            return _Conv(channels, channels, kernel_size, dilation=d, padding=pad, weight_norm=wn)

        used = dilations[: _DILATIONS_USED["1"]]
        self.convs1 = nn.ModuleList(conv(d) for d in used)
        self.convs2 = nn.ModuleList(conv(1) for _ in used)

    def forward(self, x: torch.Tensor, activated: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, C, 1, L] -> [B, C, 1, L]; ``activated`` is leaky_relu(x, 0.1) if known."""
        for i, (c1, c2) in enumerate(zip(self.convs1, self.convs2, strict=True)):
            a = activated if i == 0 and activated is not None else F.leaky_relu(x, _LRELU_SLOPE)
            y = c1.conv_leaky_relu(a, _LRELU_SLOPE)
            x = c2.conv_add(y, x, in_place=i > 0)  # the block's input is shared: not overwritten
        return x


class _ResBlock2(nn.Module):
    """Two dilated convs (the first two dilations), each adding its input back (jik876's V3)."""

    def __init__(self, channels: int, kernel_size: int, dilations: Sequence[int], wn: bool) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            _Conv(
                channels,
                channels,
                kernel_size,
                dilation=d,
                padding=_same_padding(kernel_size, d),
                weight_norm=wn,
            )
            for d in dilations[: _DILATIONS_USED["2"]]
        )

    def forward(self, x: torch.Tensor, activated: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, C, 1, L] -> [B, C, 1, L]; ``activated`` is leaky_relu(x, 0.1) if known."""
        for i, conv in enumerate(self.convs):
            a = activated if i == 0 and activated is not None else F.leaky_relu(x, _LRELU_SLOPE)
            x = conv.conv_add(a, x, in_place=i > 0)
        return x


def _int_list(value: Any, name: str) -> list[int]:
    try:
        out = [int(v) for v in value]
    except (TypeError, ValueError):
        raise ConfigError(f"HiFi-GAN {name} must be a list of integers, got {value!r}") from None
    if not out or any(v < 1 for v in out):
        raise ConfigError(f"HiFi-GAN {name} must be positive integers, got {value!r}")
    return out


class HiFiGAN(nn.Module):
    """HiFi-GAN generator: mel [B, n_mel, T] -> audio [B, 1, T · hop] in [-1, 1].

    Keys are NVIDIA's nested layout (``resblocks.<stage>.<kernel>.``). Built with
    ``weight_norm=True`` it holds ``weight_g``/``weight_v`` pairs as the training code did;
    ``remove_weight_norm()`` folds them (loaders build it folded).
    """

    def __init__(
        self,
        resblock: str | int = "1",
        upsample_rates: Sequence[int] = (8, 8, 2, 2),
        upsample_kernel_sizes: Sequence[int] = (16, 16, 4, 4),
        upsample_initial_channel: int = 512,
        resblock_kernel_sizes: Sequence[int] = (3, 7, 11),
        resblock_dilation_sizes: Sequence[Sequence[int]] = ((1, 3, 5), (1, 3, 5), (1, 3, 5)),
        n_mel_channels: int = 80,
        weight_norm: bool = False,
    ) -> None:
        super().__init__()
        rates = _int_list(upsample_rates, "upsample_rates")
        kernels = _int_list(upsample_kernel_sizes, "upsample_kernel_sizes")
        block_kernels = _int_list(resblock_kernel_sizes, "resblock_kernel_sizes")
        dilations = [_int_list(d, "resblock_dilation_sizes") for d in resblock_dilation_sizes]
        channels = int(upsample_initial_channel)
        kind = str(resblock)
        self._check(kind, rates, kernels, block_kernels, dilations, channels)
        self.config: dict[str, Any] = {
            "resblock": kind,
            "upsample_rates": rates,
            "upsample_kernel_sizes": kernels,
            "upsample_initial_channel": channels,
            "resblock_kernel_sizes": block_kernels,
            "resblock_dilation_sizes": dilations,
            "n_mel_channels": int(n_mel_channels),
        }
        wn = weight_norm
        self.conv_pre = _Conv(int(n_mel_channels), channels, 7, padding=3, weight_norm=wn)
        block = _ResBlock1 if kind == "1" else _ResBlock2
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, (rate, kernel) in enumerate(zip(rates, kernels, strict=True)):
            c_in, c_out = channels >> i, channels >> (i + 1)
            self.ups.append(
                _Conv(
                    c_in,
                    c_out,
                    kernel,
                    stride=rate,
                    padding=(kernel - rate) // 2,
                    transposed=True,
                    weight_norm=wn,
                )
            )
            self.resblocks.append(
                nn.ModuleList(
                    block(c_out, k, d, wn) for k, d in zip(block_kernels, dilations, strict=True)
                )
            )
        self.conv_post = _Conv(channels >> len(rates), 1, 7, padding=3, weight_norm=wn)

    @staticmethod
    def _check(
        kind: str,
        rates: list[int],
        kernels: list[int],
        block_kernels: list[int],
        dilations: list[list[int]],
        channels: int,
    ) -> None:
        if kind not in ("1", "2"):
            raise ConfigError(f"HiFi-GAN resblock must be '1' or '2', got {kind!r}")
        if len(rates) != len(kernels):
            raise ConfigError(
                f"HiFi-GAN has {len(rates)} upsample_rates but {len(kernels)} upsample_kernel_sizes"
            )
        if any(k < r for k, r in zip(kernels, rates, strict=True)):
            raise ConfigError(
                f"HiFi-GAN upsample kernels {kernels} must not be shorter than their rates {rates}"
            )
        if len(block_kernels) != len(dilations):
            raise ConfigError(
                f"HiFi-GAN has {len(block_kernels)} resblock_kernel_sizes but "
                f"{len(dilations)} resblock_dilation_sizes"
            )
        if any(k % 2 == 0 for k in block_kernels):
            raise ConfigError(f"HiFi-GAN resblock kernels must be odd, got {block_kernels}")
        needed = _DILATIONS_USED[kind]
        if any(len(d) < needed for d in dilations):
            raise ConfigError(
                f"HiFi-GAN resblock {kind!r} takes {needed} dilations each, got {dilations}"
            )
        if channels >> len(rates) < 1 or channels % (1 << len(rates)):
            raise ConfigError(
                f"HiFi-GAN upsample_initial_channel {channels} does not halve {len(rates)} times"
            )

    @property
    def hop_length(self) -> int:
        """Audio samples per mel frame (the product of the upsample rates)."""
        hop = 1
        for rate in self.config["upsample_rates"]:
            hop *= rate
        return hop

    @property
    def n_mel_channels(self) -> int:
        return self.config["n_mel_channels"]

    def remove_weight_norm(self) -> HiFiGAN:
        """Fold every weight_g/weight_v pair into a plain weight (outputs unchanged)."""
        for module in self.modules():
            if isinstance(module, _Conv):
                module.remove_weight_norm()
        return self

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """mel [B, n_mel, T] -> audio [B, 1, T · hop_length]."""
        x = as_rows(mel)  # [B, n_mel, 1, T]
        x = self.conv_pre(x)
        for up, blocks in zip(self.ups, self.resblocks, strict=True):
            x = up(F.leaky_relu_(x, _LRELU_SLOPE))
            activated = F.leaky_relu(x, _LRELU_SLOPE)  # every block starts with it
            total = blocks[0](x, activated)
            for block in blocks[1:]:
                total = total.add_(block(x, activated))
            x = total.div_(len(blocks))
        x = self.conv_post(F.leaky_relu_(x, _LRELU_SLOPE_POST))  # [B, 1, 1, T · hop]
        return torch.tanh_(x).squeeze(2).contiguous()


class Denoiser(BiasDenoiser):
    """NVIDIA's HiFi-GAN denoiser: the bias is the model's audio for a zero log-mel [1, n_mel, 88].

    ``denoiser(audio, strength)`` takes audio [B, T] or [B, 1, T] and returns float32 audio of
    the same shape. NVIDIA's example uses strength 0.005 with HiFi-GAN; its default is 0.1.
    """

    def __init__(
        self,
        hifigan: HiFiGAN,
        filter_length: int = 1024,
        n_overlap: int = 4,
        win_length: int = 1024,
        mode: str = "zeros",
    ) -> None:
        reference = hifigan.conv_pre.bias
        shape = (1, hifigan.n_mel_channels, _DENOISER_BIAS_FRAMES)
        bias_mel = self.bias_input(shape, mode, reference)
        with torch.no_grad():
            bias_audio = hifigan(bias_mel)[:, 0].float()  # [1, 88 · hop]
        super().__init__(bias_audio, filter_length, n_overlap, win_length)

    def forward(self, audio: torch.Tensor, strength: float = 0.1) -> torch.Tensor:
        if audio.dim() == 3 and audio.size(1) == 1:
            return super().forward(audio[:, 0], strength)[:, None]
        return super().forward(audio, strength)


def vocode_by_length(
    model: nn.Module, mels: Sequence[torch.Tensor], max_batch: int | None = None
) -> list[torch.Tensor]:
    """Vocode mels [n_mel, T_i] of any lengths; returns audio [T_i · hop] for each, in order.

    A HiFi-GAN's receptive field spans many frames, so a padded batch changes the audio near
    each item's end. Items are batched only with others of the same length (no padding), at
    most ``max_batch`` at a time, which gives exactly the audio of one at a time.
    """
    by_length: dict[int, list[int]] = {}
    for index, mel in enumerate(mels):
        by_length.setdefault(mel.size(-1), []).append(index)
    out: list[torch.Tensor | None] = [None] * len(mels)
    step = max_batch or len(mels) or 1
    with torch.no_grad():
        for indices in by_length.values():
            for start in range(0, len(indices), step):
                chunk = indices[start : start + step]
                audio = model(torch.stack([mels[i] for i in chunk]))  # [b, 1, T · hop]
                for row, index in enumerate(chunk):
                    out[index] = audio[row, 0]
    return [a for a in out if a is not None]
