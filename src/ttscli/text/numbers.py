"""Numbers to words: NVIDIA's six number passes over lowercase ASCII text, with inflect.

The passes run in this order over the whole text (after transliteration and lowercasing):

a. ``[0-9][0-9,]+[0-9]``: commas inside a digit run are deleted (``1,5`` -> ``15``).
b. ``£<digits>`` -> pounds. Skipped: transliteration has already removed every ``£`` (DLE
   deletes it, Unidecode turns it into "PS"), so the pass can never match.
c. ``$<amount>``: dollars and cents ("three dollars, fifty cents").
d. ``<digits>.<digits>``: the point becomes " point ".
e. ``<digits>(st|nd|rd|th)``: ordinal, with inflect's defaults ("one hundred and first").
f. ``<digits>``: years 1001-2999 read in pairs ("nineteen eighty-four"), anything else with
   inflect and no "and" ("twelve thousand, three hundred forty-five").

Where NVIDIA's code crashes, this module reads the text instead (output otherwise identical):

- A dollar amount whose whole or fractional part still holds a comma (``$,5``, ``$1,.5``,
  ``$.,5``; NVIDIA: ValueError) ignores the commas: "five dollars", "one dollar, five cents",
  "five cents".
- A number of 10^36 or more (37 or more digits after leading zeros; NVIDIA: inflect's
  NumOutOfRangeError) is read digit by digit: ``1234...`` -> "one two three four ...". As an
  ordinal its last digit takes the ordinal form (``99...9th`` -> "nine nine ... ninth"). This
  covers plain numbers, ordinals, either side of a decimal point and dollar amounts, and never
  converts the digit string to an int, so a line of a million digits is fine.

``import inflect`` takes seconds, so it happens on the first number, not at import time. Its
results are cached, and calls are serialised because its engine keeps state between calls.
"""

from __future__ import annotations

import functools
import re
import threading

# (?<![0-9]) skips starts inside a digit run: NVIDIA's patterns can only match at the start of
# a run, and without it Python retries every position of a long run (quadratic time).
_COMMA_NUMBER = re.compile(r"([0-9][0-9,]+[0-9])")
_DOLLARS = re.compile(r"\$([0-9.,]*[0-9]+)")
_DECIMAL = re.compile(r"(?<![0-9])([0-9]+)\.([0-9]+)")
_ORDINAL = re.compile(r"(?<![0-9])([0-9]+)(st|nd|rd|th)")
_NUMBER = re.compile(r"[0-9]+")

_MAX_DIGITS = 36  # inflect names numbers up to 10^36 - 1 (decillions)
_DIGIT_WORDS = "zero one two three four five six seven eight nine".split()
_ORDINAL_DIGIT_WORDS = "zeroth first second third fourth fifth sixth seventh eighth ninth".split()

_inflect_lock = threading.Lock()


@functools.cache
def _engine():
    import inflect

    return inflect.engine()


def _inflect(*args, **kwargs) -> str:
    with _inflect_lock:
        return _engine().number_to_words(*args, **kwargs)


def _significant(digits: str) -> str:
    """`digits` without leading zeros ("0" for zero): what str(int(digits)) gives."""
    return digits.lstrip("0") or "0"


def _digit_by_digit(digits: str, ordinal: bool = False) -> str:
    words = [_DIGIT_WORDS[ord(d) - 48] for d in digits]
    if ordinal:
        words[-1] = _ORDINAL_DIGIT_WORDS[ord(digits[-1]) - 48]
    return " ".join(words)


@functools.lru_cache(maxsize=8192)
def cardinal_words(digits: str) -> str:
    """Pass f: the words NVIDIA reads for the digit run `digits`."""
    digits = _significant(digits)
    if len(digits) > _MAX_DIGITS:
        return _digit_by_digit(digits)
    n = int(digits)
    try:
        if 1000 < n < 3000:
            if n == 2000:
                return "two thousand"
            if 2000 < n < 2010:
                return "two thousand " + _inflect(n % 100)
            if n % 100 == 0:
                return _inflect(n // 100) + " hundred"
            return _inflect(n, andword="", zero="oh", group=2).replace(", ", " ")
        return _inflect(n, andword="")
    except Exception:  # inflect failing must not make the text unreadable
        return _digit_by_digit(digits)


@functools.lru_cache(maxsize=8192)
def ordinal_words(digits: str, suffix: str) -> str:
    """Pass e: the words for `digits` followed by an ordinal suffix (the suffix is not checked)."""
    digits = _significant(digits)  # inflect ignores leading zeros here too
    if len(digits) > _MAX_DIGITS:
        return _digit_by_digit(digits, ordinal=True)
    try:
        return _inflect(digits + suffix)
    except Exception:  # inflect failing must not make the text unreadable
        return _digit_by_digit(digits, ordinal=True)


def _dollars(match: re.Match) -> str:
    amount = match.group(1)
    parts = amount.split(".")
    if len(parts) > 2:
        return amount + " dollars"
    dollars = _significant(parts[0].replace(",", ""))
    cents = _significant(parts[1].replace(",", "")) if len(parts) > 1 else "0"
    dollar_unit = "dollar" if dollars == "1" else "dollars"
    cent_unit = "cent" if cents == "1" else "cents"
    if dollars != "0" and cents != "0":
        return f"{dollars} {dollar_unit}, {cents} {cent_unit}"
    if dollars != "0":
        return f"{dollars} {dollar_unit}"
    if cents != "0":
        return f"{cents} {cent_unit}"
    return "zero dollars"


def normalize_numbers(text: str) -> str:
    """Spell out every number in lowercase ASCII `text` (passes a to f above)."""
    if "," in text:
        text = _COMMA_NUMBER.sub(lambda m: m.group(1).replace(",", ""), text)
    if "$" in text:
        text = _DOLLARS.sub(_dollars, text)
    if "." in text:
        text = _DECIMAL.sub(r"\1 point \2", text)
    text = _ORDINAL.sub(lambda m: ordinal_words(m.group(1), m.group(2)), text)
    return _NUMBER.sub(lambda m: cardinal_words(m.group(0)), text)
