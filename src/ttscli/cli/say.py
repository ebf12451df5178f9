"""`ttscli say`: one text to an audio file, a WAV on standard output, or raw PCM as it is ready."""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import click

from .options import build_synthesizer, synthesis_options

AUDIO_EXTENSIONS = {".wav": "WAV", ".flac": "FLAC"}


def _audio_format(path: str) -> str:
    ext = Path(path).suffix.lower()
    if ext not in AUDIO_EXTENSIONS:
        raise click.BadParameter(
            f"{path!r}: the file name must end in .wav or .flac", param_hint="'-o'"
        )
    return ext


@click.command()
@click.argument("text")
@click.option(
    "-o",
    "--output",
    metavar="FILE",
    help="Audio file to write (.wav or .flac), or - for a WAV on standard output.",
)
@click.option(
    "--raw",
    is_flag=True,
    help="Write 16-bit mono PCM to standard output, sentence by sentence, as it is ready.",
)
@synthesis_options
def say(text: str, output: str | None, raw: bool, **params) -> None:
    """Speak TEXT into an audio file.

    TEXT may be `-` to read it from standard input. Long text is split into sentences and
    spoken with a short pause between them.

    \b
    Examples:
      ttscli say "hello world" -o hello.wav
      ttscli say "Read this, please." -o speech.flac --voice nvidia-ljspeech
      ttscli say "Faster on a CPU." -o x.wav --voice nvidia-ljspeech --vocoder LJ_FT_T2_V2/
      echo "From a pipe." | ttscli say - -o -  > out.wav
      ttscli say "Streaming." --raw | aplay -r 22050 -f S16_LE -c 1
    """
    if raw and output:
        raise click.UsageError("use either -o/--output or --raw, not both")
    if not raw and not output:
        raise click.UsageError("say where the audio goes: -o FILE (.wav/.flac), -o -, or --raw")
    if (raw or output == "-") and _stdout_is_terminal():
        raise click.UsageError(
            "audio would be written to the terminal: redirect standard output "
            "(> out.wav, | aplay ...) or use -o FILE"
        )
    if output and output != "-":
        _check_output_file(output)
    if text == "-":
        text = _read_stdin_text()
    if not text.strip():
        raise click.UsageError("TEXT is empty: give something to say")
    synth = build_synthesizer(params)
    started = time.perf_counter()
    if raw:
        _say_raw(synth, text)
        return
    if len(text) > synth.config.max_chars:  # too long for one item: sentence by sentence
        import numpy as np

        from ..rendering import Result

        audio = np.concatenate([chunk.audio for chunk in synth.speak(text)])
        result = Result(None, text, audio, synth.voice.sample_rate)
    else:
        result = synth.synthesize(text)
    elapsed = time.perf_counter() - started
    if output == "-":
        import soundfile

        buffer = io.BytesIO()
        soundfile.write(buffer, result.audio, result.sample_rate, format="WAV", subtype="PCM_16")
        _write_stdout(buffer.getvalue())
    else:
        from ..batch import write_audio_atomic

        write_audio_atomic(Path(output), result.audio, result.sample_rate)
    if params["verbose"]:
        click.echo(
            f"{result.audio_seconds:.2f} s of audio in {elapsed:.2f} s "
            f"({result.audio_seconds / max(elapsed, 1e-9):.1f}x real time), "
            f"{result.decoder_steps} decoder steps",
            err=True,
        )


def _stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def _check_output_file(output: str) -> None:
    """Fail before any work when -o names no writable audio file."""
    import os

    _audio_format(output)
    path = Path(output)
    folder = path.parent
    if path.is_dir():
        raise click.BadParameter(f"{output!r} is a folder; give a file name", param_hint="'-o'")
    if not folder.is_dir():
        raise click.BadParameter(f"folder {str(folder)!r} does not exist", param_hint="'-o'")
    if not os.access(folder, os.W_OK):
        raise click.BadParameter(f"cannot write into {str(folder)!r}", param_hint="'-o'")


def _read_stdin_text() -> str:
    """Standard input as strict UTF-8 (a leading BOM dropped); a usage error otherwise."""
    data = sys.stdin.buffer.read()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise click.UsageError("standard input looks like UTF-16; convert it to UTF-8")
    try:
        return data.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
    except UnicodeDecodeError as exc:
        byte = data[exc.start : exc.start + 1].hex()
        raise click.UsageError(
            f"standard input is not valid UTF-8 (byte 0x{byte} at offset {exc.start})"
        ) from exc


def _say_raw(synth, text: str) -> None:
    """16-bit PCM of each sentence (after the pause before it) as soon as it is rendered."""
    import numpy as np

    for chunk in synth.speak(text):
        _write_stdout((np.clip(chunk.audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes())


def _write_stdout(data: bytes) -> None:
    """All of `data` to standard output: a pipe closed mid-write raises BrokenPipeError.

    (A write the reader cut short returns a short count instead of raising; the next one raises.)
    """
    stdout = sys.stdout.buffer
    view = memoryview(data)
    while view:
        written = stdout.write(view)
        if not written:
            raise BrokenPipeError("standard output accepts no more data")
        view = view[written:]
    stdout.flush()
