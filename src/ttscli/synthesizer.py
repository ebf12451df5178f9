"""Text to audio: a Voice, per-call SynthesisConfig, and the batching Synthesizer."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from .errors import ConfigError, SynthesisError, TextError, TTSError, VoiceError
from .segment import halve, segment, split_to_budget

log = logging.getLogger(__name__)

FLUSH = object()
"""Put in the input of `Synthesizer.stream` to render what is buffered now (idle input)."""

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
MEL_FLOOR = math.log(1e-5)  # log-mel of silence, used to pad batched mels
FRAMES_PER_CHAR = 8.0  # generous upper bound on mel frames per character (LJSpeech: ~5.5)
PEAK = 10 ** (-1 / 20)  # output peak, -1 dBFS


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
class Voice:
    """A Tacotron2, a vocoder, and the voice's defaults (name, sample rate, front end...)."""

    name: str
    tacotron2: torch.nn.Module
    vocoder: object  # a ttscli.vocoders.Vocoder
    sample_rate: int = 22050
    frontend: str = "dle"
    defaults: VoiceDefaults = field(default_factory=VoiceDefaults)
    files: dict[str, str] = field(default_factory=dict)


@dataclass
class SynthesisConfig:
    """Per-call options; None means the voice's default."""

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
        for name, (kind, low, high, high_open) in _CONFIG_RANGES.items():
            _check_option(name, getattr(self, name), kind, low, high, high_open)
        for name in ("device", "precision"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{name} must be a string or None, not {value!r}")


# option: (type, lowest, highest, whether the highest is excluded); None values mean "default"
_CONFIG_RANGES: dict[str, tuple[type, float, float, bool]] = {
    "sigma": (float, 0.0, math.inf, False),
    "denoiser_strength": (float, 0.0, 1.0, False),
    "max_decoder_steps": (int, 1, math.inf, False),
    "gate_threshold": (float, 0.0, 1.0, False),
    "prenet_dropout": (float, 0.0, 1.0, True),
    "seed": (int, 0, 2**63 - 1, False),
    "batch_size": (int, 1, math.inf, False),
    "pause_seconds": (float, 0.0, math.inf, False),
    "max_chars": (int, 1, math.inf, False),
    "fixed_decoder_steps": (int, 1, math.inf, False),
    "speed": (float, 0.25, 4.0, False),
}


def _check_option(name: str, value: object, kind: type, low: float, high: float, open_: bool):
    if value is None:
        return
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or (kind is int and not isinstance(value, int)) or not math.isfinite(value):
        expected = "an integer" if kind is int else "a finite number"
        raise ConfigError(f"{name} must be {expected} or None, not {value!r}")
    if value < low or value > high or (open_ and value == high):
        top = f"below {high}" if open_ else f"at most {high}" if math.isfinite(high) else ""
        raise ConfigError(
            f"{name} must be at least {low}{' and ' + top if top else ''}, not {value!r}"
        )


@dataclass
class Result:
    """One input's outcome: audio (float32, mono) or an error message."""

    id: object
    text: str
    audio: np.ndarray | None
    sample_rate: int
    decoder_steps: int = 0
    gate_failed: bool = False
    error: str | None = None
    compute_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def audio_seconds(self) -> float:
        return 0.0 if self.audio is None else len(self.audio) / self.sample_rate


@dataclass
class _Piece:
    owner: int  # index of the item in the window
    index: int  # position within the item
    text: str
    ids: list[int]
    retried: bool = False
    audio: np.ndarray | None = None
    steps: int = 0
    failed: str | None = None


def resolve_device(name: str | None) -> torch.device:
    """'auto' (or None) picks CUDA when available, else the CPU."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {name!r} (expected auto, cpu, cuda or cuda:N)") from exc
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported device {name!r} (expected auto, cpu, cuda or cuda:N)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but no CUDA GPU is available")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(
            f"no CUDA device {device.index} (this machine has {torch.cuda.device_count()})"
        )
    return device


def resolve_precision(name: str | None, device: torch.device) -> tuple[torch.dtype, torch.dtype]:
    """(Tacotron2 dtype, vocoder dtype) for a precision name on a device.

    fp16 is CUDA-only (both models in half, as NVIDIA's AMP files); bf16 runs the vocoder in
    bfloat16 and keeps Tacotron2 in float32, whose autoregressive loop drifts in bf16.
    """
    name = name or "fp32"
    if name not in PRECISIONS:
        raise ConfigError(f"unknown precision {name!r}; choose one of {', '.join(PRECISIONS)}")
    if name == "fp16":
        if device.type != "cuda":
            raise ConfigError("fp16 needs a CUDA GPU; on the CPU use --precision bf16")
        return torch.float16, torch.float16
    if name == "bf16":
        if device.type == "cpu" and not cpu_has_fast_bf16():
            log.warning(
                "this CPU has no native bfloat16 (AVX512-BF16/AMX): bf16 will be much slower "
                "than fp32 here"
            )
        return torch.float32, torch.bfloat16
    return torch.float32, torch.float32


def cpu_has_fast_bf16() -> bool:
    """Whether oneDNN runs bfloat16 convolutions natively on this CPU."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _check_mel_channels(voice: Voice) -> None:
    """A VoiceError when the Tacotron2 writes mels the vocoder cannot read."""
    made = getattr(voice.tacotron2, "n_mel_channels", None)
    read = getattr(getattr(voice.vocoder, "waveglow", None), "n_mel_channels", None)
    if made is not None and read is not None and made != read:
        raise VoiceError(
            f"voice {voice.name!r}: its Tacotron2 makes {made}-channel mels, its WaveGlow "
            f"reads {read}-channel ones"
        )


class Synthesizer:
    """Renders texts with a voice: segmenting, batching by length, vocoding, in input order.

    The voice's models are moved and cast in place (and put back where this synthesizer wants
    them before each window, if another one sharing the voice moved them); casting to fp16 or
    bf16 rounds their weights for good, so synthesizers of different precisions should each
    load their own Voice.
    """

    def __init__(self, voice: Voice, config: SynthesisConfig | None = None) -> None:
        self.voice = voice
        self.config = config or SynthesisConfig()
        d = voice.defaults
        c = self.config

        def pick(value, default):
            return default if value is None else value

        self.sigma = pick(c.sigma, d.sigma)
        self.denoiser_strength = pick(c.denoiser_strength, d.denoiser_strength)
        self.max_decoder_steps = pick(
            c.fixed_decoder_steps, pick(c.max_decoder_steps, d.max_decoder_steps)
        )
        self.gate_threshold = pick(c.gate_threshold, d.gate_threshold)
        self.prenet_dropout = pick(c.prenet_dropout, d.prenet_dropout)
        self.batch_size = int(pick(c.batch_size, d.batch_size))
        self.pause_seconds = float(pick(c.pause_seconds, d.pause_seconds))
        if self.max_decoder_steps < 1:
            raise SynthesisError("max decoder steps must be at least 1")
        _check_mel_channels(voice)
        self.device = resolve_device(c.device)
        self.taco_dtype, self.vocoder_dtype = resolve_precision(c.precision, self.device)
        self.frames_per_step = int(getattr(voice.tacotron2, "n_frames_per_step", 1) or 1)
        self.max_piece_chars = max(
            8, int(self.max_decoder_steps * self.frames_per_step / FRAMES_PER_CHAR)
        )
        self._place_models()
        self._fp32_fallback: Synthesizer | None = None
        self._seed_states = None if c.seed is None else self._seeded_states(c.seed)
        self._rng_states = self._seed_states

    # -- public API -------------------------------------------------------------------------
    def synthesize(self, text: str) -> Result:
        """Render one text; raises TextError (nothing to say, too long, not a str) or
        SynthesisError (the decoder never stopped, non-finite audio) instead of returning an
        error."""
        self._prepare(0, text)  # a TextError here, before any rendering
        (result,) = self.stream([(None, text)])
        if result.error:
            raise SynthesisError(result.error)
        return result

    def stream(self, items: Iterable[tuple[object, str] | object]) -> Iterator[Result]:
        """Render (id, text) pairs, yielding results in input order as windows complete.

        Items are buffered until the window holds 4 x batch_size pieces (or FLUSH / the end of
        the input arrives), then rendered in length-sorted batches. Memory stays bounded by
        the window whatever the input's length.

        With a seed, every call starts from it: the same items give the same audio, whatever
        was rendered before, and the caller's own torch generators are left untouched.
        Without one, draws come from torch's global generators, as in NVIDIA's code.
        """
        self._rng_states = self._seed_states
        window: list[tuple[object, str]] = []
        n_pieces = 0
        for item in items:
            if item is FLUSH:
                if window:
                    yield from self._render_window(window)
                    window, n_pieces = [], 0
                continue
            if not (isinstance(item, tuple) and len(item) == 2):
                raise TextError(f"stream() takes (id, text) pairs, got {item!r:.60}")
            window.append(item)
            n_pieces += max(1, len(item[1]) // max(1, self.max_piece_chars))
            if n_pieces >= 4 * self.batch_size:
                yield from self._render_window(window)
                window, n_pieces = [], 0
        if window:
            yield from self._render_window(window)

    # -- internals --------------------------------------------------------------------------
    def _place_models(self) -> None:
        """The voice's models on this synthesizer's device and dtypes (another synthesizer
        sharing the voice may have moved them; a no-op when they are in place)."""
        self.voice.tacotron2.to(device=self.device, dtype=self.taco_dtype).eval()
        self.voice.vocoder.to(self.device, self.vocoder_dtype)

    def _seeded_states(self, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        with torch.random.fork_rng(devices=self._cuda_devices()):
            torch.default_generator.manual_seed(seed)  # not torch.manual_seed: it seeds every GPU
            if self.device.type == "cuda":
                with torch.cuda.device(self.device):
                    torch.cuda.manual_seed(seed)
            return self._current_states()

    def _cuda_devices(self) -> list[torch.device]:
        return [self.device] if self.device.type == "cuda" else []

    def _current_states(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        return torch.get_rng_state(), cuda

    @contextlib.contextmanager
    def _randomness(self) -> Iterator[None]:
        """Seeded: draw from this synthesizer's own generator states (the global ones are put
        back afterwards). Unseeded: the global generators."""
        if self._rng_states is None:
            yield
            return
        with torch.random.fork_rng(devices=self._cuda_devices()):
            cpu, cuda = self._rng_states
            torch.set_rng_state(cpu)
            if cuda is not None:
                torch.cuda.set_rng_state(cuda, self.device)
            yield
            self._rng_states = self._current_states()

    def _prepare(self, owner: int, text: str) -> list[_Piece]:
        from .text import check_speakable, clean_text

        if not isinstance(text, str):
            raise TextError(f"text must be a str, not {type(text).__name__}")
        if len(text) > self.config.max_chars:
            raise TextError(
                f"text too long ({len(text):,} characters; at most {self.config.max_chars:,} "
                "per item): split it into several lines"
            )
        pieces: list[_Piece] = []
        problems = []
        fixed = self.config.fixed_decoder_steps is not None  # benchmarks: one piece per item
        for chunk in [text] if fixed else segment(text, self.max_piece_chars):
            try:
                ids = check_speakable(chunk, self.voice.frontend)
            except TextError as exc:
                problems.append(str(exc))
                continue
            if fixed or len(ids) <= self.max_piece_chars:
                pieces.append(_Piece(owner, len(pieces), chunk, ids))
                continue
            # numbers and abbreviations made it longer than the budget: split what is read
            for sub in split_to_budget(
                clean_text(chunk, self.voice.frontend), self.max_piece_chars
            ):
                try:
                    ids = check_speakable(sub, self.voice.frontend)
                except TextError:
                    continue
                pieces.append(_Piece(owner, len(pieces), sub, ids))
        if not pieces:
            raise TextError(problems[0] if problems else "nothing to say: the text is empty")
        return pieces

    def _render_window(self, window: list[tuple[object, str]]) -> Iterator[Result]:
        started = time.perf_counter()
        pieces_of: list[list[_Piece] | str] = []
        for owner, (_, text) in enumerate(window):
            try:
                pieces_of.append(self._prepare(owner, text))
            except TTSError as exc:
                pieces_of.append(str(exc))
        todo = [p for ps in pieces_of if isinstance(ps, list) for p in ps]
        self._place_models()
        with self._randomness():
            self._render_pieces(todo)
        elapsed = time.perf_counter() - started
        total_chars = sum(len(p.text) for p in todo) or 1
        for owner, (item_id, text) in enumerate(window):
            ps = pieces_of[owner]
            if isinstance(ps, str):
                yield Result(item_id, text, None, self.voice.sample_rate, error=ps)
                continue
            share = elapsed * sum(len(p.text) for p in ps) / total_chars
            yield self._assemble(item_id, text, ps, share)

    def _assemble(self, item_id, text: str, pieces: list[_Piece], seconds: float) -> Result:
        steps = sum(p.steps for p in pieces)
        failed = [p for p in pieces if p.failed]
        if failed:
            return Result(
                item_id, text, None, self.voice.sample_rate, steps, gate_failed=True,
                error=failed[0].failed, compute_seconds=seconds,
            )  # fmt: skip
        pause = np.zeros(int(round(self.pause_seconds * self.voice.sample_rate)), np.float32)
        parts: list[np.ndarray] = []
        for i, piece in enumerate(sorted(pieces, key=lambda p: p.index)):
            if i:
                parts.append(pause)
            parts.append(self._limit_edge_silence(piece.audio))
        audio = np.concatenate(parts) if len(parts) > 1 else parts[0]
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        if peak > 0:
            audio = audio * (PEAK / peak)
        return Result(
            item_id, text, audio.astype(np.float32), self.voice.sample_rate, steps,
            compute_seconds=seconds,
        )  # fmt: skip

    def _limit_edge_silence(self, audio: np.ndarray) -> np.ndarray:
        limit = self.voice.defaults.max_edge_silence_seconds
        if math.isinf(limit):
            return audio
        from .audio import limit_edge_silence

        return limit_edge_silence(audio, self.voice.sample_rate, limit)

    def _render_pieces(self, pieces: list[_Piece]) -> None:
        """Render pieces in length-sorted batches; split and retry those that never stop."""
        order = sorted(pieces, key=lambda p: len(p.ids), reverse=True)
        retry: list[_Piece] = []
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            for piece, (audio, steps, hit_max) in zip(batch, self._run_batch(batch), strict=True):
                piece.steps = steps
                if hit_max and self.config.fixed_decoder_steps is None:
                    retry.append(piece)
                elif audio is None:
                    piece.failed = f"non-finite audio for {piece.text!r}"
                else:
                    piece.audio = audio
        for piece in retry:
            self._retry(piece)

    def _retry(self, piece: _Piece) -> None:
        halves = halve(piece.text) if not piece.retried else []
        subs = []
        for text in halves:
            from .text import check_speakable

            try:
                subs.append(
                    _Piece(
                        piece.owner,
                        piece.index,
                        text,
                        check_speakable(text, self.voice.frontend),
                        retried=True,
                    )
                )
            except TextError:
                continue
        if not subs:
            piece.failed = (
                f"the decoder did not stop within {self.max_decoder_steps} steps on {piece.text!r}"
            )
            return
        results = self._run_batch(subs)
        audios = []
        for sub, (audio, steps, hit_max) in zip(subs, results, strict=True):
            piece.steps += steps
            if hit_max or audio is None:
                piece.failed = (
                    f"the decoder did not stop within {self.max_decoder_steps} steps on "
                    f"{sub.text!r} (already split once)"
                )
                return
            audios.append(audio)
        pause = np.zeros(int(round(0.5 * self.pause_seconds * self.voice.sample_rate)), np.float32)
        joined = [audios[0]]
        for audio in audios[1:]:
            joined += [pause, audio]
        piece.audio = np.concatenate(joined)

    @torch.inference_mode()
    def _run_batch(self, batch: list[_Piece]) -> list[tuple[np.ndarray | None, int, bool]]:
        """Tacotron2 + vocoder on one batch: per piece (audio or None if non-finite, steps, hit_max)."""
        taco = self.voice.tacotron2
        lengths = torch.tensor([len(p.ids) for p in batch], dtype=torch.long)
        ids = torch.zeros(len(batch), int(lengths.max()), dtype=torch.long)
        for row, piece in enumerate(batch):
            ids[row, : len(piece.ids)] = torch.tensor(piece.ids, dtype=torch.long)
        taco.prenet_dropout = self.prenet_dropout
        taco.max_decoder_steps = self.max_decoder_steps
        taco.gate_threshold = self.gate_threshold
        taco.early_stopping = self.config.fixed_decoder_steps is None
        taco.stop_at_text_end = bool(self.voice.defaults.stop_at_text_end)
        mel, mel_lengths, _ = taco.infer(ids.to(self.device), lengths.to(self.device))
        hit_max = taco.last_hit_max_steps.cpu().tolist()
        mel_lengths = mel_lengths.cpu()
        if self.config.fixed_decoder_steps is not None:  # benchmarks: every frame counts
            mel_lengths = torch.full_like(mel_lengths, mel.shape[2])
        frames = torch.arange(mel.shape[2], device=mel.device)
        pad = frames[None, :] >= mel_lengths.to(mel.device)[:, None]
        mel = mel.float().masked_fill(pad[:, None, :], MEL_FLOOR)
        frame_counts = mel_lengths
        if self.config.speed != 1.0:  # faster or slower speech, same pitch
            from .audio import time_scale_mels

            mel, frame_counts = time_scale_mels(mel, mel_lengths, self.config.speed, MEL_FLOOR)
        audio = self.voice.vocoder(mel, sigma=self.sigma, denoiser_strength=self.denoiser_strength)
        hop = self.voice.vocoder.hop_length
        out = []
        for row, piece in enumerate(batch):
            n = int(frame_counts[row]) * hop
            wave = audio[row, :n].float()
            steps = int(math.ceil(int(mel_lengths[row]) / self.frames_per_step))
            if n == 0:
                out.append((None, steps, True))  # the gate fired at once: no audio
                continue
            if not bool(torch.isfinite(wave).all()):
                wave = self._fp32_redo(piece)
            out.append((None if wave is None else wave.cpu().numpy(), steps, bool(hit_max[row])))
        return out

    def _fp32_redo(self, piece: _Piece) -> torch.Tensor | None:
        """Redo one piece in float32 after non-finite reduced-precision output."""
        if self.taco_dtype == torch.float32 and self.vocoder_dtype == torch.float32:
            return None
        log.warning("non-finite audio in reduced precision; redoing %r in fp32", piece.text[:40])
        if self._fp32_fallback is None:
            with torch.inference_mode(False):  # plain (not inference) tensors for the copy
                self._fp32_fallback = self._fp32_copy()
        audio, _, _ = self._fp32_fallback._run_batch([piece])[0]
        return None if audio is None else torch.from_numpy(audio)

    def _fp32_copy(self) -> Synthesizer:
        """A float32 twin of this synthesizer, made once, for pieces to redo.

        The models are read again from the voice's checkpoint files where it has them: the
        ones in memory were cast in place, and casting back would keep their rounding.
        """
        import copy

        from .checkpoints import load_tacotron2, load_waveglow
        from .vocoders import WaveGlowVocoder

        files = self.voice.files
        if "tacotron2" in files:  # run-time settings are set again for every batch
            tacotron2 = load_tacotron2(files["tacotron2"])
        else:
            tacotron2 = copy.deepcopy(self.voice.tacotron2)
        if "waveglow" in files and isinstance(self.voice.vocoder, WaveGlowVocoder):
            vocoder = WaveGlowVocoder(load_waveglow(files["waveglow"]))
        else:
            vocoder = copy.deepcopy(self.voice.vocoder)
        voice = dataclasses.replace(self.voice, tacotron2=tacotron2, vocoder=vocoder)
        config = dataclasses.replace(self.config, precision="fp32", seed=None)
        return Synthesizer(voice, config)
