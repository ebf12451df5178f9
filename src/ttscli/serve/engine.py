"""The server's one door into the ttscli library: voices, sentence pieces and batch rendering.

Everything else in ttscli.serve reaches models only through an Engine, from the scheduler's
render threads (each its own lane: a Synthesizer of its own on the shared voice); switching to
newer library APIs means changing this module alone.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..errors import TTSError, UnknownVoiceError

log = logging.getLogger(__name__)

# OpenAI's voice names: clients send them, they all mean the server's default voice
OPENAI_VOICES = frozenset(
    "alloy ash ballad coral echo fable onyx nova sage shimmer verse marin cedar".split()
)
# numbers, symbols and abbreviations: the text front end's first use of each is slow (seconds)
WARM_UP_TEXT = "Dr. Smith paid $3.50 on May 2nd, 1984, at 10:30 - 25% more than Mr. Jones."
VOICE_LIST_SECONDS = 10.0  # how long the list of installed voices is trusted


class RenderPlan(NamedTuple):
    """How the server renders: batches at once (one render thread each), torch threads each."""

    workers: int
    torch_threads: int


def plan_rendering(requested: int | None, cpu_threads: int) -> RenderPlan:
    """The render threads (one by default) of a server with `cpu_threads` torch threads,
    which they share out. One thread with all of them renders fuller batches than two with
    half each, which is what this small model's throughput depends on (see docs/serve.md)."""
    workers = max(1, requested or 1)
    return RenderPlan(workers, max(1, cpu_threads // workers))


@dataclass(frozen=True)
class VoiceFacts:
    """What the server needs to know about a loaded voice, without its models."""

    name: str
    sample_rate: int
    batch_size: int
    pause_seconds: float
    max_piece_chars: int
    frontend: str


@dataclass
class Rendered:
    """One piece's outcome: float32 mono audio or an error message."""

    audio: np.ndarray | None
    error: str | None = None


class Engine:
    """Loads voices on first use (kept afterwards) and renders batches of sentence pieces."""

    def __init__(
        self,
        default_voice: str | None = None,
        device: str | None = None,
        precision: str | None = None,
        batch_size: int | None = None,
    ) -> None:
        from ..voices import default_voice_name

        self.default_voice = default_voice or default_voice_name()
        self.device = device
        self.precision = precision
        self.batch_size = batch_size
        self._voices: dict[str, object] = {}  # name -> ttscli Voice
        self._synths: dict[tuple[str, float, int], object] = {}  # (name, speed, lane) -> one
        self._installed: tuple[float, list[str]] = (-1e9, [])
        self._lock = threading.Lock()  # voice loading and the synthesizers' cache, among threads
        import torch

        # every render runs with the count the server set, also one that interrupts a decoder
        # loop (which runs on one thread between its matmuls)
        self._torch_threads = torch.get_num_threads()

    # -- names (any thread) ---------------------------------------------------------------------
    def installed_voices(self) -> list[str]:
        """Names of the voices that can be loaded here, the default first."""
        stamp, names = self._installed
        if time.monotonic() - stamp > VOICE_LIST_SECONDS:
            from ..voices import list_voices

            found = [v.name for v in list_voices() if v.status == "installed"]
            names = [self.default_voice, *(n for n in found if n != self.default_voice)]
            self._installed = (time.monotonic(), names)
        return list(names)

    def resolve_voice(self, name: str | None) -> str:
        """The voice a request's name means (OpenAI's names: the default); UnknownVoiceError
        listing the installed voices otherwise."""
        if name is None or name == "" or name in OPENAI_VOICES:
            return self.default_voice
        installed = self.installed_voices()
        if name in installed or name in self._voices:
            return name
        raise UnknownVoiceError(
            f"unknown voice {name!r}; installed voices: {', '.join(installed)} "
            f"(OpenAI's names such as 'alloy' mean {self.default_voice!r})"
        )

    # -- loaded voices (the scheduler's render threads) -----------------------------------------
    def facts(self, name: str) -> VoiceFacts:
        """Facts about a voice, loading it first when needed."""
        synth = self._synthesizer(name, 1.0)
        voice = synth.voice
        return VoiceFacts(
            name=voice.name if name == self.default_voice else name,
            sample_rate=int(voice.sample_rate),
            batch_size=int(synth.batch_size),
            pause_seconds=float(synth.pause_seconds),
            max_piece_chars=int(synth.max_piece_chars),
            frontend=voice.frontend,
        )

    def warm_up(self, name: str, lane: int = 0) -> None:
        """Load a voice and render a short text once on a lane (first calls are slow)."""
        self.render(name, [WARM_UP_TEXT], speed=1.0, seed=None, lane=lane)

    def render(
        self, name: str, texts: list[str], speed: float, seed: int | None, lane: int = 0
    ) -> list[Rendered]:
        """Render texts together (one batch when they fit the batch size) on a render thread's
        lane; with a seed, the same texts give the same audio whatever was rendered before
        (while no other lane renders: unseeded draws share torch's global generator)."""
        from ..threads import intra_op_threads

        synth = self._synthesizer(name, speed, seed, lane)
        with intra_op_threads(self._torch_threads):
            results = list(synth.stream(list(enumerate(texts))))
        return [Rendered(result.audio, result.error) for result in results]

    # -- text (any thread) ----------------------------------------------------------------------
    def split(self, text: str, facts: VoiceFacts) -> list[str]:
        """The speakable pieces (sentences, split to the decoder's budget) of a text, in order;
        a TextError when nothing in it can be spoken."""
        from ..errors import TextError
        from ..segment import segment
        from ..text import check_speakable

        pieces = segment(text, facts.max_piece_chars)
        speakable, problem = [], None
        for piece in pieces:
            try:
                check_speakable(piece, facts.frontend)
                speakable.append(piece)
            except TextError as exc:
                problem = problem or str(exc)
        if not speakable:
            raise TextError(problem or "nothing to say: the text is empty")
        return speakable

    def normalize(self, text: str, frontend: str = "dle") -> str:
        """Text as the voice reads it (numbers, abbreviations, symbols spelled out)."""
        from ..text import clean_text

        return clean_text(text, frontend)

    # -- internals ------------------------------------------------------------------------------
    def _synthesizer(self, name: str, speed: float, seed: int | None = None, lane: int = 0):
        from ..synthesizer import SynthesisConfig, Synthesizer

        key = (name, speed, lane)
        if seed is None and key in self._synths:
            return self._synths[key]
        voice = self._voice(name)
        config = SynthesisConfig(
            device=self.device,
            precision=self.precision,
            batch_size=self.batch_size,
            speed=float(speed),
            seed=seed,
        )
        synth = Synthesizer(voice, config)
        if seed is None:
            with self._lock:  # render threads add theirs at the same time
                if len(self._synths) > 64:  # many distinct speeds: forget the oldest
                    self._synths.pop(next(iter(self._synths)))
                self._synths[key] = synth
        return synth

    def _voice(self, name: str):
        from ..voices import load_voice

        with self._lock:
            if name not in self._voices:
                started = time.perf_counter()
                try:
                    self._voices[name] = load_voice(name)
                except UnknownVoiceError:
                    raise
                except TTSError as exc:
                    raise TTSError(f"voice {name!r} cannot be loaded: {exc}") from exc
                log.info("voice %s loaded in %.2f s", name, time.perf_counter() - started)
            return self._voices[name]
