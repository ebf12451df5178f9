"""Text front end: NVIDIA's ids on the fixtures, readings of hard cases, robustness, speed."""

from __future__ import annotations

import hashlib
import json
import pathlib
import re
import subprocess
import sys
import time
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ttscli.errors import TextError
from ttscli.text import (
    FRONTENDS,
    SYMBOLS,
    check_speakable,
    clean_text,
    sequence_to_text,
    text_to_sequence,
)
from ttscli.text.braces import match_braces, segments
from ttscli.text.transliterate import dle_table

DATA = pathlib.Path(__file__).parent / "data"


def _jsonl(name: str) -> list[dict]:
    with open(DATA / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


FIXTURE = _jsonl("text_ids.jsonl")
ORIG_DIFF = {row["text"]: row for row in _jsonl("text_ids_orig_repo_diff.jsonl")}
DIGITS = "zero one two three four five six seven eight nine".split()


# -- symbol table ------------------------------------------------------------------------------
def test_symbols_are_the_fixture_table():
    with open(DATA / "symbols.json", encoding="utf-8") as f:
        assert json.load(f) == SYMBOLS
    assert len(SYMBOLS) == 148
    assert SYMBOLS.index(" ") == 11 and SYMBOLS.index("@AA") == 64 and SYMBOLS.index("@ZH") == 147


# -- parity with NVIDIA ------------------------------------------------------------------------
def test_dle_ids_match_every_fixture_line():
    rows = [row for row in FIXTURE if "ids" in row]
    assert len(rows) == 1492  # 1495 lines, 3 where NVIDIA crashes
    wrong = [row["text"] for row in rows if text_to_sequence(row["text"]) != row["ids"]]
    assert wrong == []


def test_original_frontend_matches_every_fixture_line():
    assert len(ORIG_DIFF) == 27
    checked = 0
    for row in FIXTURE:
        diff = ORIG_DIFF.get(row["text"])
        expected = diff["orig_ids"] if diff else row.get("ids")
        if expected is None:
            continue  # a crash line (none of them is in the diff file)
        assert text_to_sequence(row["text"], frontend="original") == expected, row["text"]
        checked += 1
    assert checked == 1492


# Verified outputs of NVIDIA's english_cleaners (ARCHITECTURE.md section 1.3), as text.
CLEANED = [
    ("1984", "nineteen eighty-four"),
    ("2000", "two thousand"),
    ("2005", "two thousand five"),
    ("2010", "twenty ten"),
    ("1900", "nineteen hundred"),
    ("1100", "eleven hundred"),
    ("2100", "twenty-one hundred"),
    ("1905", "nineteen oh five"),
    ("1001", "ten oh one"),
    ("1010", "ten ten"),
    ("2099", "twenty ninety-nine"),
    ("1000", "one thousand"),
    ("3000", "three thousand"),
    ("999", "nine hundred ninety-nine"),
    ("101", "one hundred one"),
    ("12345", "twelve thousand, three hundred forty-five"),
    ("1,234", "twelve thirty-four"),
    ("1,5", "fifteen"),
    ("1,23,456", "one hundred twenty-three thousand, four hundred fifty-six"),
    ("007", "seven"),
    ("0", "zero"),
    ("00", "zero"),
    ("3.14159", "three point fourteen thousand, one hundred fifty-nine"),
    ("20.05", "twenty point five"),
    ("0.5", "zero point five"),
    (".5", ".five"),
    ("5.", "five."),
    ("1st", "first"),
    ("21st", "twenty-first"),
    ("101st", "one hundred and first"),
    ("1984th", "one thousand, nine hundred and eighty-fourth"),
    ("0th", "zeroth"),
    ("2st", "second"),
    ("$3.50", "three dollars, fifty cents"),
    ("$1", "one dollar"),
    ("$0.01", "one cent"),
    ("$0.00", "zero dollars"),
    ("$.50", "fifty cents"),
    ("$3.5", "three dollars, five cents"),
    ("$1,000,000", "one million dollars"),
    ("$1,000.50", "one thousand dollars, fifty cents"),
    ("$5.", "five dollars."),
    ("$1.2.3", "one point two.three dollars"),
    ("£100", "one hundred"),
    ("-5", "-five"),
    ("10:30", "ten:thirty"),
    ("50%", "fifty%"),
    ("1990s", "nineteen ninetys"),
    ("abc123def", "abcone hundred twenty-threedef"),
    ("Main St.", "main saint"),
    ("Mr.Smith", "mistersmith"),
    ("Mrs. Dr. Drs. Jr. Capt. Ft. Ltd.", "misess doctor doctors junior captain fort limited"),
    ("no. vs. etc. prof.", "no. vs. etc. prof."),
    ("  Lots \t of\n\nspace  ", " lots of space "),
    ("ü ö ä ß é ñ € ¥ – ’ “ ” × x", 'ue oe ae ss e n e y - \' " " x x'),
    ("a\u00a0b", "a b"),
    ("£—…½°©™\u200b中😀", ""),
    ("＄５", "five dollars"),
]


@pytest.mark.parametrize(("text", "cleaned"), CLEANED)
def test_cleaned_text_matches_nvidia(text, cleaned):
    assert clean_text(text) == cleaned


ORIGINAL_CLEANED = [
    ("ü ö ä", "u o a"),
    ("£100", "psone hundred"),
    ("€", "eur"),
    ("— …", "-- ..."),
    ("½", " one/two"),
    ("° © ™", "deg (c) (tm)"),
    ("中", "zhong "),
]


@pytest.mark.parametrize(("text", "cleaned"), ORIGINAL_CLEANED)
def test_original_frontend_transliterates_with_unidecode(text, cleaned):
    assert clean_text(text, frontend="original") == cleaned


def test_del_is_deleted_by_dle_and_kept_then_dropped_by_original():
    # DLE deletes DEL before whitespace is collapsed; the original keeps it until the ids.
    assert text_to_sequence("a \x7f b") == [38, 11, 39]
    assert text_to_sequence("a \x7f b", frontend="original") == [38, 11, 11, 39]


BRACES = [
    ("Turn {HH AW1 S S T AH0 N} st.", "turn {HH AW1 S S T AH0 N} saint"),  # "." consumed
    ("A {HH AH0} b\nsecond line", "a {HH AH0} b"),  # the rest of the text is lost
    ("x\n{HH} y", "x hh y"),  # no match across a newline: braces dropped, letters read
    ("{{HH}}", ""),  # group 2 is "{HH", not a phone; the "}" after it is dropped
    ("a {HH b", "a hh b"),
    ("a {} b", "a  b"),  # segments are cleaned separately: both spaces stay
    ("{DH AH0}{K AE1 T}", "{DH AH0 K AE1 T}"),
    ("say {hh ah0} it", "say  it"),  # lowercase is not ARPAbet
    ("{NOT A VALID PHONE} x", " x"),
    ("{ 5 }", ""),
]


@pytest.mark.parametrize(("text", "read"), BRACES)
def test_arpabet_in_braces(text, read):
    assert sequence_to_text(text_to_sequence(text)) == read


def test_ids_of_a_brace_example_written_out():
    # a, @HH, @AH0, space, b; a {} b -> a, space, space, b
    assert text_to_sequence("A {HH AH0} b\nsecond line") == [38, 11, 106, 73, 11, 39]
    assert text_to_sequence("a {} b") == [38, 11, 11, 39]


# -- where NVIDIA crashes ----------------------------------------------------------------------
def test_crash_lines_get_a_reading():
    crashes = [row["text"] for row in FIXTURE if "error" in row]
    assert len(crashes) == 3
    readings = [clean_text(text) for text in crashes]
    assert readings[0] == "that five dollars typo breaks things."
    forty = " ".join(DIGITS[int(d)] for d in "1234567890" * 4)
    assert readings[1] == f"a number too large: {forty}."
    assert readings[2] == "ordinal overflow " + "nine " * 37 + "ninth."
    for text in crashes:
        assert check_speakable(text)


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("$,5", "five dollars"),
        ("$1,.5", "one dollar, five cents"),
        ("$.,5", "five cents"),
        ("$,.,", "$,.,"),  # no digit: not an amount
        ("1" + "0" * 36, "one" + " zero" * 36),  # 10^36, the first number inflect refuses
        ("9" * 36, None),  # 10^36 - 1 is still read as a number
        ("0" * 40 + "7", "seven"),  # leading zeros do not count
        ("1" + "0" * 36 + "st", "one" + " zero" * 35 + " zeroth"),
        ("2." + "3" * 37, "two point" + " three" * 37),
        ("$" + "4" * 37, "four " * 37 + "dollars"),
        ("$1." + "5" * 37, "one dollar, " + "five " * 37 + "cents"),
    ],
)
def test_readings_where_nvidia_crashes(text, cleaned):
    got = clean_text(text)
    if cleaned is None:
        assert got.startswith("nine hundred ninety-nine decillion, ")
    else:
        assert got == cleaned


