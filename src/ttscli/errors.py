"""Exceptions raised by the ttscli library; the CLI turns them into one-line messages."""


class TTSError(Exception):
    """Base class of every error ttscli raises on purpose."""


class TextError(TTSError, ValueError):
    """The text cannot be spoken (nothing speakable, too long, invalid)."""


class CheckpointError(TTSError):
    """A checkpoint file is missing, unreadable, unsafe or of the wrong kind."""


class VoiceError(TTSError):
    """A voice cannot be found or assembled."""


class UnknownVoiceError(VoiceError, LookupError):
    """No voice has the name asked for (a mistyped name, not a broken voice)."""


class ConfigError(TTSError, ValueError):
    """A per-call option cannot be honoured here (no CUDA GPU, fp16 on the CPU, ...)."""


class SynthesisError(TTSError):
    """Synthesis of an item failed (decoder never stopped, non-finite audio, ...)."""


class DownloadError(TTSError):
    """A download failed or its result did not verify."""
