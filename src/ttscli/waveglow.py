"""WaveGlow vocoder and its bias-spectrum Denoiser, with NVIDIA DeepLearningExamples' keys and numbers."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ttscli.denoiser import BiasDenoiser
from ttscli.errors import CheckpointError, SynthesisError
from ttscli.rows import WeightNormed, as_rows

__all__ = [
    "DEFAULT_CONFIG",
    "Denoiser",
    "Invertible1x1Conv",
    "WN",
    "WaveGlow",
    "WeightNormConv1d",
]

# torch.hub `nvidia_waveglow` default config (the hub checkpoints use WN n_channels 512; NGC's
# waveglow256pyt files use 256).
DEFAULT_CONFIG: dict[str, Any] = {
    "n_mel_channels": 80,
    "n_flows": 12,
    "n_group": 8,
    "n_early_every": 4,
    "n_early_size": 2,
    "WN_config": {"n_layers": 8, "kernel_size": 3, "n_channels": 512},
}

# Frames of zero log-mel (linear amplitude 1, not silence) whose audio defines the denoiser's
# bias spectrum, as in NVIDIA's Denoiser.
_DENOISER_BIAS_FRAMES = 88


class WeightNormConv1d(WeightNormed):
    """Conv1d with weight = g · v / ‖v‖ per output channel (torch's weight_norm, dim 0).

    Parameters are registered as ``bias``, ``weight_g``, ``weight_v``, the keys and order of
    torch.nn.utils.weight_norm. ``remove_weight_norm()`` folds them into a plain ``weight``
    (after ``bias``) computed with ``torch._weight_norm``, so outputs do not change by a bit.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        dilation: int = 1,
        padding: int = 0,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.padding = padding
        plain = nn.Conv1d(in_channels, out_channels, kernel_size)  # torch's default init
        self.bias = nn.Parameter(plain.bias.detach().clone())  # [out]
        weight = plain.weight.detach()  # [out, in, kernel]
        self.weight_g = nn.Parameter(torch.linalg.vector_norm(weight, dim=(1, 2), keepdim=True))
        self.weight_v = nn.Parameter(weight.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # [B, in, L] -> [B, out, L] (with "same" padding for odd kernels)
        return F.conv1d(
            x, self.effective_weight(), self.bias, padding=self.padding, dilation=self.dilation
        )

    def forward_rows(self, x: torch.Tensor) -> torch.Tensor:
        """The same convolution on channels-last rows: [B, in, 1, L] -> [B, out, 1, L].

        oneDNN convolves channels-last data without reordering it, and keeps its output so:
        on a CPU this is ~1.3x faster than `forward` in float32 and ~4x in bfloat16.
        """
        weight = self.effective_weight().unsqueeze(2)
        return F.conv2d(
            x, weight, self.bias, padding=(0, self.padding), dilation=(1, self.dilation)
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"dilation={self.dilation}, padding={self.padding}, weight_norm={self.has_weight_norm}"
        )


class Invertible1x1Conv(nn.Module):
    """WaveGlow's invertible channel mixing: z -> W z, with W [c, c] kept at ``conv.weight``.

    The inverse used by ``infer`` is computed in float32 (LU, as torch.inverse), cast to the
    weight's dtype and cached; the cache is rebuilt whenever the weight changes (new values,
    dtype or device), so it never goes stale.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size=1, bias=False)
        # a random orthogonal matrix with determinant +1 (made on the CPU, so that building the
        # model on the meta device also works)
        weight = torch.linalg.qr(torch.randn(channels, channels, device="cpu"))[0]
        if torch.det(weight) < 0:
            weight[:, 0] = -weight[:, 0]
        with torch.no_grad():
            self.conv.weight.copy_(weight[:, :, None])
        self._inverse: torch.Tensor | None = None
        self._inverse_source: torch.Tensor | None = None
        self._inverse_version = -1

    def _inverse_is_current(self) -> bool:
        # The source is kept alive, so its storage cannot be reused by new weights; any
        # in-place change (load_state_dict, optimiser step) bumps the version counter.
        weight = self.conv.weight
        source = self._inverse_source
        if weight.is_inference():  # no version counter: recompute (a c x c inverse is cheap)
            return False
        return (
            source is not None
            and source.data_ptr() == weight.data_ptr()
            and source.dtype == weight.dtype
            and source.device == weight.device
            and self._inverse_version == weight._version
        )

    def inverse_weight(self) -> torch.Tensor:
        """W⁻¹ as a conv1d weight [c, c, 1] in the weight's dtype, computed in float32."""
        if self._inverse is None or not self._inverse_is_current():
            weight = self.conv.weight
            with torch.no_grad():
                inverse = torch.inverse(weight.detach().squeeze(-1).float())
                self._inverse = inverse[:, :, None].to(weight.dtype)
            self._inverse_source = weight.detach()
            self._inverse_version = -1 if weight.is_inference() else weight._version
        return self._inverse

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z [B, c, L] -> (W z [B, c, L], B · L · log|det W| as a float32 0-d tensor)."""
        batch, _, groups = z.shape
        log_det = batch * groups * torch.logdet(self.conv.weight.squeeze(-1).float())
        return self.conv(z), log_det

    def reverse(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, c, L] -> W⁻¹ z [B, c, L]."""
        return F.conv1d(z, self.inverse_weight())


class WN(nn.Module):
    """WaveNet-like affine-coupling network: (a0 [B, h, L], cond [B, n_cond, L]) -> [B, 2h, L].

    Dilated tanh·sigmoid layers (dilation 2^i) with per-layer conditioning; the first half of
    each residual/skip output updates the residual stream, the second half (all of the last
    layer's output) is summed into the skip output that ``end`` maps to (b, log s).
    """

    def __init__(
        self,
        n_in_channels: int,
        n_cond_channels: int,
        n_layers: int,
        n_channels: int,
        kernel_size: int,
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise CheckpointError(f"WN kernel_size must be odd, got {kernel_size}")
        if n_channels % 2 != 0:
            raise CheckpointError(f"WN n_channels must be even, got {n_channels}")
        self.n_layers = n_layers
        self.n_channels = n_channels
        # registration order gives DLE's key order: in_layers, res_skip_layers, cond_layers,
        # start, end
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        self.cond_layers = nn.ModuleList()
        for i in range(n_layers):
            dilation = 2**i
            padding = (kernel_size * dilation - dilation) // 2
            self.in_layers.append(
                WeightNormConv1d(n_channels, 2 * n_channels, kernel_size, dilation, padding)
            )
            out_channels = 2 * n_channels if i < n_layers - 1 else n_channels
            self.res_skip_layers.append(WeightNormConv1d(n_channels, out_channels))
            self.cond_layers.append(WeightNormConv1d(n_cond_channels, 2 * n_channels))
        self.start = WeightNormConv1d(n_in_channels, n_channels)
        # zero-initialised, so that an untrained flow starts as the identity
        self.end = nn.Conv1d(n_channels, 2 * n_in_channels, kernel_size=1)
        nn.init.zeros_(self.end.weight)
        nn.init.zeros_(self.end.bias)

    def forward(self, audio: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """audio [B, h, L], cond [B, n_cond, L] -> [B, 2h, L] (b first, then log s).

        Computed on channels-last rows (`as_rows`); cond may be given as such rows already
        ([B, n_cond, 1, L]), which saves converting it once per flow.
        """
        inplace = not torch.is_grad_enabled()
        n_channels = self.n_channels
        cond = as_rows(cond)
        x = self.start.forward_rows(as_rows(audio))  # [B, C, 1, L]
        output = None
        for i in range(self.n_layers):
            t = self.in_layers[i].forward_rows(x)
            t = (
                t.add_(self.cond_layers[i].forward_rows(cond))
                if inplace
                else t + (self.cond_layers[i].forward_rows(cond))
            )  # [B, 2C, 1, L]
            acts = torch.tanh(t[:, :n_channels]) * torch.sigmoid(t[:, n_channels:])
            res_skip = self.res_skip_layers[i].forward_rows(acts)  # [B, 2C, 1, L] ([B, C..] last)
            if i < self.n_layers - 1:
                x = x.add_(res_skip[:, :n_channels]) if inplace else res_skip[:, :n_channels] + x
                skip = res_skip[:, n_channels:]
            else:
                skip = res_skip
            if output is None:
                output = skip.clone() if inplace else skip  # clone keeps the channels-last rows
            elif inplace:
                output.add_(skip)
            else:
                output = output + skip
        end = F.conv2d(output, self.end.weight.unsqueeze(2), self.end.bias)
        return end.squeeze(2)


class WaveGlow(nn.Module):
    """WaveGlow (Prenger et al. 2018): log-mel [B, n_mel, frames] -> audio [B, frames · 256].

    Module tree and state-dict keys are those of NVIDIA DeepLearningExamples' WaveGlow (the
    torch.hub ``nvidia_waveglow`` model), so its checkpoints load with strict=True.
    """

    def __init__(
        self,
        n_mel_channels: int,
        n_flows: int,
        n_group: int,
        n_early_every: int,
        n_early_size: int,
        WN_config: dict[str, int],  # NVIDIA's keyword name
        alternate_halves: bool = False,
    ) -> None:
        super().__init__()
        if n_group % 2 != 0:
            raise CheckpointError(f"n_group must be even, got {n_group}")
        self._config = {
            "n_mel_channels": n_mel_channels,
            "n_flows": n_flows,
            "n_group": n_group,
            "n_early_every": n_early_every,
            "n_early_size": n_early_size,
            "WN_config": dict(WN_config),
        }
        if alternate_halves:
            self._config["alternate_halves"] = True
        # NVIDIA/waveglow's glow_old.WaveGlow: odd flows transform the first half of the
        # channels, conditioned on the second (every other model: always the second half)
        self.alternate_halves = bool(alternate_halves)
        self.n_mel_channels = n_mel_channels
        self.n_flows = n_flows
        self.n_group = n_group
        self.n_early_every = n_early_every
        self.n_early_size = n_early_size
        # [B, n_mel, frames] -> [B, n_mel, (frames − 1) · 256 + 1024]
        self.upsample = nn.ConvTranspose1d(n_mel_channels, n_mel_channels, 1024, stride=256)
        self.WN = nn.ModuleList()
        self.convinv = nn.ModuleList()
        n_half = n_group // 2
        n_remaining = n_group  # channels still in the flow (early outputs leave it)
        for k in range(n_flows):
            if k % n_early_every == 0 and k > 0:
                n_half -= n_early_size // 2
                n_remaining -= n_early_size
                if n_remaining < 2 or n_remaining % 2:
                    # NVIDIA's code cannot run these either: halves of unequal or no size
                    raise CheckpointError(
                        f"n_group {n_group} less n_early_size {n_early_size} every "
                        f"{n_early_every} flows leaves {n_remaining} channels at flow {k} "
                        "(must stay even and at least 2)"
                    )
            self.convinv.append(Invertible1x1Conv(n_remaining))
            self.WN.append(
                WN(
                    n_half,
                    n_mel_channels * n_group,
                    WN_config["n_layers"],
                    WN_config["n_channels"],
                    WN_config["kernel_size"],
                )
            )
        self.n_remaining_channels = n_remaining

    @property
    def config(self) -> dict[str, Any]:
        """The constructor's keyword arguments (a copy)."""
        return copy.deepcopy(self._config)

    @property
    def hop_length(self) -> int:
        return self.upsample.stride[0]

    def _group_condition(self, spect: torch.Tensor) -> torch.Tensor:
        """Upsampled mel [B, n_mel, T] -> [B, n_mel · n_group, T / n_group], contiguous.

        Channel index = mel_channel · n_group + j, j = position of the sample in its group.
        """
        batch = spect.size(0)
        spect = spect.unfold(2, self.n_group, self.n_group)  # [B, n_mel, L, group]
        spect = spect.permute(0, 2, 1, 3).reshape(batch, spect.size(2), -1)  # [B, L, n_mel·g]
        return spect.transpose(1, 2).contiguous()  # [B, n_mel · group, L]

    def _upsampled_condition(self, mel: torch.Tensor) -> torch.Tensor:
        spect = self.upsample(mel)  # [B, n_mel, (frames − 1) · hop + kernel]
        cutoff = self.upsample.kernel_size[0] - self.upsample.stride[0]
        return spect[:, :, : spect.size(2) - cutoff]  # [B, n_mel, frames · hop]

    def forward(
        self, mel: torch.Tensor, audio: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Training direction: (mel [B, n_mel, frames], audio [B, T]) -> (z, log_s list, logdet list).

        z is [B, n_group, T / n_group] with the early outputs first; log_s per flow is
        [B, h_k, T / n_group]; each log-determinant is B · L · log|det W_k| (float32, 0-d).
        """
        spect = self.upsample(mel)
        if spect.size(2) < audio.size(1):
            raise SynthesisError(
                f"mel of {mel.size(2)} frames is too short for {audio.size(1)} audio samples"
            )
        spect = self._group_condition(spect[:, :, : audio.size(1)])
        audio = audio.unfold(1, self.n_group, self.n_group).permute(0, 2, 1)  # [B, group, L]
        early_outputs = []
        log_s_list = []
        log_det_list = []
        for k in range(self.n_flows):
            if k % self.n_early_every == 0 and k > 0:
                early_outputs.append(audio[:, : self.n_early_size])
                audio = audio[:, self.n_early_size :]
            audio, log_det = self.convinv[k](audio)
            log_det_list.append(log_det)
            audio_0, audio_1 = self._split(k, audio)
            n_half = audio_0.size(1)
            output = self.WN[k](audio_0, spect)  # [B, 2h, L]
            log_s = output[:, n_half:]
            b = output[:, :n_half]
            audio_1 = torch.exp(log_s) * audio_1 + b
            log_s_list.append(log_s)
            audio = self._join(k, audio_0, audio_1)
        early_outputs.append(audio)
        return torch.cat(early_outputs, dim=1), log_s_list, log_det_list

    @torch.no_grad()
    def infer(self, mel: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
        """log-mel [B, n_mel, frames] -> audio [B, frames · 256] in the model's dtype.

        Noise comes from the global generator on mel's device, drawn in float32 and cast:
        randn(B, n_remaining, L) first, then randn(B, n_early_size, L) at each early-output
        flow from the last down (L = frames · 256 / n_group); draws happen even at sigma 0,
        so torch.manual_seed reproduces NVIDIA's audio.
        """
        if mel.dim() != 3 or mel.size(1) != self.n_mel_channels:
            raise SynthesisError(
                f"expected mel [batch, {self.n_mel_channels}, frames], got {tuple(mel.shape)}"
            )
        mel = mel.to(self.upsample.weight.dtype)
        spect = self._group_condition(self._upsampled_condition(mel))  # [B, n_mel · g, L]
        batch, _, groups = spect.shape
        rows = as_rows(spect)  # converted once for all flows
        dtype = spect.dtype
        noise = torch.randn(batch, self.n_remaining_channels, groups, device=spect.device)
        audio = sigma * noise.to(dtype)  # [B, n_remaining, L]
        for k in reversed(range(self.n_flows)):
            audio_0, audio_1 = self._split(k, audio)
            n_half = audio_0.size(1)
            output = self.WN[k](audio_0, rows)  # [B, 2h, L]
            b = output[:, :n_half]
            log_s = output[:, n_half:]
            audio_1 = (audio_1 - b) / torch.exp(log_s)
            audio = self.convinv[k].reverse(self._join(k, audio_0, audio_1))
            if k % self.n_early_every == 0 and k > 0:
                z = torch.randn(batch, self.n_early_size, groups, device=spect.device)
                audio = torch.cat([sigma * z.to(dtype), audio], dim=1)
        return audio.permute(0, 2, 1).reshape(batch, -1)  # [B, L · n_group]

    def _split(self, k: int, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Flow k's channels [B, 2h, L] -> (conditioning half, transformed half), [B, h, L] each."""
        n_half = audio.size(1) // 2
        first, second = audio[:, :n_half], audio[:, n_half:]
        return (second, first) if self.alternate_halves and k % 2 else (first, second)

    def _join(self, k: int, audio_0: torch.Tensor, audio_1: torch.Tensor) -> torch.Tensor:
        """Inverse of `_split`: the halves back in flow k's channel order, [B, 2h, L]."""
        if self.alternate_halves and k % 2:
            return torch.cat([audio_1, audio_0], dim=1)
        return torch.cat([audio_0, audio_1], dim=1)

    def remove_weightnorm(self) -> WaveGlow:
        """Fold weight norm into plain weights (bit-identical outputs, faster); returns self."""
        for module in self.modules():
            if isinstance(module, WeightNormConv1d):
                module.remove_weight_norm()
        return self


class Denoiser(BiasDenoiser):
    """NVIDIA's WaveGlow denoiser: subtracts the spectrum of the model's bias from the audio.

    At construction the WaveGlow renders a zero log-mel [1, n_mel, 88] at sigma 0 (drawing its
    usual noise from the global generator, as NVIDIA's does); the STFT magnitude of the first
    frame of that audio, [1, n_freqs, 1], is the bias. The STFT and the bias are float32.
    ``denoiser(audio [B, T], strength=0.01)`` -> float32 audio [B, T] (see ``BiasDenoiser``).
    """

    def __init__(
        self,
        waveglow: WaveGlow,
        filter_length: int = 1024,
        n_overlap: int = 4,
        win_length: int = 1024,
        mode: str = "zeros",
    ) -> None:
        reference = waveglow.upsample.weight
        shape = (1, waveglow.n_mel_channels, _DENOISER_BIAS_FRAMES)
        bias_mel = self.bias_input(shape, mode, reference)
        with torch.no_grad():
            bias_audio = waveglow.infer(bias_mel, sigma=0.0).float()  # [1, 88 · 256]
        super().__init__(bias_audio, filter_length, n_overlap, win_length)