# -- the brace scan equals NVIDIA's regex ------------------------------------------------------
_CURLY = re.compile(r"(.*?)\{(.+?)\}(.*)")


def _regex_segments(text: str) -> list[tuple[bool, str]]:
    """NVIDIA's loop, written with its regex (quadratic; small inputs only)."""
    out = []
    while text:
        m = _CURLY.match(text)
        if not m:
            out.append((False, text))
            break
        if m.group(1):
            out.append((False, m.group(1)))
        out.append((True, m.group(2)))
        text = m.group(3)
    return out


@settings(max_examples=1500, deadline=None)
@given(st.text(alphabet="ab{} \n", max_size=14))
def test_brace_scan_gives_the_regex_groups(text):
    m = _CURLY.match(text)
    found = match_braces(text)
    if m is None:
        assert found is None
    else:
        open_, close, line_end = found
        assert (text[:open_], text[open_ + 1 : close], text[close + 1 : line_end]) == m.groups()
    assert list(segments(text)) == _regex_segments(text)


# NVIDIA's number patterns; ttscli's skip retries inside digit runs and must match the same.
@settings(max_examples=800, deadline=None)
@given(st.text(alphabet="0123456789.,$stndrh ", max_size=16))
def test_number_patterns_match_like_nvidia(text):
    from ttscli.text import numbers

    for nvidia, ours in [
        (r"([0-9]+\.[0-9]+)", numbers._DECIMAL),
        (r"[0-9]+(st|nd|rd|th)", numbers._ORDINAL),
    ]:
        assert [m.span() for m in re.finditer(nvidia, text)] == [
            m.span() for m in ours.finditer(text)
        ]


