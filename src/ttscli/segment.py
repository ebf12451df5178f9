"""Splitting text into sentence-sized pieces that fit the decoder's step budget."""

from __future__ import annotations

import re

# A sentence ends at . ! ? (possibly repeated, possibly followed by closing quotes/brackets)
# followed by whitespace. ARPAbet groups in braces never contain these, so they are not cut.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")
_CLAUSE_END = re.compile(r"(?<=[,;:])\s+|\s+(?=[-\u2013\u2014]\s)")
_WORD = re.compile(r"\{[^{}]*\}|\S+")


def _no_sentence_end_before(text: str, end: int) -> bool:
    """A period after an abbreviation the front end expands ("Mrs.") or an initial ("J.")."""
    from .text.cleaners import ABBREVIATIONS

    if text[end - 1] != ".":
        return False
    word = re.search(r"(\w+)\.$", text[max(0, end - 12) : end])
    if word is None:
        return False
    word = word.group(1)
    return len(word) == 1 or word.lower() in {a for a, _ in ABBREVIATIONS}


def split_sentences(text: str) -> list[str]:
    """Split text at sentence ends; pieces keep their punctuation and are stripped.

    A period after an abbreviation that the front end expands ("Mrs.", "Dr.") or after an
    initial ("J.") does not end a sentence.
    """
    pieces = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        if _no_sentence_end_before(text, match.start()):
            continue
        piece = text[start : match.start() + _closing_len(match)].strip()
        if piece:
            pieces.append(piece)
        start = match.end()
    tail = text[start:].strip()
    if tail:
        pieces.append(tail)
    return pieces


def _closing_len(match: re.Match[str]) -> int:
    # closing quotes/brackets belong to the sentence they close
    return len(match.group(0)) - len(match.group(0).lstrip("\"')]"))


def split_to_budget(text: str, max_chars: int) -> list[str]:
    """Split one sentence at clause, then word boundaries so each piece has <= max_chars.

    A single word longer than the budget is cut into chunks of max_chars characters.
    """
    if max_chars < 1:
        raise ValueError("max_chars must be >= 1")
    text = text.strip()
    if len(text) <= max_chars:
        return [text] if text else []
    clauses = [c for c in _CLAUSE_END.split(text) if c and c.strip()]
    if len(clauses) > 1:
        return _pack(clauses, max_chars, lambda c: split_to_budget(c, max_chars))
    words = _WORD.findall(text)
    if len(words) > 1:
        return _pack(words, max_chars, lambda w: _cut(w, max_chars))
    return _cut(text, max_chars)


def _pack(parts: list[str], max_chars: int, split_part) -> list[str]:
    """Greedily join parts with spaces into pieces of at most max_chars characters."""
    pieces: list[str] = []
    current = ""
    for part in parts:
        part = part.strip()
        if not part:
            continue
        candidate = f"{current} {part}" if current else part
        if len(candidate) <= max_chars:
            current = candidate
            continue
        if current:
            pieces.append(current)
        if len(part) <= max_chars:
            current = part
        else:
            sub = split_part(part)
            pieces.extend(sub[:-1])
            current = sub[-1] if sub else ""
    if current:
        pieces.append(current)
    return pieces


def _cut(word: str, max_chars: int) -> list[str]:
    return [word[i : i + max_chars] for i in range(0, len(word), max_chars)]


SHORT_SENTENCE_CHARS = 20


def segment(text: str, max_chars: int) -> list[str]:
    """Sentences of text, each split further until it fits max_chars characters.

    A sentence shorter than SHORT_SENTENCE_CHARS is joined to the next one when both fit the
    budget: decoders stop unreliably on a word or two.
    """
    sentences: list[str] = []
    for sentence in split_sentences(text):
        if sentences and len(sentences[-1]) < SHORT_SENTENCE_CHARS:
            joined = f"{sentences[-1]} {sentence}"
            if len(joined) <= max_chars:
                sentences[-1] = joined
                continue
        sentences.append(sentence)
    pieces: list[str] = []
    for sentence in sentences:
        pieces.extend(split_to_budget(sentence, max_chars))
    return pieces


def halve(text: str) -> list[str]:
    """Split a piece into two at the word boundary nearest its middle (for a retry)."""
    words = _WORD.findall(text)
    if len(words) < 2:
        mid = len(text) // 2
        return [p for p in (text[:mid], text[mid:]) if p.strip()]
    total = len(text)
    best, best_gap, pos = 1, total, 0
    for i, word in enumerate(words[:-1], start=1):
        pos = text.find(word, pos) + len(word)
        gap = abs(total / 2 - pos)
        if gap < best_gap:
            best, best_gap = i, gap
    return [" ".join(words[:best]), " ".join(words[best:])]
