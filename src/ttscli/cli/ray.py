"""The Ray options of `ttscli batch` (`--ray`, `--workers`...) and the per-worker report."""

from __future__ import annotations

import re
from pathlib import Path

import click

from .options import synthesis_config

_ADDRESS = re.compile(r"auto|local|ray://[\w.\-]+(:\d+)?|[\w.\-]+:\d+")


def _check_address(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None or _ADDRESS.fullmatch(value):
        return value
    raise click.BadParameter(
        f"{value!r} is not a Ray address: use auto (the running cluster), HOST:PORT or "
        "ray://HOST:PORT, or --ray alone for a local one. To pass INPUT right after the "
        "flag, write --ray=ADDRESS or put --ray last.",
        ctx=ctx,
        param=param,
    )


def ray_options(func):
    """--ray [ADDRESS], --workers, --worker-threads, --gather (Ray is an optional extra)."""
    options = [
        click.option(
            "--ray",
            "ray_address",
            is_flag=False,
            flag_value="local",
            default=None,
            callback=_check_address,
            metavar="[ADDRESS]",
            envvar="TTSCLI_RAY",
            show_envvar=True,
            help="Render on Ray workers (pip install 'ttscli[ray]'): alone starts a local "
            "runtime, `auto` joins the running cluster, or give HOST:PORT / ray://HOST:PORT.",
        ),
        click.option(
            "--workers",
            type=click.IntRange(min=1),
            help="Ray workers, each loading the voice once. Default: one per GPU, else one "
            "per --worker-threads CPUs of the cluster.",
        ),
        click.option(
            "--worker-threads",
            type=click.IntRange(min=1),
            default=1,
            show_default=True,
            help="CPU threads (and Ray CPUs) per worker.",
        ),
        click.option(
            "--gather",
            is_flag=True,
            help="Workers send audio back and this process writes it. Default: workers write "
            "into the output folder, which must then be shared by every machine.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def check_ray_options(ctx: click.Context, params: dict) -> None:
    """--workers, --worker-threads and --gather mean something only with --ray."""
    if params["ray_address"] is not None:
        return
    given = [
        f"--{name.replace('_', '-')}"
        for name in ("workers", "worker_threads", "gather")
        if ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)
    ]
    if given:
        verb = "need" if len(given) > 1 else "needs"
        raise click.UsageError(f"{' and '.join(given)} {verb} --ray (Ray workers)", ctx)


def build_ray_pool(params: dict, out_dir: Path, ext: str):
    """A started-on-enter RayPool for the CLI's synthesis and Ray options."""
    from ..ray import RayOptions, RayPool

    address = params["ray_address"]
    options = RayOptions(
        address=None if address == "local" else address,
        workers=params["workers"],
        threads_per_worker=params["worker_threads"],
        gather=params["gather"],
    )
    voice_args = tuple(
        str(Path(v).resolve()) if v and Path(v).exists() else v
        for v in (params["voice"], params["tacotron2_path"], params["vocoder"])
    )
    config = synthesis_config(params)
    return RayPool(
        voice_args, config, options, out_dir, ext, name_of=lambda item: item.id,
        batch_size=params["batch_size"] or 8,
    )  # fmt: skip


def report_workers(pool) -> None:
    """One line per worker: lines, audio seconds and real-time factor while busy."""
    for stats in pool.stats:
        fate = " (died)" if stats.died else ""
        click.echo(
            f"  {stats.name} on {stats.host}{fate}: {stats.lines} lines, "
            f"{stats.audio_seconds:.1f} s of audio, {stats.real_time_factor:.1f}x real time",
            err=True,
        )
    if pool.retried_lines:
        click.echo(f"  {pool.retried_lines} line(s) retried after a worker died", err=True)
    for why in pool.not_replaced:
        click.echo(f"  not replaced, its lines went to the others: {why}", err=True)
