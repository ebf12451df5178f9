"""Text to audio: a Voice, per-call SynthesisConfig, and the batching Synthesizer."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .audio import LOG_MEL_FLOOR
from .config import PRECISION_NAMES, SynthesisConfig, VoiceDefaults
from .errors import ConfigError, SynthesisError, TextError, TTSError
from .placement import place
from .rendering import FLUSH, AudioChunk, Result
from .segment import halve, segment, split_to_budget
from .tacotron2.decoding import DecodeOptions, decode
from .voices import Voice

__all__ = [
    "FLUSH",
    "Result",
    "SynthesisConfig",
    "Synthesizer",
    "Voice",
    "VoiceDefaults",
    "cpu_has_fast_bf16",
    "resolve_device",
    "resolve_precision",
]

log = logging.getLogger(__name__)

PRECISIONS = dict(zip(PRECISION_NAMES, (torch.float32, torch.float16, torch.bfloat16), strict=True))
FRAMES_PER_CHAR = 8.0  # generous upper bound on mel frames per character (LJSpeech: ~5.5)
PEAK = 10 ** (-1 / 20)  # output peak, -1 dBFS


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
        raise ConfigError(f"--device {name} was asked for, but no CUDA GPU is available")
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


def _to_peak(audio: np.ndarray) -> np.ndarray:
    """float32 audio scaled so that its peak is PEAK (silence stays silence)."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    return (audio * (PEAK / peak) if peak > 0 else audio).astype(np.float32)


