"""`ttscli batch`: every line of an input into its own audio file, resumable, locally or on Ray."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click

from .options import build_synthesizer, no_dash, synthesis_options
from .ray import build_ray_pool, check_ray_options, ray_options, report_workers


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
    from ..batch import BatchRunner, Manifest, clean_leftovers, read_items

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
    bar = _progress_bar(params["quiet"], _count_lines(path))
    with stream, Manifest(out_dir) as manifest, pool or contextlib.nullcontext():
        renderer = pool or build_synthesizer(params)
        runner = BatchRunner(
            renderer, manifest, out_dir, ext=ext, settings=_settings_key(params),
            overwrite=overwrite, progress=bar.progress,
        )  # fmt: skip
        try:
            summary = runner.run(read_items(stream, fmt, path=path, idle_seconds=idle))
        finally:
            bar.close()  # before any message, so none is glued to the bar
    if pool is not None:
        clean_leftovers(out_dir)  # temporary files of workers that died
        if not params["quiet"]:
            report_workers(pool)
    _report(summary, params["quiet"])


def _settings_key(params: dict) -> str:
    """What decides a line's audio: the voice's files and the options that change the sound."""
    from ..batch import settings_key
    from ..voices import voice_signature

    voice = voice_signature(
        params["voice"], params["tacotron2_path"], params["vocoder"], device=params["device"]
    )
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


class _ProgressBar:
    """A tqdm bar on standard error (only on a terminal, never with -q), fed by BatchRunner."""

    def __init__(self, quiet: bool, total: int | None) -> None:
        from tqdm import tqdm

        # None: shown only on a terminal, so logs of redirected stderr get no bar updates
        self.bar = tqdm(
            total=total, unit=" lines", disable=True if quiet else None, file=sys.stderr,
            dynamic_ncols=True,
        )  # fmt: skip

    def progress(self, item, summary) -> None:
        self.bar.update(1)
        if summary.audio_seconds:
            self.bar.set_postfix(
                audio=f"{summary.audio_seconds:.0f}s", rtf=f"{summary.real_time_factor:.1f}x"
            )

    def close(self) -> None:
        self.bar.close()


def _progress_bar(quiet: bool, total: int | None) -> _ProgressBar:
    return _ProgressBar(quiet, total)


def _report(summary, quiet: bool) -> None:
    """The one-line summary (unless quiet); the first errors and exit 1 when a line failed."""
    counts = ", ".join(f"{n} {k}" for k, n in summary.counts().items() if n)
    if summary.error:
        click.echo(f"{counts or 'nothing to do'}; first errors:", err=True)
        for line in summary.first_errors:
            click.echo(f"  {line}", err=True)
        raise SystemExit(1)
    if not quiet:
        click.echo(
            f"{counts or 'nothing to do'}; {summary.audio_seconds:.1f} s of audio in "
            f"{summary.wall_seconds:.1f} s ({summary.real_time_factor:.1f}x real time)",
            err=True,
        )
