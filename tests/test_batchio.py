"""Batch inputs, manifest, resume decisions and atomic audio files, without any model."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
from hypothesis import given, settings
from hypothesis import strategies as st

from ttscli.batch import (
    FLUSH,
    FORMATS,
    InputItem,
    Manifest,
    audio_path,
    clean_leftovers,
    default_id,
    detect_format,
    error_row,
    id_problem,
    inputs,
    ok_row,
    read_items,
    should_skip,
    skipped_row,
    write_audio_atomic,
)
from ttscli.errors import TTSError

KEYS = {
    "id",
    "text",
    "file",
    "status",
    "error",
    "audio_seconds",
    "decoder_steps",
    "rtf",
    "settings",
}


def items(data: bytes, fmt: str = "auto", path: str | None = "in.txt") -> list[InputItem]:
    got = list(read_items(io.BytesIO(data), fmt, path=path))
    assert all(isinstance(item, InputItem) for item in got)  # no FLUSH without idle_seconds
    return got


def read_file_items(tmp_path: Path, data: bytes, name: str, fmt: str = "auto"):
    src = tmp_path / name
    src.write_bytes(data)
    with open(src, "rb") as stream:
        return list(read_items(stream, fmt, path=str(src)))


# -- ids -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw_id, ok",
    [
        ("LJ001-0001", True), ("a_b.c", True), ("x" * 200, True), ("名前", True),
        ("with space", True), ("a.b-c", True), ("é" * 100, True),  # 200 bytes
        ("", False), ("-rf", False), (".hidden", False), ("..", False), ("a/b", False),
        ("a\\b", False), ("a..b", False), ("/abs", False), ("tab\there", False),
        ("nul\x00", False), ("esc\x1b", False), ("del\x7f", False), ("c1\x85", False),
        ("x" * 201, False), ("é" * 101, False), ("名" * 67, False), ("\ud800", False),
    ],
)  # fmt: skip
def test_id_validation(raw_id, ok):
    assert (id_problem(raw_id) is None) == ok


@pytest.mark.parametrize(
    "line, expected", [(1, "000001"), (42, "000042"), (999_999, "999999"), (1_234_567, "1234567")]
)
def test_default_ids_are_zero_padded_line_numbers(line, expected):
    assert default_id(line) == expected


def test_audio_path_refuses_ids_and_extensions_that_could_escape(tmp_path):
    assert audio_path(tmp_path, "LJ001", ".wav") == tmp_path / "LJ001.wav"
    assert audio_path(tmp_path, "a", ".flac").parent == tmp_path
    for bad_id in ("../x", "/etc/passwd", "a/b", "-x", ".x", ""):
        with pytest.raises(TTSError):
            audio_path(tmp_path, bad_id, ".wav")
    with pytest.raises(TTSError):
        audio_path(tmp_path, "a", ".wav/../../x")


# -- format detection ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path, first, expected",
    [
        ("x.jsonl", b"anything", "jsonl"),
        ("X.JSONL", b"id|text", "jsonl"),
        ("x.txt", b"LJ001-0001|Hello", "id-text"),
        ("x.csv", b"a.b_c-9|", "id-text"),
        ("x.txt", b"x" * 64 + b"|t", "id-text"),
        ("x.txt", b"x" * 65 + b"|t", "text"),  # an id is at most 64 characters
        ("x.txt", b"Hello | world", "text"),  # a space is not an id character
        ("x.txt", b" LJ001|Hello", "text"),  # must start the line
        ("x.txt", b"|text", "text"),  # empty id
        ("x.txt", b"Hello world", "text"),
        ("x.txt", b'{"text": "hi"}', "text"),  # JSON is sniffed only on stdin
        ("x.txt", b"\xef\xbb\xbfid1|text", "id-text"),
        (None, b'{"text": "hi"}', "jsonl"),
        (None, b'  {"id": 1, "text": "hi"}', "jsonl"),
        (None, b"{HH AH0} hi", "text"),  # ARPAbet braces, not JSON
        (None, b"[1, 2]", "text"),
        (None, b"id|text", "id-text"),
        (None, None, "text"),
    ],
)
def test_format_detection(path, first, expected):
    assert detect_format(path, first) == expected


def test_auto_decides_on_the_first_non_blank_line():
    got = items(b"\n   \nLJ1|One.\nLJ2|Two.\n")
    assert [(i.id, i.text, i.blank) for i in got] == [
        ("000001", "", True), ("000002", "", True), ("LJ1", "One.", False), ("LJ2", "Two.", False)
    ]  # fmt: skip
    assert [i.blank for i in items(b"\n \n\t\n")] == [True, True, True]


def test_a_guessed_id_text_format_is_announced_and_holds_later_lines_to_it(caplog):
    data = b"Warning|read carefully.\nThird: a|b.\nplain line\nLJ2|Two|Two.\n"
    with caplog.at_level("WARNING", logger="ttscli.batch.inputs"):
        got = items(data)
    assert "reading the input as id|text (its first line starts with 'Warning|')" in caplog.text
    assert [(i.id, i.text) for i in got] == [
        ("Warning", "read carefully."), (None, "Third: a|b."), (None, "plain line"), ("LJ2", "Two.")
    ]  # fmt: skip
    assert "'Third: a' is not an id (the input was read as id|text" in got[1].error
    assert (
        got[2].error
        == "no '|' between id and text (the input was read as id|text from its first line)"
    )
    # asked for explicitly, id|text takes any id the output folder allows, and says nothing
    caplog.clear()
    with caplog.at_level("WARNING", logger="ttscli.batch.inputs"):
        explicit = items(data, "id-text")
    assert caplog.text == ""
    assert [(i.id, i.text, i.error) for i in explicit[:3]] == [
        ("Warning", "read carefully.", None),
        ("Third: a", "b.", None),
        (None, "plain line", "no '|' between id and text"),
    ]


def test_explicit_format_wins_over_detection():
    assert items(b"a|b\n", "text")[0].text == "a|b"
    assert items(b'{"text": "x"}\n', "jsonl", path="in.txt")[0].text == "x"
    with pytest.raises(TTSError):
        items(b"x\n", "csv")
    assert set(FORMATS) == {"auto", "text", "id-text", "jsonl"}


# -- the bad-input battery, through real files ------------------------------------------------
MEGA = b"word " * 200_000  # a 1 MB line
BATTERY = [
    # (line bytes, expected: "text" / "blank" / "error", text or error substring)
    (b"Plain good line.", "text", "Plain good line."),
    (b"bad utf8 \xff\xfe here", "error", "not valid UTF-8"),
    (b"truncated \xe2\x82", "error", "not valid UTF-8"),
    (b"nul \x00 byte in the middle", "error", "NUL"),
    (b"?!?!...", "text", "?!?!..."),
    ("emoji \U0001f600 only".encode(), "text", "emoji \U0001f600 only"),
    ("\U0001f600\U0001f600".encode(), "text", "\U0001f600\U0001f600"),
    ("שלום עולם".encode(), "text", "שלום עולם"),
    ("مرحبا".encode(), "text", "مرحبا"),
    (b"crlf line\r", "text", "crlf line"),
    (b"tab\tand form feed\x0c", "text", "tab\tand form feed\x0c"),
    (b"", "blank", ""),
    (b"   \t ", "blank", ""),
    ("\u3000\u00a0".encode(), "blank", ""),  # Unicode spaces only
    (b"\r", "blank", ""),
    (MEGA, "text", MEGA.decode()),
    (b"A final, ordinary sentence.", "text", "A final, ordinary sentence."),
]


def test_bad_input_battery_text_format(tmp_path):
    data = b"\xef\xbb\xbf" + b"\n".join(line for line, _, _ in BATTERY) + b"\n"
    got = read_file_items(tmp_path, data, "bad.txt")
    assert len(got) == len(BATTERY)
    for n, (item, (_, kind, expected)) in enumerate(zip(got, BATTERY, strict=True), start=1):
        assert item.line == n
        if kind == "error":
            assert item.error and expected in item.error, (n, item)
            assert item.id == default_id(n)  # the line's own id, so its state is recorded
        elif kind == "blank":
            assert item.blank and item.error is None and item.id == default_id(n)
        else:
            assert (item.id, item.text, item.error, item.blank) == (
                default_id(n),
                expected,
                None,
                False,
            )


def test_bom_is_stripped_only_at_the_start(tmp_path):
    got = read_file_items(tmp_path, b"\xef\xbb\xbfLJ1|a\r\nLJ2|\xef\xbb\xbfb\r\n", "in.txt")
    assert [(i.id, i.text) for i in got] == [("LJ1", "a"), ("LJ2", "\ufeffb")]


def test_utf16_input_is_named(tmp_path):
    got = read_file_items(tmp_path, "hello\nworld\n".encode("utf-16"), "in.txt")
    assert "UTF-16" in got[0].error
    assert all(i.error for i in got if not i.blank)  # NUL bytes in every later line


def test_last_line_without_newline_is_read():
    assert [i.text for i in items(b"one\ntwo")] == ["one", "two"]
    assert [i.text for i in items(b"one\r\ntwo\r\n")] == ["one", "two"]
    assert items(b"") == []


# -- id|text ---------------------------------------------------------------------------------
ID_TEXT = [
    # line, expected (id, raw_id, text, error substring or None)
    (b"a|one", ("a", "a", "one", None)),
    (b"no bar here", (None, None, "no bar here", "'|'")),
    (b"b|", ("b", "b", "", "empty text")),
    (b"c|   ", ("c", "c", "   ", "empty text")),
    (b"a/../x|evil", (None, "a/../x", "evil", "'/'")),
    (b"../x|evil", (None, "../x", "evil", "starts with")),
    (b"-rf|evil", (None, "-rf", "evil", "starts with")),
    (b".hidden|evil", (None, ".hidden", "evil", "starts with")),
    (b"|no id", (None, "", "no id", "empty id")),
    (b"a|again", (None, "a", "again", "duplicate id 'a' (first on line 1)")),
    (b"b|text now", (None, "b", "text now", "duplicate")),  # b's first line owns it
    (b"LJ9|raw 1|normalized one", ("LJ9", "LJ9", "normalized one", None)),  # LJSpeech
    (b"m1|voice#2|Mimic text", ("m1", "m1", "Mimic text", None)),  # Mimic 3
    (b"u|bad \xff text", ("u", "u", "bad \ufffd text", "UTF-8")),
    (b"\xff\xfe|text", (None, "\ufffd\ufffd", "text", "id is not valid UTF-8")),
    (b"n|nul\x00", ("n", "n", "nul\x00", "NUL")),
    (b"  sp |spaced", ("  sp ", "  sp ", "spaced", None)),  # ids are kept verbatim
]


def test_id_text_lines():
    got = items(b"\n".join(line for line, _ in ID_TEXT) + b"\n", "id-text")
    assert len(got) == len(ID_TEXT)
    for n, (item, (_, (item_id, raw_id, text, error))) in enumerate(
        zip(got, ID_TEXT, strict=True), 1
    ):
        assert (item.line, item.id, item.raw_id, item.text) == (n, item_id, raw_id, text), item
        if error is None:
            assert item.error is None, item
        else:
            assert item.error and error in item.error, item


# -- JSONL -----------------------------------------------------------------------------------
JSONL = [
    (b'{"id": "a", "text": "x"}', ("a", "x", None)),
    (b'{"text": "no id"}', ("000002", "no id", None)),
    (b'{"id": null, "text": "null id"}', ("000003", "null id", None)),
    (b'{"id": 7, "text": "int id"}', ("7", "int id", None)),
    (b'{"id": 1.5, "text": "float id"}', ("1.5", "float id", None)),
    (b'{"id": -1, "text": "neg"}', (None, "neg", "starts with")),
    (b'{"id": true, "text": "t"}', (None, "t", "id must be a string or a number")),
    (b'{"id": [1], "text": "t"}', (None, "t", "id must be a string or a number")),
    (b'{"id": "q"}', (None, None, '"text"')),
    (b'{"id": "r", "text": 5}', (None, None, '"text"')),
    (b"[1]", (None, None, "must be an object")),
    (b'"just a string"', (None, None, "must be an object")),
    (b"nope", (None, None, "not valid JSON")),
    (b'{"id": "s", "text": "cut', (None, None, "not valid JSON")),
    (b"[" * 100_000, (None, None, "not valid JSON")),
    (b'{"id": "e", "text": ""}', ("e", "", "empty text")),
    (b'{"id": "z", "text": "a\\u0000b"}', ("z", "a\x00b", "NUL")),
    (b'{"id": "a", "text": "dup"}', (None, "dup", "duplicate")),
    (b'{"text": "bad \xff"}', (None, None, "UTF-8")),
    (b'{"id": "sur", "text": "lone \\ud800 half"}', ("sur", "lone \ud800 half", None)),
    (b'{"id": "nl", "text": "two\\nlines"}', ("nl", "two\nlines", None)),
]


def test_jsonl_lines(tmp_path):
    data = b"\n".join(line for line, _ in JSONL) + b"\n"
    got = read_file_items(tmp_path, data, "in.jsonl")
    assert len(got) == len(JSONL)
    for n, (item, (_, (item_id, text, error))) in enumerate(zip(got, JSONL, strict=True), 1):
        assert (item.line, item.id, item.text) == (n, item_id, text), item
        if error is None:
            assert item.error is None, item
        else:
            assert item.error and error in item.error, item
    assert got[5].raw_id == "-1" and got[7].raw_id == "[1]" and got[8].raw_id == "q"


def test_a_blank_line_keeps_its_line_number_id_unless_taken():
    got = items(b'{"id": "000002", "text": "x"}\n\n{"text": "y"}\n', path="in.jsonl")
    assert got[1].blank and got[1].id is None  # its line-number id is taken by line 1
    got = items(b'\n{"id": "000001", "text": "x"}\n', path="in.jsonl")
    assert got[0].blank and got[0].id == "000001"
    assert got[1].id is None and "duplicate" in got[1].error


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=30),
            st.text(max_size=30).map(lambda s: s.encode("utf-8", "surrogatepass")),
            st.tuples(st.sampled_from(["a", "b", "../c", "", "7"]), st.text(max_size=10)).map(
                lambda p: f"{p[0]}|{p[1]}".encode("utf-8", "surrogatepass")
            ),
        ),
        max_size=12,
    ),
    st.sampled_from(["auto", "text", "id-text", "jsonl"]),
)
def test_any_bytes_give_one_item_per_line_and_safe_unique_ids(lines, fmt):
    lines = [line.replace(b"\n", b" ") for line in lines]
    data = b"\n".join(lines) + (b"\n" if lines else b"")
    got = items(data, fmt)
    assert [i.line for i in got] == list(range(1, len(lines) + 1))
    ids = [i.id for i in got if i.id is not None]
    assert len(ids) == len(set(ids))
    for item in got:
        assert item.id is None or id_problem(item.id) is None
        if not item.blank and not item.error:
            assert item.id is not None and item.text and item.text.strip()
        if item.error is not None:
            assert item.error.strip()


# -- manifest rows ---------------------------------------------------------------------------
def test_rows_have_exactly_the_manifest_keys():
    item, bad, blank = items(b"a|x\n../b|y\n\n")
    ok = ok_row(item, "a.wav", 1.23456789, 10, 5.0)
    assert set(ok) == KEYS
    assert ok["status"] == "ok" and ok["file"] == "a.wav" and ok["error"] is None
    assert ok["audio_seconds"] == pytest.approx(1.23456789, abs=1e-4)
    err = error_row(bad, "why")
    assert set(err) == KEYS | {"line", "raw_id"}
    assert (err["id"], err["line"], err["raw_id"], err["error"]) == (None, 2, "../b", "why")
    assert err["file"] is None and err["status"] == "error"
    assert error_row(item, "")["error"]  # an error row always says something
    skip = skipped_row(blank)
    assert set(skip) == KEYS and skip["status"] == "skipped" and skip["id"] == "000003"
    assert ok_row(item, "a.wav", 1.0, 10, float("inf"))["rtf"] is None  # JSON has no inf
    for row in (ok, err, skip):
        json.loads(json.dumps(row, allow_nan=False))


# -- manifest file ---------------------------------------------------------------------------
def manifest_lines(out: Path) -> list[str]:
    return (out / "manifest.jsonl").read_text(encoding="utf-8").split("\n")


def test_each_row_is_one_flushed_write(tmp_path, monkeypatch):
    a, b = items(b"a|x\nb|y\n")
    writes = []
    real_write = os.write

    def counting_write(fd, data):
        writes.append(bytes(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", counting_write)
    with Manifest(tmp_path) as m:
        m.append(ok_row(a, "a.wav", 1.0, 10, 5.0))
        # visible to another reader before close: nothing waits in a user-space buffer
        assert json.loads((tmp_path / "manifest.jsonl").read_bytes())["id"] == "a"
        m.append(error_row(b, "bad"))
    assert len(writes) == 2 and all(w.endswith(b"\n") and w.count(b"\n") == 1 for w in writes)


def test_manifest_tolerates_a_torn_last_row_and_repairs_the_newline(tmp_path):
    a, b = items(b"a|x\nb|y\n")
    with Manifest(tmp_path) as m:
        m.append(ok_row(a, "a.wav", 1.0, 10, 5.0))
    with open(tmp_path / "manifest.jsonl", "ab") as f:
        f.write(b'{"id": "b", "status": "ok", "te')  # kill -9 in the middle of a write
    state = Manifest(tmp_path).load()
    assert list(state.rows_by_id) == ["a"]
    with Manifest(tmp_path) as m:
        m.append(error_row(b, "later"))
    lines = manifest_lines(tmp_path)
    assert lines[-1] == ""  # the file ends with a newline
    assert lines[1].startswith('{"id": "b", "status": "ok", "te')  # torn row on its own line
    assert json.loads(lines[2]) == error_row(b, "later")
    state = Manifest(tmp_path).load()
    assert state.rows_by_id["b"]["status"] == "error" and state.rows_by_id["a"]["status"] == "ok"


def test_manifest_reader_skips_lines_that_are_not_json_objects(tmp_path):
    (tmp_path / "manifest.jsonl").write_bytes(
        b'[1, 2]\n"str"\n\n\xff\xfe\n{"id": "a", "status": "ok", "text": "t"}\nnull\n'
    )
    m = Manifest(tmp_path)
    assert [r["id"] for r in m.rows()] == ["a"]
    assert m.load().rows_by_id["a"]["status"] == "ok"
    assert Manifest(tmp_path / "missing").load().rows_by_id == {}


def test_last_row_is_the_state_and_id_less_rows_change_nothing(tmp_path):
    a1, dup, blank = items(b"a|x\na|again\n\n")
    with Manifest(tmp_path) as m:
        m.append(error_row(a1, "first try failed"))
        m.append(ok_row(a1, "a.wav", 1.0, 10, 5.0))
        m.append(error_row(dup, dup.error))  # id null, raw_id "a"
        m.append(skipped_row(blank))
    state = Manifest(tmp_path).load()
    assert state.rows_by_id["a"]["status"] == "ok"
    assert set(state.rows_by_id) == {"a", "000003"}
    assert state.blank_lines == {3}


def test_a_redone_id_appends_and_never_rewrites_earlier_rows(tmp_path):
    (a1,) = items(b"a|old text\n")
    (a2,) = items(b"a|new text\n")
    b, c = items(b"b|x\nc|y\n")
    with Manifest(tmp_path) as m:
        m.load()
        m.append(ok_row(a1, "a.wav", 1.0, 10, 5.0))
        m.append(error_row(b, "bad"))
        m.append(ok_row(c, "c.wav", 1.0, 10, 5.0))
    before = (tmp_path / "manifest.jsonl").read_bytes()
    # a later run: a's text changed; its new attempt first fails, then succeeds
    with Manifest(tmp_path) as m:
        m.append(error_row(a2, "synthesis failed"))
        m.append(ok_row(a2, "a.wav", 2.0, 20, 5.0))
        m.append(ok_row(b, "b.wav", 1.0, 10, 5.0))
    after = (tmp_path / "manifest.jsonl").read_bytes()
    assert after.startswith(before)  # the earlier rows are untouched
    rows = [json.loads(line) for line in manifest_lines(tmp_path) if line]
    assert [(r["id"], r["status"]) for r in rows] == [
        ("a", "ok"), ("b", "error"), ("c", "ok"), ("a", "error"), ("a", "ok"), ("b", "ok")
    ]  # fmt: skip
    assert rows[0]["text"] == "old text" and rows[4]["text"] == "new text"
    state = Manifest(tmp_path).load()  # the last row of each id is its state
    assert {k: (r["status"], r["text"]) for k, r in state.rows_by_id.items()} == {
        "a": ("ok", "new text"), "b": ("ok", "x"), "c": ("ok", "y")
    }  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.jsonl"]  # no temp file


def test_reset_starts_an_empty_manifest(tmp_path):
    (a,) = items(b"a|x\n")
    with Manifest(tmp_path) as m:
        m.append(ok_row(a, "a.wav", 1.0, 10, 5.0))
    with Manifest(tmp_path) as m:
        m.reset()
        assert m.load().rows_by_id == {}
        m.append(ok_row(a, "a.wav", 1.0, 10, 5.0))
    assert [json.loads(x)["status"] for x in manifest_lines(tmp_path) if x] == ["ok"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.jsonl"]


def test_unpaired_surrogates_from_json_are_kept_escaped(tmp_path):
    (item,) = items(b'{"id": "s", "text": "x \\udc80 y"}\n', path="in.jsonl")
    with Manifest(tmp_path) as m:
        m.append(ok_row(item, "s.wav", 1.0, 10, 5.0))
    _one_second_wav(tmp_path / "s.wav")
    state = Manifest(tmp_path).load()
    assert state.rows_by_id["s"]["text"] == "x \udc80 y"
    assert should_skip(item, tmp_path, state, ".wav")


# -- resume ----------------------------------------------------------------------------------
def _one_second_wav(path):
    write_audio_atomic(path, np.zeros(22050, dtype=np.float32), 22050)


def test_resume_decisions(tmp_path):
    lines = b"same|Same text.\nchanged|Old text.\nfailed|Bad.\ngone|Deleted.\n\nflac|F.\n"
    first = items(lines + b"emptied|E.\ncut|C.\n")
    with Manifest(tmp_path) as m:
        for item in first:
            if item.blank:
                m.append(skipped_row(item))
            elif item.id == "failed":
                m.append(error_row(item, "synthesis failed"))
            else:
                _one_second_wav(tmp_path / f"{item.id}.wav")
                m.append(ok_row(item, f"{item.id}.wav", 1.0, 10, 5.0))
    (tmp_path / "gone.wav").unlink()
    (tmp_path / "emptied.wav").write_bytes(b"")
    whole = (tmp_path / "cut.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(whole[: len(whole) // 2])  # a copy cut short
    state = Manifest(tmp_path).load()
    second = items(
        b"same|Same text.\nchanged|New text.\nfailed|Bad.\ngone|Deleted.\n\nflac|F.\n\nnew|N.\n"
        b"emptied|E.\ncut|C.\n"
    )
    decisions = {(i.id or str(i.line)): should_skip(i, tmp_path, state, ".wav") for i in second}
    assert decisions == {
        "same": True,  # ok row, same text, file present and whole
        "changed": False,  # text differs
        "failed": False,  # last row is an error: try again
        "gone": False,  # audio file missing
        "000005": True,  # blank line already recorded
        "flac": True,
        "000007": False,  # a blank line not recorded yet
        "new": False,
        "emptied": False,  # not an audio file any more
        "cut": False,  # shorter than its row says
    }
    # a FLAC file cut short keeps its header's length: its last frame no longer decodes
    (flac_ok,) = items(b"f2|F two.\n")
    write_audio_atomic(tmp_path / "f2.flac", np.sin(np.arange(22050) / 9.0) * 0.5, 22050)
    with Manifest(tmp_path) as m:
        m.append(ok_row(flac_ok, "f2.flac", 1.0, 10, 5.0))
    assert should_skip(flac_ok, tmp_path, Manifest(tmp_path).load(), ".flac")
    whole = (tmp_path / "f2.flac").read_bytes()
    (tmp_path / "f2.flac").write_bytes(whole[: len(whole) // 2])
    assert not should_skip(flac_ok, tmp_path, Manifest(tmp_path).load(), ".flac")
    # asking for FLAC files: the WAV rows do not count
    flac_item = second[5]
    (tmp_path / "flac.flac").write_bytes(b"audio from elsewhere")
    assert not should_skip(flac_item, tmp_path, state, ".flac")
    # error items and id-less items are never skipped
    (dup,) = [i for i in items(b"a|x\na|y\n") if i.id is None]
    assert not should_skip(dup, tmp_path, state, ".wav")


# -- atomic audio ----------------------------------------------------------------------------
def test_writing_through_a_symbolic_link_keeps_the_link(tmp_path):
    (tmp_path / "real").mkdir()
    link = tmp_path / "link.wav"
    link.symlink_to(tmp_path / "real" / "take1.wav")  # dangling until written
    write_audio_atomic(link, np.zeros(100, dtype=np.float32), 22050)
    assert link.is_symlink() and soundfile.info(str(tmp_path / "real" / "take1.wav")).frames == 100
    write_audio_atomic(link, np.zeros(50, dtype=np.float32), 22050)
    assert link.is_symlink() and soundfile.info(str(link)).frames == 50
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["take1.wav"]


def test_written_audio_is_16_bit_clipped_and_readable(tmp_path):
    audio = np.array([-2.0, -1.0, -0.5, 0.0, 0.25, 1.0, 3.0, np.nan], dtype=np.float32)
    expected = np.array([-1.0, -1.0, -0.5, 0.0, 0.25, 1.0, 1.0, 0.0])
    for name, fmt in (("a.wav", "WAV"), ("b.flac", "FLAC"), ("C.WAV", "WAV")):
        write_audio_atomic(tmp_path / name, audio, 22050)
        info = soundfile.info(str(tmp_path / name))
        assert (info.format, info.subtype, info.samplerate, info.channels) == (
            fmt,
            "PCM_16",
            22050,
            1,
        )
        back, _ = soundfile.read(tmp_path / name)
        np.testing.assert_allclose(back, expected, atol=1.0 / 16384)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["C.WAV", "a.wav", "b.flac"]


@pytest.mark.parametrize(
    "name, audio, rate",
    [
        ("x.mp3", np.zeros(10, np.float32), 22050),
        ("x", np.zeros(10, np.float32), 22050),
        ("x.wav", np.zeros((2, 10), np.float32), 22050),
        ("x.wav", np.zeros(10, np.float32), 0),
    ],
)
def test_write_refuses_bad_arguments(tmp_path, name, audio, rate):
    with pytest.raises(TTSError):
        write_audio_atomic(tmp_path / name, audio, rate)
    assert list(tmp_path.iterdir()) == []


def test_a_failing_write_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    target = tmp_path / "x.wav"
    write_audio_atomic(target, np.full(100, 0.5, np.float32), 22050)
    before = target.read_bytes()

    def half_then_fail(file, *args, **kwargs):
        file.write(b"RIFF....partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(soundfile, "write", half_then_fail)
    with pytest.raises(TTSError, match="No space left"):
        write_audio_atomic(target, np.zeros(10, np.float32), 22050)
    with pytest.raises(TTSError):
        write_audio_atomic(tmp_path / "new.wav", np.zeros(10, np.float32), 22050)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.wav"]
    assert target.read_bytes() == before


def test_unwritable_folder_is_a_tts_error(tmp_path):
    with pytest.raises(TTSError):
        write_audio_atomic(tmp_path / "missing" / "x.wav", np.zeros(10, np.float32), 22050)


CRASH = """
import sys, os, signal
from pathlib import Path
import numpy as np, soundfile
from ttscli.batch import write_audio_atomic
def crash(file, *args, **kwargs):
    file.write(b"RIFF....partial")
    file.flush()
    os.kill(os.getpid(), signal.SIGKILL)
