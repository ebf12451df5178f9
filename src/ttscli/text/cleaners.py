"""NVIDIA's english_cleaners: transliterate, lowercase, numbers, abbreviations, whitespace."""

from __future__ import annotations

import re

from .transliterate import transliterate

# (abbreviation, expansion), applied one after the other in this order; the period is consumed.
ABBREVIATIONS: tuple[tuple[str, str], ...] = (
    ("mrs", "misess"),
    ("mr", "mister"),
    ("dr", "doctor"),
    ("st", "saint"),
    ("co", "company"),
    ("jr", "junior"),
    ("maj", "major"),
    ("gen", "general"),
    ("drs", "doctors"),
    ("rev", "reverend"),
    ("lt", "lieutenant"),
    ("hon", "honorable"),
    ("sgt", "sergeant"),
    ("capt", "captain"),
    ("esq", "esquire"),
    ("ltd", "limited"),
    ("col", "colonel"),
    ("ft", "fort"),
)
_ABBREVIATION_PASSES = tuple(
    (re.compile(rf"\b{abbr}\.", re.IGNORECASE), expansion) for abbr, expansion in ABBREVIATIONS
)
_ANY_ABBREVIATION = re.compile(
    r"\b(?:" + "|".join(abbr for abbr, _ in ABBREVIATIONS) + r")\.", re.IGNORECASE
)
_ABBREVIATION_SET = frozenset(abbr for abbr, _ in ABBREVIATIONS)
_LONGEST_ABBREVIATION = max(len(abbr) for abbr in _ABBREVIATION_SET)
_WHITESPACE = re.compile(r"\s+")
_DIGIT = re.compile(r"[0-9]")


def _may_hold_abbreviation(text: str) -> bool:
    """Whether some pass of expand_abbreviations matches `text` (a fast scan of its periods).

    A pass matches where a whole word (``\\w`` run) equal to its abbreviation, in any case, is
    followed by ".". If no pass matches the text, none changes it.
    """
    if not text.isascii():  # Unicode case folding ("ſt." matches "st."): ask the regex
        return _ANY_ABBREVIATION.search(text) is not None
    dot = text.find(".")
    while dot >= 0:
        start = dot
        while start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_"):
            start -= 1
            if dot - start > _LONGEST_ABBREVIATION:
                break
        else:
            if text[start:dot].lower() in _ABBREVIATION_SET:
                return True
        dot = text.find(".", dot + 1)
    return False


def expand_abbreviations(text: str) -> str:
    """Expand the titles and abbreviations NVIDIA knows ("dr." -> "doctor"), pass by pass."""
    if not _may_hold_abbreviation(text):
        return text
    for pattern, expansion in _ABBREVIATION_PASSES:
        text = pattern.sub(expansion, text)
    return text


def collapse_whitespace(text: str) -> str:
    """Replace each run of whitespace with one space (leading and trailing runs too)."""
    if text.isprintable() and "  " not in text:  # " " is the only printable whitespace
        return text
    return _WHITESPACE.sub(" ", text)


def english_cleaners(text: str, frontend: str = "dle") -> str:
    """NVIDIA's english_cleaners on one plain-text segment (no brace handling here)."""
    text = transliterate(text, frontend).lower()
    if _DIGIT.search(text) is not None:
        from .numbers import normalize_numbers

        text = normalize_numbers(text)
    return collapse_whitespace(expand_abbreviations(text))