# ttscli checks cheaply whether any abbreviation or whitespace pass has work to do.
@settings(max_examples=800, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            ["mrs", "Capt", "esq", "lt", "ST", "co", "maj", "ſt", "x", "a", "_", "1", "é"]
            + list(". .\t\n\x1c\xa0")
        ),
        max_size=12,
    ).map("".join)
)
def test_cheap_prechecks_agree_with_the_regexes(text):
    from ttscli.text import cleaners

    any_pass = r"\b(?:mrs|mr|dr|st|co|jr|maj|gen|drs|rev|lt|hon|sgt|capt|esq|ltd|col|ft)\."
    expected = re.search(any_pass, text, re.IGNORECASE) is not None
    assert cleaners._may_hold_abbreviation(text) == expected
    assert cleaners.collapse_whitespace(text) == re.sub(r"\s+", " ", text)


def _fast(fn, limit_s: float = 3.0) -> None:
    started = time.perf_counter()
    fn()
    assert time.perf_counter() - started < limit_s


@pytest.mark.parametrize(
    "line",
    [
        ("{HH AH0} ab " * 100_000)[:1_000_000],
        ("a{b}" * 250_000),
        "{" * 1_000_000,
        ("12{" * 400_000)[:1_000_000],
        "{" + "7" * 1_000_000,
        "1" * 1_000_000 + "th",
        "$" + "3" * 1_000_000,
        "1" + "," * 1_000_000,
    ],
    ids=["braces", "tiny-groups", "open-braces", "digits-open", "digit-run", "ordinal-run",
         "dollar-run", "comma-run"],
)  # fmt: skip
def test_megabyte_lines_are_fast(line):
    _fast(lambda: text_to_sequence(line))


