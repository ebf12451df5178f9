"""What every renderer shares: one input's Result, the FLUSH marker and the Renderer protocol."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["FLUSH", "AudioChunk", "Renderer", "Result"]


class _Flush:
    """The type of FLUSH (one instance; its repr names it in messages and tracebacks)."""

    def __repr__(self) -> str:
        return "FLUSH"


FLUSH = _Flush()
"""Put in a renderer's input to render what is buffered now (the input went idle)."""


@dataclass
class Result:
    """One input's outcome: audio (float32, mono) or an error message.

    ``written`` names the audio file a remote worker already wrote (relative to the output
    folder); then ``audio`` may be None although the input succeeded.
    """

    id: object
    text: str | None
    audio: np.ndarray | None
    sample_rate: int
    decoder_steps: int = 0
    gate_failed: bool = False
    error: str | None = None
    compute_seconds: float = 0.0
    written: str | None = None
    duration_seconds: float | None = None  # audio length when `audio` stayed with a worker

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def audio_seconds(self) -> float:
        if self.audio is None:
            return self.duration_seconds or 0.0
        return len(self.audio) / self.sample_rate


@dataclass
class AudioChunk:
    """One sentence (or group of short sentences) of a text, as `Synthesizer.speak` yields it.

    ``audio`` is float32 mono at ``sample_rate``; every chunk after the first starts with the
    pause between sentences, so the chunks laid end to end are the whole text.
    """

    audio: np.ndarray
    sample_rate: int
    text: str

    @property
    def seconds(self) -> float:
        return len(self.audio) / self.sample_rate


@runtime_checkable
class Renderer(Protocol):
    """Renders (id, text) pairs, yielding one Result per pair in input order.

    FLUSH in the input renders what is buffered before reading further. `Synthesizer` (in
    this process) and `RayPool` (on Ray workers) implement it.
    """

    def stream(self, items: Iterable[tuple[object, str] | object]) -> Iterator[Result]: ...
