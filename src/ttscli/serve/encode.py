"""Audio containers for answers: whole files and streams (WAV, FLAC, 24 kHz PCM, MP3, Opus)."""

from __future__ import annotations

import functools
import io
import math
import struct

import numpy as np

PCM_RATE_HZ = 24_000  # OpenAI's pcm: 24 kHz signed 16-bit little-endian mono
OPUS_RATE_HZ = 24_000  # Opus takes 8, 12, 16, 24 or 48 kHz
STREAMED_SIZE = 0xFFFFFFFF  # a streamed WAV's RIFF and data sizes: "unknown, read to the end"
CONTENT_TYPES = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "pcm": "audio/pcm",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg; codecs=opus",
}
# libsndfile (format, subtype) of the formats it encodes for us
_SOUNDFILE_KINDS = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "opus": ("OGG", "OPUS"),
}
# constant-bitrate MP3: a stream's length then follows from its size (a VBR stream's first frame
# is a blank placeholder that libsndfile fills in only when the file is closed)
_SOUNDFILE_OPTIONS = {"mp3": {"compression_level": 0.5, "bitrate_mode": "CONSTANT"}}


@functools.cache
def available_formats() -> tuple[str, ...]:
    """The response formats this machine can write (mp3/opus when libsndfile has them)."""
    import soundfile

    formats = ["wav", "flac", "pcm"]
    for name in ("mp3", "opus"):
        container, subtype = _SOUNDFILE_KINDS[name]
        try:
            if subtype in soundfile.available_subtypes(container):
                _encode_whole(np.zeros(2400, np.float32), OPUS_RATE_HZ, name)
                formats.append(name)
        except Exception:  # noqa: BLE001 - a libsndfile that lists but cannot write it
            continue
    return tuple(formats)


def output_rate_hz(fmt: str, voice_rate_hz: int) -> int:
    """The sample rate a format is sent at."""
    if fmt == "pcm":
        return PCM_RATE_HZ
    if fmt == "opus":
        return OPUS_RATE_HZ
    return voice_rate_hz


def encode_whole(audio: np.ndarray, voice_rate_hz: int, fmt: str) -> bytes:
    """A whole file of `fmt` holding float32 mono `audio` sampled at voice_rate_hz."""
    rate = output_rate_hz(fmt, voice_rate_hz)
    audio = resample(audio, voice_rate_hz, rate)
    if fmt == "pcm":
        return to_pcm16(audio)
    return _encode_whole(audio, rate, fmt)


def _encode_whole(audio: np.ndarray, rate_hz: int, fmt: str) -> bytes:
    import soundfile

    container, subtype = _SOUNDFILE_KINDS[fmt]
    buffer = io.BytesIO()
    with soundfile.SoundFile(
        buffer, "w", rate_hz, 1, subtype, format=container, **_SOUNDFILE_OPTIONS.get(fmt, {})
    ) as file:
        file.write(audio)
    return buffer.getvalue()


def to_pcm16(audio: np.ndarray) -> bytes:
    """Float audio in [-1, 1] as signed 16-bit little-endian samples."""
    return (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def streamed_wav_header(rate_hz: int) -> bytes:
    """A 16-bit mono WAV header whose sizes say "unknown" (0xFFFFFFFF), for a stream."""
    return b"".join(
        [
            b"RIFF", struct.pack("<I", STREAMED_SIZE), b"WAVE",
            b"fmt ", struct.pack("<IHHIIHH", 16, 1, 1, rate_hz, rate_hz * 2, 2, 16),
            b"data", struct.pack("<I", STREAMED_SIZE),
        ]
    )  # fmt: skip


class StreamEncoder:
    """Encodes audio chunk by chunk into one continuous stream of a format."""

    def __init__(self, fmt: str, voice_rate_hz: int) -> None:
        self.fmt = fmt
        self.voice_rate_hz = voice_rate_hz
        self.rate_hz = output_rate_hz(fmt, voice_rate_hz)
        self._file = None
        self._sink = None
        if fmt not in ("wav", "pcm"):
            import soundfile

            container, subtype = _SOUNDFILE_KINDS[fmt]
            self._sink = _GrowingBuffer()
            self._file = soundfile.SoundFile(
                self._sink, "w", self.rate_hz, 1, subtype, format=container,
                **_SOUNDFILE_OPTIONS.get(fmt, {}),
            )  # fmt: skip

    def start(self) -> bytes:
        """The bytes that open the stream."""
        if self.fmt == "wav":
            return streamed_wav_header(self.rate_hz)
        return self._sink.take() if self._sink else b""

    def encode(self, audio: np.ndarray) -> bytes:
        """The stream's bytes for the next chunk of float32 audio (maybe few: encoders buffer)."""
        audio = resample(audio, self.voice_rate_hz, self.rate_hz)
        if self._file is None:
            return to_pcm16(audio)
        self._file.write(audio)
        return self._sink.take()

    def finish(self) -> bytes:
        """The stream's last bytes."""
        if self._file is None:
            return b""
        self._file.close()
        return self._sink.take()


class _GrowingBuffer:
    """A seekable in-memory file for libsndfile whose new bytes can be taken as they come
    (rewrites of bytes already taken, such as a header patched at the end, are dropped)."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._pos = 0
        self._taken = 0

    def write(self, data) -> int:
        data = bytes(data)
        end = self._pos + len(data)
        if end > len(self._data):
            self._data.extend(b"\0" * (end - len(self._data)))
        self._data[self._pos : end] = data
        self._pos = end
        return len(data)

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else min(len(self._data), self._pos + size)
        out = bytes(self._data[self._pos : end])
        self._pos = end
        return out

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: len(self._data)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def take(self) -> bytes:
        """The bytes written past what was taken before."""
        out = bytes(self._data[self._taken :])
        self._taken = len(self._data)
        return out


# -- resampling ---------------------------------------------------------------------------------
_HALF_TAPS = 16  # input samples on each side of an output sample
_BLOCK = 65_536  # output samples computed at once (bounds memory)


@functools.cache
def _kernels(up: int, down: int) -> np.ndarray:
    """Windowed-sinc weights [up phases, 2 * _HALF_TAPS taps] for a rate ratio up/down."""
    cutoff = min(1.0, up / down) * 0.95  # of the input's Nyquist frequency
    phases = np.arange(up)[:, None] / up
    offsets = np.arange(-_HALF_TAPS + 1, _HALF_TAPS + 1)[None, :] - phases
    window = 0.5 + 0.5 * np.cos(np.pi * np.clip(offsets / _HALF_TAPS, -1.0, 1.0))
    weights = cutoff * np.sinc(cutoff * offsets) * window
    return weights.astype(np.float64)


def resample(audio: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """Mono float audio from one sample rate to another (band-limited: windowed sinc)."""
    audio = np.asarray(audio, dtype=np.float32)
    if from_hz == to_hz or audio.size == 0:
        return audio
    g = math.gcd(from_hz, to_hz)
    up, down = to_hz // g, from_hz // g
    kernels = _kernels(up, down)
    n_out = len(audio) * up // down
    padded = np.pad(audio.astype(np.float64), (_HALF_TAPS, _HALF_TAPS + 1))
    taps = np.arange(-_HALF_TAPS + 1, _HALF_TAPS + 1)
    out = np.empty(n_out, np.float32)
    for start in range(0, n_out, _BLOCK):
        n = np.arange(start, min(n_out, start + _BLOCK))
        base, phase = np.divmod(n * down, up)
        windows = padded[base[:, None] + taps[None, :] + _HALF_TAPS]
        out[start : start + len(n)] = np.einsum("ij,ij->i", windows, kernels[phase])
    return out
