"""Options shared by `say` and `batch`, and turning them into a voice and a config."""

from __future__ import annotations

import functools
import math
import re
import time

import click

from ..config import DEVICE_NAMES, PRECISION_NAMES, RANGES
from ..errors import TTSError


class FiniteRange(click.FloatRange):
    """A float range that also refuses NaN (which compares false with both bounds)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if number != number:
            self.fail(f"{value!r} is not a number.", param, ctx)
        return number


def ranged(name: str) -> click.ParamType:
    """The option type of setting ``name``: its range from ``ttscli.config.RANGES``."""
    limits = RANGES[name]
    high = None if math.isinf(limits.high) else limits.high
    if limits.kind is int:
        return click.IntRange(min=int(limits.low), max=None if high is None else int(high))
    return FiniteRange(limits.low, high, max_open=limits.high_open)


def span(name: str) -> str:
    """Setting ``name``'s range for a help text ("0-10")."""
    return RANGES[name].span()


class DeviceType(click.ParamType):
    """auto, cpu, cuda or cuda:N (whether this machine has that GPU is checked when loading)."""

    name = "device"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "[" + "|".join(DEVICE_NAMES) + "|cuda:N]"

    def convert(self, value, param, ctx):
        if value in DEVICE_NAMES or re.fullmatch(r"cuda:\d+", str(value)):
            return value
        self.fail(f"{value!r} is not one of {', '.join(DEVICE_NAMES)} or cuda:N.", param, ctx)


class VocoderType(click.ParamType):
    """griffin-lim, or an existing vocoder file or jik876 folder (what it holds is read later)."""

    name = "vocoder"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "PATH|griffin-lim"

    def convert(self, value, param, ctx):
        from pathlib import Path

        if value == "griffin-lim" or Path(value).exists():
            return value
        self.fail(f"{value!r} is neither griffin-lim nor an existing file or folder.", param, ctx)


def no_dash(why: str):
    """A callback refusing "-" (standard input/output) for a path that must name a file or folder."""

    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value == "-":
            raise click.BadParameter(f"'-' cannot be used here: {why}", ctx, param)
        return value

    return check


# Voice, device, precision and per-call synthesis options, in the order --help lists them
_SYNTHESIS_OPTIONS = (
    click.option(
        "--voice",
        envvar="TTSCLI_VOICE",
        show_envvar=True,
        metavar="NAME|DIR",
        help="Voice name (see `ttscli voices`) or voice folder. "
        "Default: NVIDIA's when installed, else the embedded ttscli-en.",
    ),
    click.option(
        "--tacotron2",
        "tacotron2_path",
        type=click.Path(exists=True, dir_okay=False),
        help="Tacotron2 checkpoint in any supported format (DLE, NVIDIA/tacotron2, ttscli).",
    ),
    click.option(
        "--vocoder",
        "--waveglow",
        "vocoder",
        type=VocoderType(),
        envvar="TTSCLI_VOCODER",
        show_envvar=True,
        help="Vocoder: a WaveGlow or HiFi-GAN checkpoint (what the file holds decides), a "
        "jik876 HiFi-GAN folder (LJ_FT_T2_V2/), or griffin-lim. With --voice it replaces the "
        "voice's vocoder. --waveglow is its former name.",
    ),
    click.option(
        "--device",
        type=DeviceType(),
        default="auto",
        show_default=True,
        envvar="TTSCLI_DEVICE",
        show_envvar=True,
        help="auto uses CUDA when available; cuda:N picks a GPU.",
    ),
    click.option(
        "--precision",
        type=click.Choice(PRECISION_NAMES),
        default="fp32",
        show_default=True,
        envvar="TTSCLI_PRECISION",
        show_envvar=True,
        help="fp16 needs CUDA; bf16 runs the vocoder (WaveGlow, HiFi-GAN) in bfloat16 (fast "
        "on CPUs with native bfloat16).",
    ),
    click.option(
        "--sigma",
        type=ranged("sigma"),
        help=f"WaveGlow noise scale ({span('sigma')}). Default: the voice's (NVIDIA's: 0.6). "
        "WaveGlow voices only.",
    ),
    click.option(
        "--denoise",
        "denoiser_strength",
        type=ranged("denoiser_strength"),
        metavar="STRENGTH",
        help=f"Denoiser strength, {span('denoiser_strength')} (0 disables it). Default: the "
        "voice's (NVIDIA's: 0.01 with WaveGlow, 0.005 with HiFi-GAN; jik876's HiFi-GAN: 0). "
        "WaveGlow and HiFi-GAN only.",
    ),
    click.option(
        "--seed",
        type=ranged("seed"),
        envvar="TTSCLI_SEED",
        show_envvar=True,
        help="Seed for repeatable output (a non-negative integer): the same seed, input and "
        "batch size give the same audio.",
    ),
    click.option(
        "--max-decoder-steps",
        type=ranged("max_decoder_steps"),
        envvar="TTSCLI_MAX_DECODER_STEPS",
        show_envvar=True,
        help="Longest sentence, in decoder steps; longer text is split into pieces. "
        "Default: the voice's (NVIDIA's: 2000).",
    ),
    click.option(
        "--batch-size",
        type=ranged("batch_size"),
        envvar="TTSCLI_BATCH_SIZE",
        show_envvar=True,
        help="Sentences rendered together. Default: the voice's (NVIDIA's: 4).",
    ),
    click.option(
        "--pause",
        "pause_seconds",
        type=ranged("pause_seconds"),
        metavar="SECONDS",
        help=f"Silence between sentences ({span('pause_seconds')}). Default: the voice's (NVIDIA's: 0.3). "
        "A sentence under 20 characters is spoken together with the next one.",
    ),
    click.option(
        "-v", "--verbose", is_flag=True, help="Say which voice and files are used, and timings."
    ),
    click.option("-q", "--quiet", is_flag=True, help="No progress bar (errors are still shown)."),
)