def _check_mel_channels(voice: Voice) -> None:
    """A VoiceError when the Tacotron2 writes mels the vocoder cannot read."""
    from .vocoders import check_fits

    made = getattr(voice.tacotron2, "n_mel_channels", None)
    check_fits(voice.vocoder, made, None, voice.name)


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
        self._decode_options = self._decoding_options()
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
            if not isinstance(item[1], str):
                raise TextError(f"text must be a str, not {type(item[1]).__name__}")
            window.append(item)
            n_pieces += max(1, len(item[1]) // max(1, self.max_piece_chars))
            if n_pieces >= 4 * self.batch_size:
                yield from self._render_window(window)
                window, n_pieces = [], 0
        if window:
            yield from self._render_window(window)

    def speak(self, text: str) -> Iterator[AudioChunk]:
        """Yield a text's audio sentence by sentence, each chunk as soon as it is rendered.

        The text is cut as `synthesize` cuts it (short sentences joined, long ones split), the
        pieces are rendered in text order, batch_size at a time, and each chunk after the first
        starts with the voice's pause, so the chunks laid end to end are the text's audio.
        Each chunk is scaled to the same peak as `synthesize` output (-1 dBFS); a text longer
        than ``max_chars`` is accepted and cut into pieces no longer than that.

        Raises TextError before any audio when nothing in the text can be spoken; when a
        sentence fails (the decoder never stopped), the others are still yielded and a
        SynthesisError naming the first failure is raised at the end.
        """
        if not isinstance(text, str):
            raise TextError(f"text must be a str, not {type(text).__name__}")
        pieces = self._pieces(0, text, min(self.max_piece_chars, self.config.max_chars))
        self._rng_states = self._seed_states
        pause = np.zeros(int(round(self.pause_seconds * self.voice.sample_rate)), np.float32)
        failed: list[str] = []
        for start in range(0, len(pieces), self.batch_size):
            group = pieces[start : start + self.batch_size]
            self._place_models()
            with self._randomness():
                self._render_pieces(group)
            for piece in group:
                if piece.failed:
                    failed.append(piece.failed)
                    continue
                audio = _to_peak(self._limit_edge_silence(piece.audio))
                if piece.index:
                    audio = np.concatenate([pause, audio])
                yield AudioChunk(audio, self.voice.sample_rate, piece.text)
        if failed:
            raise SynthesisError(f"{len(failed)} sentence(s) failed; first: {failed[0]}")

    # -- internals --------------------------------------------------------------------------
    def _decoding_options(self) -> DecodeOptions:
        """This synthesizer's Tacotron2 options; they travel with each call, so synthesizers
        and threads sharing a voice do not overwrite each other's. Early stopping is the
        checkpoint's setting (the model's default), except that fixed steps turn it off."""
        taco = self.voice.tacotron2
        fixed = self.config.fixed_decoder_steps is not None
        return DecodeOptions(
            prenet_dropout=float(self.prenet_dropout),
            max_decoder_steps=int(self.max_decoder_steps),
            gate_threshold=float(self.gate_threshold),
            early_stopping=bool(getattr(taco, "early_stopping", True)) and not fixed,
            stop_at_text_end=bool(self.voice.defaults.stop_at_text_end),
            stop_check_every=getattr(taco, "stop_check_every", None),
        )

    def _place_models(self) -> None:
        """The voice's models on this synthesizer's device and dtypes (another synthesizer
        sharing the voice may have moved them; a no-op when they are in place)."""
        taco = self.voice.tacotron2
        place(taco, self.device, self.taco_dtype)
        if taco.training:
            taco.eval()
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
        """The pieces one item is rendered as; a TextError when it has none or is too long."""
        if not isinstance(text, str):
            raise TextError(f"text must be a str, not {type(text).__name__}")
        if len(text) > self.config.max_chars:
            raise TextError(
                f"text too long ({len(text):,} characters; at most {self.config.max_chars:,} "
                "per item): split it into several lines"
            )
        return self._pieces(owner, text, self.max_piece_chars)

    def _pieces(self, owner: int, text: str, budget: int) -> list[_Piece]:
        """Sentences (short ones joined) of at most `budget` symbols, in order, each one
        speakable; a TextError when none is."""
        from .text import check_speakable, clean_text

        pieces: list[_Piece] = []
        problems = []
        fixed = self.config.fixed_decoder_steps is not None  # benchmarks: one piece per item
        for chunk in [text] if fixed else segment(text, budget):
            try:
                ids = check_speakable(chunk, self.voice.frontend)
            except TextError as exc:
                problems.append(str(exc))
                continue
            if fixed or len(ids) <= budget:
                pieces.append(_Piece(owner, len(pieces), chunk, ids))
                continue
            # numbers and abbreviations made it longer than the budget: split what is read
            for sub in split_to_budget(clean_text(chunk, self.voice.frontend), budget):
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
        return Result(
            item_id, text, _to_peak(audio), self.voice.sample_rate, steps,
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
        decoded = decode(taco, ids.to(self.device), lengths.to(self.device), self._decode_options)
        mel, hit_max = decoded.mel, decoded.hit_max_steps.cpu().tolist()
        mel_lengths = decoded.mel_lengths.cpu()
        if self.config.fixed_decoder_steps is not None:  # benchmarks: every frame counts
            mel_lengths = torch.full_like(mel_lengths, mel.shape[2])
        frames = torch.arange(mel.shape[2], device=mel.device)
        pad = frames[None, :] >= mel_lengths.to(mel.device)[:, None]
        mel = mel.float().masked_fill(pad[:, None, :], LOG_MEL_FLOOR)
        frame_counts = mel_lengths
        if self.config.speed != 1.0:  # faster or slower speech, same pitch
            from .audio import time_scale_mels

            mel, frame_counts = time_scale_mels(mel, mel_lengths, self.config.speed, LOG_MEL_FLOOR)
        vocoder = self.voice.vocoder
        extra = {"frames": frame_counts.tolist()} if getattr(vocoder, "takes_frames", False) else {}
        audio = vocoder(mel, sigma=self.sigma, denoiser_strength=self.denoiser_strength, **extra)
        hop = vocoder.hop_length
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
        from .vocoders import WaveGlowVocoder, load_vocoder

        files = self.voice.files
        if "tacotron2" in files:  # decoding options come with each call
            tacotron2 = load_tacotron2(files["tacotron2"])
        else:
            tacotron2 = copy.deepcopy(self.voice.tacotron2)
        source = getattr(self.voice.vocoder, "source", None)
        if source is not None:  # WaveGlow or HiFi-GAN, read again from its file
            vocoder = load_vocoder(source)
        elif "waveglow" in files and isinstance(self.voice.vocoder, WaveGlowVocoder):
            vocoder = WaveGlowVocoder(load_waveglow(files["waveglow"]))
        else:
            vocoder = copy.deepcopy(self.voice.vocoder)
        voice = dataclasses.replace(self.voice, tacotron2=tacotron2, vocoder=vocoder)
        config = dataclasses.replace(self.config, precision="fp32", seed=None)
        return Synthesizer(voice, config)
