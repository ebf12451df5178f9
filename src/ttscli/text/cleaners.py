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
# If none of them matches the text, the passes change nothing (a pass only acts on a match).
_ANY_ABBREVIATION = re.compile(
    r"\b(?:" + "|".join(abbr for abbr, _ in ABBREVIATIONS) + r")\.", re.IGNORECASE
)
_WHITESPACE = re.compile(r"\s+")
_DIGIT = re.compile(r"[0-9]")


def expand_abbreviations(text: str) -> str:
    """Expand the titles and abbreviations NVIDIA knows ("dr." -> "doctor"), pass by pass."""
    if _ANY_ABBREVIATION.search(text) is None:
        return text
    for pattern, expansion in _ABBREVIATION_PASSES:
        text = pattern.sub(expansion, text)
    return text


def english_cleaners(text: str, frontend: str = "dle") -> str:
    """NVIDIA's english_cleaners on one plain-text segment (no brace handling here)."""
    text = transliterate(text, frontend).lower()
    if _DIGIT.search(text) is not None:
        from .numbers import normalize_numbers

        text = normalize_numbers(text)
    text = expand_abbreviations(text)
    return _WHITESPACE.sub(" ", text)
