"""Settings in one place: voice defaults, per-call SynthesisConfig, and the one table of ranges.

``RANGES`` is what every value a user gives is checked against: ``SynthesisConfig`` (Python
callers), voice.json (``ttscli.voices``) and the command line's option types
(``ttscli.cli.options``), so the three agree. This module imports neither torch nor click.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import ConfigError

PRECISION_NAMES = ("fp32", "fp16", "bf16")
DEVICE_NAMES = ("auto", "cpu", "cuda")  # and cuda:N


@dataclass(frozen=True)
class Range:
    """The values a setting takes: a type (int or float) and bounds (``high_open``: below high)."""

    kind: type
    low: float
    high: float = math.inf
    high_open: bool = False

    def type_problem(self, value: object, whole_floats: bool = False) -> str | None:
        """Why ``value`` is not of this type (None if it is); ``whole_floats``: 4.0 is an int."""
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and self.kind is int and not isinstance(value, int):
            number = whole_floats and math.isfinite(value) and float(value).is_integer()
        if number and math.isfinite(value):
            return None
        return "must be an integer" if self.kind is int else "must be a number"

    def bound_problem(self, value: float) -> str | None:
        """Why ``value`` is out of range (None if it is within)."""
        if value < self.low:
            return "must not be negative" if self.low == 0 else f"must be at least {self.low:g}"
        if self.high_open and value >= self.high:
            return f"must be below {self.high:g}"
        if value > self.high:
            return f"must be at most {self.high:g}"
        return None

    def span(self) -> str:
        """The range for help texts: "0-10", "at least 1", "0 to below 1"."""
        if math.isinf(self.high):
            return f"at least {self.low:g}"
        if self.high_open:
            return f"{self.low:g} to below {self.high:g}"
        return f"{self.low:g}-{self.high:g}"


RANGES: dict[str, Range] = {
    "sigma": Range(float, 0.0, 10.0),  # WaveGlow's noise scale; NVIDIA uses 0.6-1.0
    "denoiser_strength": Range(float, 0.0, 1.0),
    "max_decoder_steps": Range(int, 1),
    "gate_threshold": Range(float, 0.0, 1.0),
    "prenet_dropout": Range(float, 0.0, 1.0, high_open=True),  # a probability; 1 drops all
    "seed": Range(int, 0, 2**63 - 1),
    "batch_size": Range(int, 1),
    "pause_seconds": Range(float, 0.0, 60.0),
    "max_edge_silence_seconds": Range(float, 0.0),
    "max_chars": Range(int, 1),
    "fixed_decoder_steps": Range(int, 1),
    "speed": Range(float, 0.25, 4.0),  # speaking rate: each mel is time-scaled before the vocoder
    "sample_rate": Range(int, 1),  # voice.json: the voice's rate in Hz
    "griffin_lim.n_iter": Range(int, 1),
    "griffin_lim.momentum": Range(float, 0.0, 1.0, high_open=True),
}


def check_value(name: str, value: object, whole_floats: bool = False) -> str | None:
    """Why ``value`` cannot be setting ``name`` (per ``RANGES``), or None when it can."""
    limits = RANGES[name]
    problem = limits.type_problem(value, whole_floats)
    return problem or limits.bound_problem(value)  # type: ignore[arg-type]


@dataclass
class VoiceDefaults:
    """A voice's own defaults for the options a SynthesisConfig may override."""

    sigma: float = 0.6
    denoiser_strength: float = 0.01
    max_decoder_steps: int = 2000
    gate_threshold: float = 0.5
    prenet_dropout: float = 0.5
    pause_seconds: float = 0.3
    batch_size: int = 4
    # decoding may stop only once the attention reached the text's end (Decoder.infer)
    stop_at_text_end: bool = False
    # quiet audio kept at each end of a sentence (inf: all of it, as NVIDIA's code)
    max_edge_silence_seconds: float = math.inf


@dataclass
class SynthesisConfig:
    """Per-call options; None means the voice's default. Values are checked against RANGES."""

    sigma: float | None = None
    denoiser_strength: float | None = None
    max_decoder_steps: int | None = None
    gate_threshold: float | None = None
    prenet_dropout: float | None = None
    seed: int | None = None
    device: str | None = None  # "auto", "cpu", "cuda", "cuda:1"...
    precision: str | None = None  # "fp32", "fp16", "bf16"
    batch_size: int | None = None
    pause_seconds: float | None = None
    max_chars: int = 20_000  # longest text accepted as one item
    fixed_decoder_steps: int | None = None  # benchmarks: ignore the gate, run exactly N steps
    speed: float = 1.0  # >1 speaks faster: each mel is time-scaled before the vocoder (pitch kept)

    def __post_init__(self) -> None:
        for name in _CONFIG_OPTIONS:
            value = getattr(self, name)
            if value is None:
                continue
            limits = RANGES[name]
            problem = limits.type_problem(value)
            if problem:
                raise ConfigError(f"{name} {problem} or None, not {value!r}")
            problem = limits.bound_problem(value)  # type: ignore[arg-type]
            if problem:
                raise ConfigError(f"{name} {problem}, not {value!r}")
        for name in ("device", "precision"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{name} must be a string or None, not {value!r}")


_CONFIG_OPTIONS = tuple(
    name for name in SynthesisConfig.__dataclass_fields__ if name not in ("device", "precision")
)
