"""`ttscli batch`: manifest rows, resume, atomic files, bad input, exit codes, SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile
from click.testing import CliRunner
from voicekit import write_voice

from ttscli.cli import cli

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


@pytest.fixture(scope="module")
def voice_dir(tmp_path_factory):
    return write_voice(tmp_path_factory.mktemp("voice") / "tiny")


def batch(voice_dir, *args, input=None):
    argv = ["batch", *map(str, args), "--voice", str(voice_dir), "-q"]
    return CliRunner().invoke(cli, argv, input=input, catch_exceptions=False)


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def final_state(rows):
    state = {}
    for row in rows:
        if row["id"] is not None:
            state[row["id"]] = row
    return state


def assert_clean_dir(out: Path):
    for path in out.iterdir():
        assert path.name == "manifest.jsonl" or path.suffix in (".wav", ".flac"), path.name


def test_plain_text_lines_become_numbered_wavs(voice_dir, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("Hello there.\n\nSecond line!\n", encoding="utf-8")
    out = tmp_path / "out"
    result = batch(voice_dir, src, "-o", out)
    assert result.exit_code == 0, result.output
    rows = manifest(out)
    assert [r["status"] for r in rows] == ["ok", "skipped", "ok"]
    assert [r["id"] for r in rows] == ["000001", "000002", "000003"]
    assert rows[0]["file"] == "000001.wav" and rows[1]["file"] is None
    for row in rows:
        assert KEYS <= set(row)
    audio, rate = soundfile.read(out / "000003.wav")
    assert rate == 22050 and rows[2]["audio_seconds"] == pytest.approx(len(audio) / rate, abs=1e-4)
    assert rows[0]["decoder_steps"] == 20 and rows[0]["rtf"] > 0 and rows[0]["error"] is None
    assert_clean_dir(out)


def test_id_text_and_resume_and_retry(voice_dir, tmp_path):
    src = tmp_path / "meta.txt"
    src.write_text("LJ001|Good line.\nLJ002|☃☃☃\nLJ003|Another good line.\n", encoding="utf-8")
    out = tmp_path / "out"
    first = batch(voice_dir, src, "-o", out)
    assert first.exit_code == 1
    assert "line 2" in first.output and "1 error" in first.output
    rows = manifest(out)
    assert [(r["id"], r["status"]) for r in rows] == [
        ("LJ001", "ok"), ("LJ002", "error"), ("LJ003", "ok")
    ]  # fmt: skip
    assert rows[1]["error"]
    mtime = (out / "LJ001.wav").stat().st_mtime_ns
    # fix the bad line, re-run: only LJ002 is redone
    src.write_text("LJ001|Good line.\nLJ002|Now fine.\nLJ003|Another good line.\n")
    second = batch(voice_dir, src, "-o", out)
    assert second.exit_code == 0, second.output
    rows = manifest(out)
    assert len(rows) == 4 and rows[3]["id"] == "LJ002" and rows[3]["status"] == "ok"
    assert (out / "LJ001.wav").stat().st_mtime_ns == mtime
    # a changed text is redone even though its WAV exists
    src.write_text("LJ001|Changed text.\nLJ002|Now fine.\nLJ003|Another good line.\n")
    assert batch(voice_dir, src, "-o", out).exit_code == 0
    rows = manifest(out)
    assert len(rows) == 5 and rows[4]["id"] == "LJ001" and rows[4]["text"] == "Changed text."
    # --overwrite redoes everything, and never leaves two ok rows for an id
    assert batch(voice_dir, src, "-o", out, "--overwrite").exit_code == 0
    ok_ids = [r["id"] for r in manifest(out) if r["status"] == "ok"]
    assert sorted(ok_ids) == ["LJ001", "LJ002", "LJ003"]


def test_jsonl_input(voice_dir, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a", "text": "Hi there."}\n{"text": "No id."}\nnot json\n{"id": "b"}\n')
    out = tmp_path / "out"
    result = batch(voice_dir, src, "-o", out)
    assert result.exit_code == 1
    rows = manifest(out)
    assert rows[0]["id"] == "a" and rows[0]["status"] == "ok"
    assert rows[1]["id"] == "000002" and rows[1]["status"] == "ok"
    assert rows[2]["id"] is None and rows[2]["line"] == 3 and rows[2]["status"] == "error"
    assert rows[3]["status"] == "error"


BAD_BATTERY = [
    b"Plain good line.",
    b"bad utf8 \xff\xfe here",
    b"nul \x00 byte in the middle",
    b"?!?!...",
    "emoji \U0001f600 only".encode(),
    "שלום עולם".encode(),
    b"crlf line\r",
    b"",
    b"   ",
    b"x" * (1 << 20),
    b"A final, ordinary sentence.",
]


def test_bad_input_battery_loses_no_line(voice_dir, tmp_path):
    src = tmp_path / "bad.txt"
    src.write_bytes(b"\xef\xbb\xbf" + b"\n".join(BAD_BATTERY) + b"\n")
    out = tmp_path / "out"
    result = batch(voice_dir, src, "-o", out)
    assert result.exit_code == 1  # some lines cannot be spoken
    assert "Traceback" not in result.output
    rows = manifest(out)
    assert len(rows) == len(BAD_BATTERY)
    by_line = {i + 1: row for i, row in enumerate(rows)}
    assert by_line[1]["status"] == "ok" and by_line[11]["status"] == "ok"
    assert by_line[2]["status"] == "error" and "UTF-8" in by_line[2]["error"]
    assert by_line[8]["status"] == "skipped" and by_line[9]["status"] == "skipped"
    assert by_line[7]["status"] == "ok" and by_line[7]["text"] == "crlf line"
    for row in rows:
        assert row["status"] in ("ok", "error", "skipped")
        if row["status"] == "error":
            assert row["error"]
        if row["status"] == "ok":
            assert (out / row["file"]).is_file()
    assert_clean_dir(out)


@pytest.mark.parametrize(
    "line",
    [b"../evil|text", b"-rf|text", b".hidden|text", b"a/b|text", b"a\\b|text", b"|text"],
)
def test_untrusted_ids_never_write_outside(voice_dir, tmp_path, line):
    src = tmp_path / "in.txt"
    src.write_bytes(b"ok1|Fine.\n" + line + b"\n")
    out = tmp_path / "out"
    result = batch(voice_dir, src, "-o", out, "--format", "id-text")
    assert result.exit_code == 1
    rows = manifest(out)
    assert rows[1]["status"] == "error" and rows[1]["id"] is None and rows[1]["line"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out"]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.jsonl", "ok1.wav"]


def test_duplicate_ids(voice_dir, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("x|First.\nx|Second.\n")
    out = tmp_path / "out"
    assert batch(voice_dir, src, "-o", out).exit_code == 1
    rows = manifest(out)
    assert rows[0]["id"] == "x" and rows[0]["status"] == "ok" and rows[0]["text"] == "First."
    assert rows[1]["id"] is None and rows[1]["raw_id"] == "x" and rows[1]["status"] == "error"


def test_stdin_input(voice_dir, tmp_path):
    out = tmp_path / "out"
    result = batch(voice_dir, "-", "-o", out, input="one.\ntwo.\n")
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in manifest(out)] == ["000001", "000002"]


def test_leftover_temp_files_are_cleaned(voice_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".000001.wav.999.tmp").write_bytes(b"partial")
    src = tmp_path / "in.txt"
    src.write_text("Hello.\n")
    assert batch(voice_dir, src, "-o", out).exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["000001.wav", "manifest.jsonl"]


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_completes(voice_dir, tmp_path):
    _sigkill_and_resume(voice_dir, tmp_path, n_lines=200)


def test_sigkill_mid_run_then_resume_completes_quick(voice_dir, tmp_path):
    _sigkill_and_resume(voice_dir, tmp_path, n_lines=60)


def _sigkill_and_resume(voice_dir, tmp_path, n_lines):
    src = tmp_path / "in.txt"
    src.write_text("".join(f"Sentence number {i}.\n" for i in range(n_lines)))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "ttscli.cli", "batch", str(src), "-o", str(out)]
    cmd += ["--voice", str(voice_dir), "-q", "--batch-size", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline:
        path = out / "manifest.jsonl"
        if path.exists() and path.read_text().count("\n") >= 5:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done_before = len(manifest(out)) if (out / "manifest.jsonl").exists() else 0
    assert done_before < n_lines, "the run finished before it could be killed"
    again = subprocess.run(cmd, env=env, capture_output=True)
    assert again.returncode == 0, again.stderr.decode()
    rows = []
    for line in (out / "manifest.jsonl").read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:  # a row torn by the kill; the reader skips it too
            continue
    state = final_state(rows)
    assert len(state) == n_lines
    for row in state.values():
        assert row["status"] == "ok"
        audio, rate = soundfile.read(out / row["file"])
        assert len(audio) > 0
    ok_ids = [r["id"] for r in rows if r["status"] == "ok"]
    assert len(ok_ids) == len(set(ok_ids))
    assert_clean_dir(out)


def test_stdin_stream_speaks_lines_as_they_arrive(voice_dir, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "ttscli.cli", "batch", "-", "-o", str(out)]
    cmd += ["--voice", str(voice_dir), "-q", "--batch-size", "8"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(b"The first line.\n")
    proc.stdin.flush()
    deadline = time.time() + 30
    while time.time() < deadline and not (out / "000001.wav").exists():
        time.sleep(0.05)
    assert (out / "000001.wav").exists(), "a lone line was not spoken while input stayed open"
    proc.stdin.write(b"The second line.\n")
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0, proc.stderr.read().decode()
    assert [r["id"] for r in manifest(out)] == ["000001", "000002"]


def test_summary_is_printed_unless_quiet(voice_dir, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("Hello.\n")
    argv = ["batch", str(src), "-o", str(tmp_path / "out"), "--voice", str(voice_dir)]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0
    assert "1 ok; " in result.stderr and "real time" in result.stderr
    result = CliRunner().invoke(cli, [*argv, "-q", "--overwrite"])
    assert result.exit_code == 0 and result.stderr == ""


@pytest.mark.parametrize(
    "setup, args, code, message",
    [
        (None, ["missing.txt", "-o", "out"], 2, "does not exist"),
        ("file", ["in.txt", "-o", "in.txt/sub"], 2, "cannot use"),
        ("manifest-dir", ["in.txt", "-o", "out"], 1, "cannot"),
    ],
)
def test_batch_file_mistakes_get_one_line_errors(voice_dir, tmp_path, monkeypatch, setup, args,
                                                 code, message):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    if setup:
        Path("in.txt").write_text("hello\n", encoding="utf-8")
    if setup == "manifest-dir":
        Path("out/manifest.jsonl").mkdir(parents=True)
    result = batch(voice_dir, *args)
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output
    if setup is None:
        assert not Path("out").exists()  # nothing created for a run that cannot start


def test_a_line_whose_file_cannot_be_written_becomes_an_error_row(voice_dir, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("one\ntwo\n", encoding="utf-8")
    out = tmp_path / "out"
    (out / "000001.wav").mkdir(parents=True)  # a folder where line 1's file goes
    result = batch(voice_dir, src, "-o", out)
    assert result.exit_code == 1
    rows = manifest(out)
    assert [r["status"] for r in rows] == ["error", "ok"]
    assert "cannot write" in rows[0]["error"] and rows[1]["file"] == "000002.wav"
    (out / "000001.wav").rmdir()
    assert batch(voice_dir, src, "-o", out).exit_code == 0  # resumes: only line 1 redone
    assert [r["status"] for r in manifest(out)] == ["error", "ok", "ok"]


def test_resume_redoes_lines_spoken_with_other_settings_or_voice(voice_dir, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("one\ntwo\n", encoding="utf-8")
    out = tmp_path / "out"
    assert batch(voice_dir, src, "-o", out, "--seed", "1").exit_code == 0
    assert batch(voice_dir, src, "-o", out, "--seed", "1").exit_code == 0
    assert len(manifest(out)) == 2  # same settings: nothing redone
    assert batch(voice_dir, src, "-o", out, "--seed", "2").exit_code == 0
    rows = manifest(out)
    assert len(rows) == 4 and rows[0]["settings"] != rows[2]["settings"]
    other = write_voice(tmp_path / "other")  # same weights, another voice folder
    assert batch(other, src, "-o", out, "--seed", "2").exit_code == 0
    assert len(manifest(out)) == 6
    assert batch(other, src, "-o", out, "--seed", "2").exit_code == 0
    assert len(manifest(out)) == 6
    # with a seed the batch size matters too (it decides which random draws a line gets)
    assert batch(other, src, "-o", out, "--seed", "2", "--batch-size", "1").exit_code == 0
    assert len(manifest(out)) == 8
    # without one it does not: unseeded audio differs run to run anyway
    assert batch(other, src, "-o", out).exit_code == 0
    assert batch(other, src, "-o", out, "--batch-size", "1").exit_code == 0
    assert len(manifest(out)) == 10
