"""`ttscli say` and `ttscli batch`: text to audio files."""

from __future__ import annotations

import contextlib
import io
import sys
import time
from collections import deque
from pathlib import Path

import click

from ..errors import TTSError
from .cluster import build_ray_pool, check_ray_options, ray_options, report_workers
from .options import build_synthesizer, no_dash, synthesis_options

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

        from ..synthesizer import Result

        audio = np.concatenate(list(_sentence_audio(synth, text)))
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
        from ..batchio import write_audio_atomic

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


def _sentence_audio(synth, text: str):
    """Each sentence's audio as it is ready, after the pause that precedes it; a
    ClickException at the end when any sentence failed (the others were yielded)."""
    import numpy as np

    from ..segment import segment
    from ..text import check_speakable

    # the pieces one item of this text would be rendered as (short sentences joined), each
    # short enough to be an item of its own
    sentences = segment(text, min(synth.max_piece_chars, synth.config.max_chars)) or [text]
    speakable = []
    for sentence in sentences:  # as for one item: sentences with nothing to say are left out
        try:
            check_speakable(sentence, synth.voice.frontend)
            speakable.append(sentence)
        except TTSError:
            pass
    sentences = speakable or sentences[:1]  # nothing at all: let the first one say why
    pause = np.zeros(int(synth.pause_seconds * synth.voice.sample_rate), np.float32)
    failed = []
    for result in synth.stream((n, s) for n, s in enumerate(sentences)):
        if result.error:
            failed.append(result.error)
            continue
        yield result.audio if result.id == 0 else np.concatenate([pause, result.audio])
    if failed:
        raise click.ClickException(f"{len(failed)} sentence(s) failed; first: {failed[0]}")


def _say_raw(synth, text: str) -> None:
    import numpy as np

    for chunk in _sentence_audio(synth, text):
        _write_stdout((np.clip(chunk, -1.0, 1.0) * 32767.0).astype("<i2").tobytes())


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


