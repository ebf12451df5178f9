"""Batch inputs, manifest and atomic files, without any model."""

from __future__ import annotations

import io
import json
import os
import threading
import time

import numpy as np
import pytest
import soundfile

from ttscli.batchio import (
    FLUSH,
    Manifest,
    audio_path,
    clean_leftovers,
    detect_format,
    error_row,
    id_problem,
    ok_row,
    read_items,
    should_skip,
    skipped_row,
    write_audio_atomic,
)


@pytest.mark.parametrize(
    "raw_id, ok",
    [
        ("LJ001-0001", True), ("a_b.c", True), ("x" * 200, True), ("名前", True),
        ("", False), ("-rf", False), (".hidden", False), ("a/b", False), ("a\\b", False),
        ("a..b", False), ("tab\there", False), ("nul\x00", False), ("x" * 201, False),
    ],
)  # fmt: skip
def test_id_validation(raw_id, ok):
    assert (id_problem(raw_id) is None) == ok


@pytest.mark.parametrize(
    "path, first, expected",
    [
        ("x.jsonl", b"anything", "jsonl"),
        ("x.txt", b"LJ001-0001|Hello", "id-text"),
        ("x.txt", b"Hello | world", "text"),
        ("x.txt", b"Hello world", "text"),
        (None, b'{"text": "hi"}', "jsonl"),
        (None, b"{HH AH0} hi", "text"),
        ("x.txt", b"\xef\xbb\xbfid1|text", "id-text"),
    ],
)
def test_format_detection(path, first, expected):
    assert detect_format(path, first) == expected


def items(data: bytes, fmt="auto", path="in.txt"):
    return list(read_items(io.BytesIO(data), fmt, path=path))


def test_text_lines_bom_crlf_blank_and_bad_utf8():
    got = items(b"\xef\xbb\xbf\n  \nfirst\r\nbad \xff\nlast")
    assert [(i.line, i.id, i.blank, i.error is None) for i in got] == [
        (1, "000001", True, True), (2, "000002", True, True), (3, "000003", False, True),
        (4, None, False, False), (5, "000005", False, True),
    ]  # fmt: skip
    assert got[2].text == "first" and "UTF-8" in got[3].error


def test_id_text_errors_and_duplicates():
    got = items(b"a|one\nno bar here\nb|\n../x|evil\na|again\n")
    assert got[0].id == "a" and got[0].text == "one" and got[0].error is None
    assert got[1].id is None and "'|'" in got[1].error
    assert got[2].id == "b" and got[2].error == "empty text"
    assert got[3].id is None and got[3].raw_id == "../x" and got[3].error
    assert got[4].id is None and got[4].raw_id == "a" and "duplicate" in got[4].error


def test_jsonl_errors():
    got = items(b'{"id": 7, "text": "x"}\n[1]\nnope\n{"id": "q"}\n{"id": [1], "text": "t"}\n',
                path="in.jsonl")  # fmt: skip
    assert got[0].id == "7" and got[0].text == "x"
    assert all(i.error for i in got[1:]) and all(i.id is None for i in got[1:])
    assert got[3].raw_id == "q"


def test_rows_have_exactly_the_manifest_keys():
    item, bad = items(b"a|x\n../b|y\n")
    keys = {"id", "text", "file", "status", "error", "audio_seconds", "decoder_steps", "rtf"}
    assert set(ok_row(item, "a.wav", 1.0, 10, 5.0)) == keys
    assert set(error_row(bad, "why")) == keys | {"line", "raw_id"}
    assert skipped_row(item)["status"] == "skipped"


def test_manifest_tolerates_a_torn_last_row_and_repairs_the_newline(tmp_path):
    item = items(b"a|x\n")[0]
    with Manifest(tmp_path) as m:
        m.append(ok_row(item, "a.wav", 1.0, 10, 5.0))
    with open(tmp_path / "manifest.jsonl", "ab") as f:
        f.write(b'{"id": "b", "sta')  # a kill -9 in the middle of a write
    state = Manifest(tmp_path).load()
    assert list(state.rows_by_id) == ["a"]
    with Manifest(tmp_path) as m:
        m.append(error_row(item, "later"))
    lines = (tmp_path / "manifest.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["error"] == "later"
    assert Manifest(tmp_path).load().rows_by_id["a"]["status"] == "error"


def test_should_skip_needs_ok_row_same_text_and_file(tmp_path):
    item = items(b"a|x\n")[0]
    with Manifest(tmp_path) as m:
        m.append(ok_row(item, "a.wav", 1.0, 10, 5.0))
    state = Manifest(tmp_path).load()
    assert not should_skip(item, tmp_path, state, ".wav")  # no file yet
    write_audio_atomic(audio_path(tmp_path, "a"), np.zeros(100, np.float32), 22050)
    assert should_skip(item, tmp_path, state, ".wav")
    changed = items(b"a|y\n")[0]
    assert not should_skip(changed, tmp_path, state, ".wav")


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(soundfile, "write", boom)
    with pytest.raises(OSError):
        write_audio_atomic(tmp_path / "x.wav", np.zeros(10, np.float32), 22050)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_formats_and_leftover_cleaning(tmp_path):
    audio = np.linspace(-2, 2, 2000).astype(np.float32)
    write_audio_atomic(tmp_path / "a.wav", audio, 22050)
    write_audio_atomic(tmp_path / "b.flac", audio, 22050)
    back, rate = soundfile.read(tmp_path / "a.wav")
    assert rate == 22050 and back.max() <= 1.0 and back.min() >= -1.0
    assert soundfile.info(str(tmp_path / "b.flac")).format == "FLAC"
    (tmp_path / ".c.wav.1234.tmp").write_bytes(b"partial")
    (tmp_path / "keep.txt").write_text("not ours")
    assert clean_leftovers(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "b.flac", "keep.txt"]


def test_idle_stream_yields_flush_between_lines():
    read_fd, write_fd = os.pipe()

    def writer():
        for line in (b"one\n", b"two\n"):
            os.write(write_fd, line)
            time.sleep(0.5)
        os.close(write_fd)

    threading.Thread(target=writer, daemon=True).start()
    with os.fdopen(read_fd, "rb") as stream:
        got = list(read_items(stream, "text", idle_seconds=0.2))
    kinds = ["F" if g is FLUSH else g.text for g in got]
    assert kinds == ["one", "F", "two", "F"]
