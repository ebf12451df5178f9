"""`ttscli voices`, `download`, `convert` and `info`: managing voices and checkpoint files."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import click

from .options import no_dash


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def voices(as_json: bool) -> None:
    """List the voices ttscli knows, and whether each is installed.

    \b
    Searched, in order: TTSCLI_HOME (default ~/.cache/ttscli), then the folder where
    NVIDIA's torch.hub entrypoints cache their files (<TORCH_HOME>/checkpoints).

    \b
    Examples:
      ttscli voices
      ttscli voices --json
    """
    from ..voices import list_voices

    infos = list_voices()
    if as_json:
        keys = ("name", "kind", "precision", "status", "location", "size_bytes")
        click.echo(json.dumps([{k: getattr(i, k) for k in keys} for i in infos], indent=1))
        return
    header = ("NAME", "KIND", "PRECISION", "STATUS", "SIZE", "LOCATION")
    rows = [
        (i.name, i.kind, i.precision, i.status, _size(i.size_bytes), i.location or "-")
        for i in infos
    ]
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _size(size_bytes: int | None) -> str:
    if size_bytes is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size_bytes < 1024 or unit == "GiB":
            return f"{size_bytes:.0f} {unit}" if unit == "B" else f"{size_bytes:.1f} {unit}"
        size_bytes /= 1024
    return "-"


@click.command()
@click.argument("name")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def download(name: str, quiet: bool) -> None:
    """Download NVIDIA's published weights for voice NAME into TTSCLI_HOME.

    Partial downloads resume where they stopped; files are verified (size, and sha256 after
    the first download) and renamed into place only when complete. TTSCLI_DOWNLOAD_BASE
    replaces the URLs' folder, for mirrors and air-gapped sites.

    \b
    Examples:
      ttscli download nvidia-ljspeech
      ttscli download nvidia-ljspeech-hifigan
      TTSCLI_DOWNLOAD_BASE=http://mirror.local/nvidia ttscli download nvidia-ljspeech-fp16
    """
    from tqdm import tqdm

    from ..download import download as fetch
    from ..errors import DownloadError
    from ..voices import NVIDIA_VOICES, find_file, torch_hub_checkpoints, ttscli_home

    if name not in NVIDIA_VOICES:
        raise click.BadParameter(
            f"{name!r} is not downloadable; choose one of {', '.join(NVIDIA_VOICES)}",
            param_hint="NAME",
        )
    voice = NVIDIA_VOICES[name]
    for kind, url in voice.urls.items():
        file_name = url.rsplit("/", 1)[1]
        found = find_file(file_name)
        if found:
            click.echo(f"{file_name}: already installed at {found}", err=True)
            continue
        with tqdm(
            desc=file_name,
            unit="B",
            unit_scale=True,
            disable=quiet,
            file=sys.stderr,
        ) as bar:

            def progress(done: int, total: int | None, bar=bar) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()

            try:
                path = fetch(url, ttscli_home(), progress=progress, verify=_checker(kind))
            except DownloadError as exc:
                raise click.ClickException(
                    f"{exc}\nTo install by hand, put {' and '.join(voice.files.values())} "
                    f"in {ttscli_home()} (or {torch_hub_checkpoints()})."
                ) from exc
        click.echo(f"{file_name}: saved to {path}", err=True)


def _checker(kind: str) -> Callable[[Path], None]:
    """A download check: the file must read as a `kind` checkpoint (before it is installed)."""

    def check(path: Path) -> None:
        from ..checkpoints import inspect_checkpoint

        found = inspect_checkpoint(path)["kind"]
        if found != kind:
            raise ValueError(f"it holds a {found} checkpoint, expected a {kind} one")

    return check


@click.command()
@click.argument("src", type=click.Path(exists=True))
@click.argument(
    "dst",
    type=click.Path(dir_okay=False),
    callback=no_dash("a checkpoint is written to a file (atomically), not to standard output"),
)
@click.option("--fp16", is_flag=True, help="Store the weights in half precision (half the size).")
def convert(src: str, dst: str, fp16: bool) -> None:
    """Convert a checkpoint SRC into ttscli's safe format DST.

    Any format the loaders read works (DLE/torch.hub, NVIDIA/tacotron2, NVIDIA/waveglow's
    pickled model, HiFi-GAN generators and jik876 release folders); the result loads with
    torch.load(weights_only=True) and gives the same output as SRC. A HiFi-GAN keeps its
    origin (NVIDIA's or jik876's), which decides its default denoiser strength.

    \b
    Examples:
      ttscli convert waveglow_256channels_universe_v5.pt waveglow.pt
      ttscli convert nvidia_tacotron2pyt_fp32_20190427 tacotron2.pt --fp16
      ttscli convert LJ_FT_T2_V2/ hifigan.pt
    """
    import torch

    from ..checkpoints import inspect_checkpoint, load_model, save_model

    details = inspect_checkpoint(src)
    kind = details["kind"]
    model = load_model(kind, src)
    if fp16:
        model = model.to(torch.float16)
    metadata = {"converted_from": Path(src).name}
    if details.get("origin"):
        metadata["origin"] = details["origin"]
    save_model(kind, model, dst, metadata=metadata)
    click.echo(f"{kind} written to {dst}" + (" (fp16)" if fp16 else ""), err=True)


@click.command()
@click.argument("path", type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(path: str, as_json: bool) -> None:
    """Describe a checkpoint file: format, model, config, size, and whether it loads safely.

    PATH may also be a jik876 HiFi-GAN release folder (its generator file is described).

    \b
    Examples:
      ttscli info nvidia_tacotron2pyt_fp32_20190427
      ttscli info waveglow_256channels_universe_v5.pt --json
      ttscli info LJ_FT_T2_V2/
    """
    from ..checkpoints import inspect_checkpoint

    details = inspect_checkpoint(path)
    if as_json:
        click.echo(json.dumps(details, indent=1, default=str))
        return
    for key, value in details.items():
        if isinstance(value, dict):
            click.echo(f"{key}:")
            for k, v in value.items():
                click.echo(f"  {k}: {v}")
        else:
            click.echo(f"{key}: {value}")