@click.command()
@click.argument(
    "input_path",
    metavar="INPUT",
    type=click.Path(exists=True, dir_okay=False, readable=True, allow_dash=True),
)
@click.option(
    "-o",
    "--output-dir",
    required=True,
    type=click.Path(file_okay=False),
    callback=no_dash("a batch writes one audio file per line into a folder"),
    help="Folder for the audio files and manifest.jsonl (created if missing).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "text", "id-text", "jsonl"]),
    default="auto",
    show_default=True,
    help="Input format; auto: JSONL for .jsonl, id|text when the first line starts so, else text.",
)
@click.option(
    "--audio-format",
    type=click.Choice(["wav", "flac"]),
    default="wav",
    show_default=True,
    help="Audio file type.",
)
@click.option("--overwrite", is_flag=True, help="Redo every line, even those already done.")
@ray_options
@synthesis_options
def batch(input_path: str, output_dir: str, fmt: str, audio_format: str, overwrite: bool, **params):
    """Speak every line of INPUT into its own audio file in a folder.

    INPUT holds one utterance per line: plain text, `id|text` (LJSpeech style) or JSONL
    ({"id": ..., "text": ...}); `-` reads standard input as it arrives. Each line becomes
    DIR/<id>.wav (the id, or the line number as 000001), and DIR/manifest.jsonl gets one row
    per attempt with its status. Re-running the same command resumes: finished lines are
    skipped, failed ones tried again, and lines spoken with another voice or other sound
    options (--seed, --sigma, --pause...) spoken again. The exit status is 1 if any line
    failed, 2 for usage mistakes.

    \b
    Examples:
      ttscli batch book.txt -o wavs/
      ttscli batch metadata.csv --format id-text -o wavs/ --batch-size 8
      producer | ttscli batch - -o wavs/
      ttscli batch corpus.txt -o /shared/wavs --ray auto     # on a running Ray cluster
    """
    from ..batchio import Manifest, clean_leftovers, read_items

    check_ray_options(click.get_current_context(), params)
    out_dir = Path(output_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        clean_leftovers(out_dir)
    except OSError as exc:
        raise click.BadParameter(
            f"cannot use {output_dir!r} as the output folder: {exc.strerror or exc}",
            param_hint="'-o'",
        ) from exc
    ext = "." + audio_format
    if input_path == "-":
        stream, path, idle = sys.stdin.buffer, None, 0.2
    else:
        try:
            stream, path, idle = open(input_path, "rb"), input_path, None  # noqa: SIM115
        except OSError as exc:
            raise click.ClickException(f"cannot read {input_path}: {exc.strerror}") from exc
    pool = build_ray_pool(params, out_dir, ext) if params["ray_address"] is not None else None
    with stream, Manifest(out_dir) as manifest, pool or contextlib.nullcontext():
        synth = pool or build_synthesizer(params)
        if overwrite:
            manifest.reset()
        state = manifest.load()
        runner = _BatchRun(synth, manifest, state, out_dir, ext, overwrite, params["quiet"])
        runner.settings = _settings_key(params)
        runner.bar.total = _count_lines(path)
        try:
            runner.run(read_items(stream, fmt, path=path, idle_seconds=idle))
        finally:
            runner.bar.close()  # before any message, so none is glued to the bar
    if pool is not None:
        clean_leftovers(out_dir)  # temporary files of workers that died
    runner.finish(report=(lambda: report_workers(pool)) if pool is not None else None)


def _settings_key(params: dict) -> str:
    """What decides a line's audio: the voice's files and the options that change the sound."""
    from ..batchio import settings_key
    from ..voices import voice_signature

    voice = voice_signature(params["voice"], params["tacotron2_path"], params["waveglow_path"])
    options = ("sigma", "denoiser_strength", "seed", "precision", "pause_seconds",
               "max_decoder_steps")  # fmt: skip
    if params["seed"] is not None:  # a seed repeats a line's audio only at the same batch size
        options += ("batch_size",)
    return settings_key({"voice": voice, **{k: params[k] for k in options}})


def _count_lines(path: str | None, max_bytes: int = 256 << 20) -> int | None:
    """Lines in an input file, for the progress bar's total (None: stdin or a huge file)."""
    import os

    try:
        if path is None or os.path.getsize(path) > max_bytes:
            return None
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data.count(b"\n") + (0 if not data or data.endswith(b"\n") else 1)


class _BatchRun:
    """Feeds parsed lines to the synthesizer and records each line's outcome in order."""

    def __init__(self, synth, manifest, state, out_dir: Path, ext: str, overwrite: bool, quiet):
        self.synth = synth
        self.manifest = manifest
        self.state = state
        self.out_dir = out_dir
        self.ext = ext
        self.overwrite = overwrite
        self.counts = {"ok": 0, "error": 0, "skipped": 0, "done before": 0}
        self.errors: list[str] = []
        self.audio_seconds = 0.0
        self.started = time.perf_counter()
        self.quiet = quiet
        self.settings: str | None = None  # settings_key of this run (resume compares it)
        from tqdm import tqdm

        # None: shown only on a terminal, so logs of redirected stderr get no bar updates
        self.bar = tqdm(
            unit=" lines", disable=True if quiet else None, file=sys.stderr, dynamic_ncols=True
        )

    def run(self, items) -> None:
        from ..batchio import FLUSH
        from ..synthesizer import FLUSH as SYNTH_FLUSH

        pending: deque = deque()

        def feed():
            for item in items:
                if item is FLUSH:
                    yield SYNTH_FLUSH
                    continue
                pending.append(item)
                if self._needs_synthesis(item):
                    yield (item, item.text)

        for result in self.synth.stream(feed()):
            while pending and pending[0] is not result.id:
                self._record_other(pending.popleft())
            pending.popleft()
            self._record_result(result)
        while pending:
            self._record_other(pending.popleft())

    def _needs_synthesis(self, item) -> bool:
        from ..batchio import should_skip

        if item.error or item.blank:
            return False
        return self.overwrite or not should_skip(
            item, self.out_dir, self.state, self.ext, self.settings
        )

    def _record_other(self, item) -> None:
        from ..batchio import error_row, skipped_row

        if item.error:
            self._append(error_row(item, item.error), "error", item.error, item)
        elif item.blank:
            if item.line in self.state.blank_lines and not self.overwrite:
                self.counts["done before"] += 1
            else:
                self._append(skipped_row(item), "skipped")
        else:
            self.counts["done before"] += 1
        self.bar.update(1)

    def _record_result(self, result) -> None:
        from ..batchio import audio_path, error_row, ok_row, write_audio_atomic

        item = result.id
        error = result.error
        if not error:
            written = getattr(result, "written", None)  # a Ray worker wrote it already
            path = (
                self.out_dir / written if written else audio_path(self.out_dir, item.id, self.ext)
            )
            try:
                if not written:
                    write_audio_atomic(path, result.audio, result.sample_rate)
            except TTSError as exc:  # this line's file (a folder in the way...): its row says so
                error = str(exc)
        if error:
            self._append(error_row(item, error), "error", error, item)
        else:
            rtf = result.audio_seconds / max(result.compute_seconds, 1e-9)
            row = ok_row(
                item, path.name, result.audio_seconds, result.decoder_steps, rtf, self.settings
            )
            self._append(row, "ok")
            self.audio_seconds += result.audio_seconds
        self.bar.update(1)
        wall = time.perf_counter() - self.started
        self.bar.set_postfix(
            audio=f"{self.audio_seconds:.0f}s", rtf=f"{self.audio_seconds / wall:.1f}x"
        )

    def _append(self, row: dict, status: str, message: str | None = None, item=None) -> None:
        self.manifest.append(row)
        self.counts[status] += 1
        if message and len(self.errors) < 5:
            where = f"line {item.line}" if item is not None else "?"
            self.errors.append(f"{where}: {message}")

    def finish(self, report=None) -> None:
        """Close the progress bar, print `report()` (unless quiet) and the summary; exit 1 on errors."""
        self.bar.close()
        if report is not None and not self.quiet:
            report()
        wall = time.perf_counter() - self.started
        summary = ", ".join(f"{n} {k}" for k, n in self.counts.items() if n)
        if self.counts["error"]:
            click.echo(f"{summary or 'nothing to do'}; first errors:", err=True)
            for line in self.errors:
                click.echo(f"  {line}", err=True)
            raise SystemExit(1)
        if not self.quiet:
            click.echo(
                f"{summary or 'nothing to do'}; {self.audio_seconds:.1f} s of audio in "
                f"{wall:.1f} s ({self.audio_seconds / max(wall, 1e-9):.1f}x real time)",
                err=True,
            )
