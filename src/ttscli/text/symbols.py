"""The 148-symbol table of NVIDIA's Tacotron 2: a symbol's id is its position in SYMBOLS."""

from __future__ import annotations

PAD = "_"
SPECIAL = "-"
PUNCTUATION = "!'(),.:;? "
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

#: The 84 ARPAbet phones (CMUdict's set, with stress digits), in table order.
ARPABET: tuple[str, ...] = tuple(
    "AA AA0 AA1 AA2 AE AE0 AE1 AE2 AH AH0 AH1 AH2 AO AO0 AO1 AO2 AW AW0 AW1 AW2 "
    "AY AY0 AY1 AY2 B CH D DH EH EH0 EH1 EH2 ER ER0 ER1 ER2 EY EY0 EY1 EY2 F G HH "
    "IH IH0 IH1 IH2 IY IY0 IY1 IY2 JH K L M N NG OW OW0 OW1 OW2 OY OY0 OY1 OY2 P R S SH "
    "T TH UH UH0 UH1 UH2 UW UW0 UW1 UW2 V W Y Z ZH".split()
)

#: id -> symbol. ARPAbet phones carry an "@" prefix so they cannot collide with letters.
SYMBOLS: list[str] = [PAD, SPECIAL, *PUNCTUATION, *LETTERS, *("@" + p for p in ARPABET)]

#: symbol -> id (ARPAbet entries keyed with their "@" prefix).
SYMBOL_TO_ID: dict[str, int] = {s: i for i, s in enumerate(SYMBOLS)}

#: ARPAbet phone without "@" -> id, for the text inside braces.
ARPABET_TO_ID: dict[str, int] = {p: SYMBOL_TO_ID["@" + p] for p in ARPABET}

#: Ids that carry sound: letters and ARPAbet phones (12..147).
SPEAKABLE_IDS = range(SYMBOL_TO_ID["A"], len(SYMBOLS))

# Character -> id as a 256-byte table, for `bytes.translate` (all character symbols are ASCII).
_BYTE_TABLE = bytearray(256)
for _char in (PAD, SPECIAL, *PUNCTUATION, *LETTERS):
    _BYTE_TABLE[ord(_char)] = SYMBOL_TO_ID[_char]
BYTE_TO_ID = bytes(_BYTE_TABLE)

#: Bytes that are not symbols and are dropped; the second set also drops "_" (see ids_of_chars).
NOT_SYMBOL_BYTES = bytes(b for b in range(256) if chr(b) not in SYMBOL_TO_ID)
NOT_SYMBOL_BYTES_NO_PAD = NOT_SYMBOL_BYTES + PAD.encode("ascii")


def ids_of_chars(text: str, keep_underscore: bool = True) -> list[int]:
    """Map each character of cleaned text to its id, dropping characters that are not symbols.

    keep_underscore=True reproduces NVIDIA's code on CPython 3.11/3.12, where "_" reaches the
    output as id 0 (the padding id); False reproduces the other CPython versions, which drop it.
    """
    data = text.encode("ascii", "ignore")  # non-ASCII characters are never symbols
    drop = NOT_SYMBOL_BYTES if keep_underscore else NOT_SYMBOL_BYTES_NO_PAD
    return list(data.translate(BYTE_TO_ID, drop))


def ids_of_arpabet(phones: str) -> list[int]:
    """Ids of the whitespace-separated ARPAbet phones in `phones`; unknown phones are dropped."""
    ids = []
    for phone in phones.split():
        symbol_id = ARPABET_TO_ID.get(phone)
        if symbol_id is not None:
            ids.append(symbol_id)
    return ids