def synthesis_options(func):
    """Voice, device, precision and per-call synthesis options (each with a TTSCLI_* envvar)."""
    for option in reversed(_SYNTHESIS_OPTIONS):
        func = option(func)
    return func


def _warn_unused_vocoder_options(params: dict, voice) -> None:
    from ..vocoders import HiFiGANVocoder, WaveGlowVocoder

    if isinstance(voice.vocoder, WaveGlowVocoder):
        return
    options = [("--sigma", "sigma")]
    if not isinstance(voice.vocoder, HiFiGANVocoder):
        options.append(("--denoise", "denoiser_strength"))
    unused = [flag for flag, key in options if params.get(key) is not None]
    if unused:
        click.echo(
            f"Warning: {' and '.join(unused)} {'change' if len(unused) > 1 else 'changes'} "
            f"nothing for voice {voice.name!r}: "
            f"it has no WaveGlow ({type(voice.vocoder).__name__})",
            err=True,
        )


def build_synthesizer(params: dict):
    """Load the voice and make a Synthesizer from the CLI's synthesis options."""
    from ..errors import ConfigError, UnknownVoiceError
    from ..synthesizer import Synthesizer
    from ..voices import load_voice

    started = time.perf_counter()
    try:
        voice = load_voice(
            params["voice"], params["tacotron2_path"], params["vocoder"], device=params["device"]
        )
        synth = Synthesizer(voice, synthesis_config(params))
    except UnknownVoiceError as exc:  # a mistyped name: a usage error (exit 2)
        raise click.BadParameter(str(exc), param_hint="'--voice'") from exc
    except ConfigError as exc:  # an option this machine cannot honour (exit 2)
        raise click.UsageError(str(exc)) from exc
    _warn_unused_vocoder_options(params, voice)
    if params["verbose"]:
        click.echo(f"voice: {voice.name} ({type(voice.vocoder).__name__})", err=True)
        if voice.chosen_because:
            click.echo(f"  chosen as the default voice: {voice.chosen_because}", err=True)
        for role, path in voice.files.items():
            click.echo(f"  {role}: {path}", err=True)
        click.echo(
            f"device: {synth.device}, precision: {params['precision']}, "
            f"batch size: {synth.batch_size}, loaded in {time.perf_counter() - started:.2f} s",
            err=True,
        )
    return synth


def synthesis_config(params: dict):
    """The SynthesisConfig named by the CLI's synthesis options."""
    from ..synthesizer import SynthesisConfig

    return SynthesisConfig(
        sigma=params["sigma"],
        denoiser_strength=params["denoiser_strength"],
        max_decoder_steps=params["max_decoder_steps"],
        seed=params["seed"],
        device=params["device"],
        precision=params["precision"],
        batch_size=params["batch_size"],
        pause_seconds=params["pause_seconds"],
    )


def handle_errors(func):
    """Turn ttscli errors raised inside a command into one-line Click errors."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except TTSError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper
