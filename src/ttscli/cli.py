"""The `ttscli` command line: parses options, calls the library, reports errors."""

import click

from . import __version__

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "TTSCLI"}


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="ttscli")
def cli() -> None:
    """Text to speech with NVIDIA's Tacotron 2 and WaveGlow."""


def main() -> None:
    cli()