soundfile.write = crash
write_audio_atomic(Path(sys.argv[1]) / "a.wav", np.zeros(10, np.float32), 22050)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_a_killed_write_leaves_only_a_temp_file_that_is_cleaned_next_time(tmp_path):
    run = subprocess.run([sys.executable, "-c", CRASH, str(tmp_path)], timeout=60)
    assert run.returncode == -9
    names = [p.name for p in tmp_path.iterdir()]
    assert len(names) == 1 and names[0].startswith(".a.wav.") and names[0].endswith(".tmp")
    assert clean_leftovers(tmp_path) == 1
    assert list(tmp_path.iterdir()) == []


def test_clean_leftovers_removes_only_our_temporary_files(tmp_path):
    ours = [".a.wav.1234.tmp", ".LJ001-0001.flac.7.tmp", ".x.WAV.99.tmp", ".manifest.jsonl.5.tmp"]
    theirs = [
        "a.wav", "b.flac", "manifest.jsonl", "keep.txt", ".hidden", "x.tmp", ".a.wav.tmp",
        ".a.txt.12.tmp", ".a.wav.12x.tmp", "a.wav.12.tmp", ".notes.123.tmp",
    ]  # fmt: skip
    for name in ours + theirs:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / ".d.wav.3.tmp").mkdir()  # not a file: left alone
    assert clean_leftovers(tmp_path) == len(ours)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(theirs + [".d.wav.3.tmp"])
    assert clean_leftovers(tmp_path / "missing") == 0


