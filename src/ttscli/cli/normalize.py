"""`ttscli normalize`: show what the text front end makes of a text."""

from __future__ import annotations

import json
import sys

import click


@click.command()
@click.argument("text")
@click.option("--ids", "show_ids", is_flag=True, help="Print the symbol ids instead of the text.")
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object per line: text, cleaned, ids."
)
@click.option(
    "--frontend",
    type=click.Choice(["dle", "original"]),
    default="dle",
    show_default=True,
    envvar="TTSCLI_FRONTEND",
    show_envvar=True,
    help="dle: the torch.hub weights' front end; original: NVIDIA/tacotron2's (Unidecode).",
)
def normalize(text: str, show_ids: bool, as_json: bool, frontend: str) -> None:
    """Print TEXT as the voice reads it: numbers, abbreviations and symbols spelled out.

    TEXT may be `-` to read standard input line by line; each result is printed as soon as
    its line arrives.

    \b
    Examples:
      ttscli normalize "Dr. Smith paid \\$3.50 on the 2nd of May, 1984."
      ttscli normalize --ids "hello world"
      cat book.txt | ttscli normalize --json -
    """
    from ..text import clean_text, text_to_sequence

    lines = _stdin_lines() if text == "-" else [text]
    for line in lines:
        if as_json:
            ids = text_to_sequence(line, frontend=frontend)
            row = {"text": line, "cleaned": clean_text(line, frontend=frontend), "ids": ids}
            click.echo(json.dumps(row, ensure_ascii=False))
        elif show_ids:
            click.echo(" ".join(map(str, text_to_sequence(line, frontend=frontend))))
        else:
            click.echo(clean_text(line, frontend=frontend))
        sys.stdout.flush()


def _stdin_lines():
    """Standard input's lines as strict UTF-8 (a leading BOM dropped); a usage error otherwise."""
    stream = sys.stdin.buffer
    for number, raw in enumerate(iter(stream.readline, b""), start=1):
        if number == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")
        try:
            yield raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            byte = raw[exc.start : exc.start + 1].hex()
            raise click.UsageError(
                f"standard input line {number} is not valid UTF-8 (byte 0x{byte} at column "
                f"{exc.start + 1})"
            ) from exc
