"""Non-ASCII text to ASCII: DLE's transliteration table, or the Unidecode package.

"dle" (the torch.hub weights' front end): a character below U+007F is kept as it is, control
characters included. Every other character (DEL included) is looked up in the table shipped as
``ttscli/data/dle_transliteration.json``: first ``replacements``, then ``homoglyphs``; a
character in neither is deleted, silently. The table is loaded on the first character that
needs it.

"original" (NVIDIA/tacotron2): ``unidecode.unidecode``, imported on the first non-ASCII text.
Lone surrogates (U+D800..U+DFFF) are deleted first: Unidecode deletes them too, but with a
RuntimeWarning, and this front end emits no warnings.
"""

from __future__ import annotations

import functools
import json
import re

_DEL = 0x7F
_SURROGATES = re.compile("[\ud800-\udfff]")


class _DleTable(dict):
    """Code point -> ASCII replacement, for ``str.translate``; unknown characters map to None."""

    def __missing__(self, code_point: int) -> None:
        return None  # deleted (only characters >= U+007F are ever missing)


@functools.cache
def dle_table() -> dict[int, str | int | None]:
    """The effective one-character map of DLE's transliteration, as a ``str.translate`` table."""
    from importlib.resources import files

    raw = files("ttscli").joinpath("data/dle_transliteration.json").read_text(encoding="utf-8")
    data = json.loads(raw)
    table = _DleTable((code, code) for code in range(_DEL))  # below DEL: unchanged
    for source in (data["homoglyphs"], data["replacements"]):  # replacements win
        for char, ascii_text in source.items():
            if len(char) == 1:  # multi-character keys exist in the data but never match
                table[ord(char)] = ascii_text
    return table


def transliterate_dle(text: str) -> str:
    """DLE's transliteration of `text` (ASCII out)."""
    if text.isascii() and "\x7f" not in text:
        return text
    return text.translate(dle_table())


def transliterate_unidecode(text: str) -> str:
    """NVIDIA/tacotron2's transliteration of `text`: Unidecode, minus its surrogate warning."""
    if text.isascii():
        return text
    from unidecode import unidecode

    return unidecode(_SURROGATES.sub("", text))


def transliterate(text: str, frontend: str) -> str:
    """Transliterate `text` the way front end `frontend` ("dle" or "original") does."""
    if frontend == "original":
        return transliterate_unidecode(text)
    return transliterate_dle(text)