# -- streaming -------------------------------------------------------------------------------
def piped(chunks_and_pauses):
    """A read end of a pipe fed by a thread: bytes are written, floats are pauses."""
    read_fd, write_fd = os.pipe()

    def writer():
        try:
            for part in chunks_and_pauses:
                if isinstance(part, float):
                    time.sleep(part)
                else:
                    os.write(write_fd, part)
        finally:
            os.close(write_fd)

    threading.Thread(target=writer, daemon=True).start()
    return os.fdopen(read_fd, "rb")


def kinds(got):
    return ["FLUSH" if g is FLUSH else g.text for g in got]


def test_idle_stream_yields_flush_between_lines():
    with piped([0.3, b"one\n", 0.5, b"two\n", 0.5]) as stream:
        got = list(read_items(stream, "text", idle_seconds=0.2))
    # no FLUSH before the first line; one per pause, not one per 0.2 s; none at the end
    assert kinds(got) == ["one", "FLUSH", "two", "FLUSH"]


def test_lines_arriving_together_are_not_split_by_flushes():
    with piped([b"a|one\na|dup\n\nb|two\n", 0.5, b"c|three"]) as stream:
        got = list(read_items(stream, "auto", path=None, idle_seconds=0.2))
    assert kinds(got) == ["one", "dup", "", "two", "FLUSH", "three"]
    assert got[1].error and got[1].id is None and got[2].blank  # parsed as they arrive


