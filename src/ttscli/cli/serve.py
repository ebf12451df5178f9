"""`ttscli serve`: the speech server's command line (options in, exit status out)."""

from __future__ import annotations

import click

from .options import DeviceType, FiniteRange


def _wyoming_uri(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    host, _, port = value.removeprefix("tcp://").rpartition(":")
    if not value.startswith("tcp://") or not host or not port.isdigit() or int(port) > 65535:
        raise click.BadParameter(f"{value!r}: expected tcp://HOST:PORT", ctx, param)
    return value


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
    help="Port to listen on (0: any free port; the URL printed says which).",
)  # fmt: skip
@click.option(
    "--voice", envvar="TTSCLI_VOICE", show_envvar=True, metavar="NAME",
    help="Default voice, loaded and warmed up at start (requests may name any installed voice). "
    "Default: NVIDIA's when installed, else the embedded ttscli-en.",
)  # fmt: skip
@click.option(
    "--device", type=DeviceType(), default="auto", show_default=True,
    envvar="TTSCLI_DEVICE", show_envvar=True,
    help="auto uses CUDA when available; cuda:N picks a GPU.",
)  # fmt: skip
@click.option(
    "--precision", type=click.Choice(["fp32", "fp16", "bf16"]), default="fp32",
    show_default=True, envvar="TTSCLI_PRECISION", show_envvar=True,
    help="fp16 needs CUDA; bf16 runs WaveGlow in bfloat16.",
)  # fmt: skip
@click.option(
    "--batch-size", type=click.IntRange(min=1), envvar="TTSCLI_BATCH_SIZE", show_envvar=True,
    help="Sentences rendered together, from all requests, shared among the render threads. "
    "Default: the voice's.",
)  # fmt: skip
@click.option(
    "--render-threads", type=click.IntRange(min=1), default=1, show_default=True,
    envvar="TTSCLI_RENDER_THREADS", show_envvar=True, metavar="N",
    help="Batches rendered at once, each on its own thread with its share of torch's threads "
    "and of the batch size.",
)  # fmt: skip
@click.option(
    "--api-key", envvar="TTSCLI_API_KEY", show_envvar=True, metavar="KEY",
    help="Require 'Authorization: Bearer KEY' (/health and /ready stay open).",
)  # fmt: skip
@click.option(
    "--cors-origin", "cors_origins", multiple=True, metavar="ORIGIN",
    help="Let web pages from ORIGIN call the server (repeatable; * for any). Default: none.",
)  # fmt: skip
@click.option(
    "--max-queue", type=click.IntRange(min=1), default=64, show_default=True,
    help="Requests that may wait to start; more are answered 429 at once.",
)  # fmt: skip
@click.option(
    "--max-chars", type=click.IntRange(min=1), default=4096, show_default=True,
    help="Longest text a request may hold (longer: 413).",
)  # fmt: skip
@click.option(
    "--timeout", "timeout_seconds", type=FiniteRange(0.1, 86400.0), default=120.0,
    show_default=True, metavar="SECONDS", help="Per-request deadline (then 504).",
)  # fmt: skip
@click.option(
    "--wyoming", metavar="tcp://HOST:PORT", callback=_wyoming_uri,
    help="Also serve Home Assistant's Wyoming protocol there.",
)  # fmt: skip
@click.option("-v", "--verbose", is_flag=True, help="Log each voice load and more.")
def serve(verbose: bool, **params) -> None:
    """Serve speech over HTTP (OpenAI's /v1/audio/speech, streaming) and optionally Wyoming.

    Requests from all clients are split into sentences and rendered together in batches.
    SIGTERM or Ctrl-C finishes the requests in flight, then exits 0.

    \b
    Examples:
      ttscli serve
      ttscli serve --host 0.0.0.0 --port 8000 --api-key secret
      ttscli serve --wyoming tcp://0.0.0.0:10200
      curl -o hi.wav localhost:8000/v1/audio/speech -H 'Content-Type: application/json' \\
           -d '{"model": "tts-1", "input": "Hello there.", "voice": "alloy"}'
    """
    import logging

    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise click.ClickException(
            f"the server needs {exc.name}: pip install 'ttscli[serve]'"
        ) from exc
    if params["wyoming"]:
        try:
            import wyoming  # noqa: F401
        except ImportError as exc:
            raise click.ClickException("--wyoming needs: pip install 'ttscli[serve]'") from exc
    from ..serve.server import ServeOptions
    from ..serve.server import serve as run_server

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    options = ServeOptions(**{**params, "cors_origins": list(params["cors_origins"])})
    status = run_server(options, announce=lambda line: click.echo(line))
    if status:
        raise SystemExit(status)
