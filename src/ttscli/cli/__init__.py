"""The `ttscli` command line: parses options, calls the library, reports errors."""

from __future__ import annotations

import errno
import io
import sys

import click

from .. import __version__
from ..errors import TTSError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class TTSGroup(click.Group):
    """A group that turns library errors into one-line messages and exit codes."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except TTSError as exc:
            raise click.ClickException(str(exc)) from exc
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)
        except BrokenPipeError:
            # the reader went away (e.g. `| head`): stop quietly, as a shell's SIGPIPE would;
            # stdout now points at devnull so the flush at exit cannot fail again
            import os

            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError):
                pass
            sys.exit(141)
        except OSError as exc:  # a file-system failure no command turned into a message
            where = f": {exc.filename}" if exc.filename else ""
            raise click.ClickException(f"{exc.strerror or exc}{where}") from exc


@click.group(cls=TTSGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="ttscli")
def cli() -> None:
    """Text to speech with NVIDIA's Tacotron 2 and WaveGlow or HiFi-GAN.

    \b
    Examples:
      ttscli say "hello world" -o hello.wav
      ttscli batch book.txt -o wavs/
      ttscli normalize "Dr. Smith paid $3.50."
      ttscli voices

    Run `ttscli COMMAND -h` for a command's options and examples.
    """


def _register() -> None:
    from .batch import batch
    from .normalize import normalize
    from .say import say
    from .serve import serve
    from .voices import convert, download, info, voices

    for command in (normalize, say, batch, voices, download, convert, info, serve):
        cli.add_command(command)


_register()


class _ClosedStdout(io.TextIOBase):
    """Standard output when the process started with it closed: writing is an error (exit 1)."""

    @property
    def buffer(self) -> _ClosedStdout:
        return self

    def isatty(self) -> bool:
        return False

    def write(self, data: object) -> int:
        raise OSError(errno.EBADF, "standard output is closed")


def main() -> None:
    if sys.stdout is None:  # started as `ttscli ... >&-`
        sys.stdout = _ClosedStdout()
    cli(prog_name="ttscli")