def test_stdin_jsonl_is_detected_while_streaming():
    with piped([b'\n{"id": "x", "text": "hi"}\n', 0.4, b'{"text": "yo"}\n']) as stream:
        got = list(read_items(stream, path=None, idle_seconds=0.2))
    assert [(g.id, g.text) if g is not FLUSH else "F" for g in got] == [
        ("000001", ""), ("x", "hi"), "F", ("000003", "yo")
    ]  # fmt: skip


def test_reader_thread_reads_ahead_a_bounded_number_of_lines():
    class Endless(io.RawIOBase):
        reads = 0

        def readable(self):
            return True

        def readline(self, size=-1):
            Endless.reads += 1
            return b"line\n"

    stream = Endless()
    got = read_items(stream, "text", idle_seconds=0.2)
    assert next(got).text == "line"
    time.sleep(0.3)
    assert Endless.reads <= inputs.QUEUE_LINES + 3
    got.close()


class Broken(io.RawIOBase):
    def readable(self):
        return True

    def readline(self, size=-1):
        raise OSError(5, "Input/output error")


@pytest.mark.parametrize("idle", [None, 0.2])
def test_a_failing_stream_raises_tts_error(idle):
    with pytest.raises(TTSError, match="cannot read the input"):
        list(read_items(Broken(), "text", idle_seconds=idle))