# -- laziness ----------------------------------------------------------------------------------
def test_nothing_heavy_is_imported_for_plain_text():
    code = (
        "import sys, ttscli.text as t\n"
        "from ttscli.text.transliterate import dle_table\n"
        "assert t.text_to_sequence('hello world') == t.text_to_sequence('Hello,  World')[:5]"
        " + [11] + t.text_to_sequence('world')\n"
        "assert 'inflect' not in sys.modules and 'unidecode' not in sys.modules\n"
        "assert dle_table.cache_info().currsize == 0\n"
        "t.text_to_sequence('M\\u00fcller')\n"
        "assert dle_table.cache_info().currsize == 1 and 'unidecode' not in sys.modules\n"
        "t.text_to_sequence('M\\u00fcller', 'original')\n"
        "assert 'unidecode' in sys.modules and 'inflect' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- any str, no warnings, only TextError ------------------------------------------------------
_PIECES = st.sampled_from(
    list("0123456789$.,:-_~{}\n\t\r\x00\x1c\x7f ") + ["st", "th", "nd", "Mr.", "dr.", "HH", "AH0"]
)
_ANY_CHAR = st.one_of(
    st.characters(),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"]),
)
_TEXTS = st.lists(st.one_of(_PIECES, _ANY_CHAR), max_size=30).map("".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_TEXTS, st.sampled_from(FRONTENDS), st.booleans())
def test_any_text_gives_ids_without_raising_or_warning(text, frontend, keep_underscore):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ids = text_to_sequence(text, frontend, keep_underscore=keep_underscore)
        assert all(type(i) is int and 0 <= i < 148 for i in ids)
        assert keep_underscore or 0 not in ids
        try:
            assert check_speakable(text, frontend, keep_underscore=keep_underscore) == ids
            assert any(i >= 12 for i in ids)
        except TextError as exc:
            assert all(i < 12 for i in ids)
            assert str(exc).startswith("nothing to say")
        assert isinstance(clean_text(text, frontend), str)


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("", []),
        (" ", [11]),
        ("\t\n \r\x0b\x0c\x1c\x1d\x1e\x1f", [11]),
        ("a\x00b\x01c", [38, 39, 40]),
        ("a\ud800b", [38, 39]),
        ("~", []),
        ("snake_case", [56, 51, 38, 48, 42, 0, 40, 38, 56, 42]),
    ],
)
def test_odd_input_readings(text, ids):
    for frontend in FRONTENDS:
        assert text_to_sequence(text, frontend) == ids


def test_underscore_switch():
    assert 0 in text_to_sequence("snake_case")
    assert text_to_sequence("snake_case", keep_underscore=False) == text_to_sequence("snakecase")


@pytest.mark.parametrize("text", ["☃☃☃", "", "   ", "...", "{ 5 }", "{hh ah0}", "\x00", "中文"])
def test_check_speakable_refuses_text_with_nothing_to_say(text):
    with pytest.raises(TextError, match="nothing to say"):
        check_speakable(text)


def test_check_speakable_names_the_problem():
    with pytest.raises(TextError, match="'☃'"):
        check_speakable("☃☃☃")
    with pytest.raises(TextError, match="not ARPAbet"):
        check_speakable("{ 5 }")
    with pytest.raises(TextError, match="only punctuation"):
        check_speakable("...")
    assert check_speakable("{HH}") == [106]
    assert check_speakable("5") == text_to_sequence("five")


def test_bad_arguments_raise_text_error():
    with pytest.raises(TextError, match="unknown text front end"):
        text_to_sequence("hello", frontend="espeak")
    with pytest.raises(TextError, match="unknown text front end"):
        clean_text("hello", "Original")
    with pytest.raises(TextError, match="str"):
        text_to_sequence(b"hello")  # type: ignore[arg-type]


# -- back to text ------------------------------------------------------------------------------
def test_sequence_to_text():
    assert sequence_to_text([45, 42, 11, 106, 73, 11, 106, 7]) == "he {HH AH0} {HH}."
    assert sequence_to_text([38, -1, 148, 39]) == "ab"
    assert sequence_to_text([]) == ""


def test_sequence_to_text_shows_the_cleaned_symbols_of_fixture_lines():
    for row in FIXTURE[:300]:
        if "ids" in row and "{" not in row["text"]:
            kept = "".join(c for c in clean_text(row["text"]) if c in SYMBOLS)
            assert sequence_to_text(row["ids"]) == kept


# -- the shipped transliteration table ---------------------------------------------------------
def test_dle_table_is_the_specified_map():
    table = dle_table()
    effective = {chr(code): out for code, out in table.items() if code >= 127}
    assert len(effective) == 2602
    digest = hashlib.sha256(json.dumps(sorted(effective.items())).encode()).hexdigest()
    assert digest == "e9e684470aa05febd77ac78d4a6dc244962ad9ccaeebf39f2f6541fa3896b68a"
    from importlib.resources import files

    data = json.loads(files("ttscli").joinpath("data/dle_transliteration.json").read_text("utf-8"))
    assert "MIT" in data["about"] and "Apache-2.0" in data["about"]
