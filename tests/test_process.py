"""The real `ttscli` process: its environment in tests, Ctrl-C (exit 130), a reader gone (141)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from voicekit import write_voice

SRC = Path(__file__).resolve().parents[1] / "src" / "ttscli"
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and pipes")


def ttscli_variables() -> set[str]:
    """Every TTSCLI_* name the source reads."""
    names = set()
    for path in SRC.rglob("*.py"):
        names.update(re.findall(r"TTSCLI_[A-Z0-9_]+", path.read_text(encoding="utf-8")))
    return names


def test_no_ttscli_variable_but_the_isolated_home_reaches_a_test():
    assert sorted(n for n in os.environ if n.startswith("TTSCLI_")) == ["TTSCLI_HOME"]


def test_variables_a_developer_set_do_not_leak_into_tests():
    names = ttscli_variables()
    assert {"TTSCLI_RAY", "TTSCLI_SEED", "TTSCLI_VOICE"} <= names
    env = {**os.environ, **{name: "1" for name in names}}
    this = f"{__file__}::test_no_ttscli_variable_but_the_isolated_home_reaches_a_test"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", this],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:]


@pytest.fixture(scope="module")
def voice_dir(tmp_path_factory):
    return write_voice(tmp_path_factory.mktemp("voice") / "tiny")


def ttscli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ttscli.cli", *args]


def _ctrl_c_reaches_it() -> None:
    """In the child before exec: Ctrl-C's default disposition. A test run started in the
    background of a non-interactive shell inherits SIGINT ignored, and Python then ignores it
    too, as a user's `nohup ttscli ...` would want."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_mid_batch_exits_130_and_leaves_no_temporary_file(voice_dir, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("".join(f"Sentence number {i}.\n" for i in range(400)))
    out = tmp_path / "out"
    cmd = ttscli("batch", str(src), "-o", str(out), "--voice", str(voice_dir), "--batch-size", "2")
    proc = subprocess.Popen(
        cmd,
        stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        preexec_fn=_ctrl_c_reaches_it,
    )
    deadline = time.time() + 60
    manifest = out / "manifest.jsonl"
    while time.time() < deadline and not (
        manifest.exists() and manifest.read_text().count("\n") >= 3
    ):
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert "Interrupted." in err.decode() and "Traceback" not in err.decode()
    rows = manifest.read_text().count("\n")
    assert 3 <= rows < 400, "the run ended before Ctrl-C"
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []


def test_ctrl_c_while_waiting_for_standard_input_exits_130(voice_dir, tmp_path):
    out = tmp_path / "out"
    cmd = ttscli("batch", "-", "-o", str(out), "--voice", str(voice_dir), "-q")
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_ctrl_c_reaches_it
    )
    proc.stdin.write(b"The first line.\n")
    proc.stdin.flush()
    deadline = time.time() + 60
    while time.time() < deadline and not (out / "000001.wav").exists():
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert sorted(p.name for p in out.iterdir()) == ["000001.wav", "manifest.jsonl"]


def test_a_reader_that_goes_away_gives_141_and_no_traceback(voice_dir, tmp_path):
    text = " ".join(f"This is sentence number {i} of a long text." for i in range(60))
    command = " ".join(
        [*map(_quote, ttscli("say", text, "--raw", "--voice", str(voice_dir))),
         "2>", _quote(str(tmp_path / "err.txt")), "| head -c 10 > /dev/null",
         "; echo ${PIPESTATUS[0]}"]
    )  # fmt: skip
    run = subprocess.run(
        ["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert run.stdout.strip() == "141", (tmp_path / "err.txt").read_text()
    assert "Traceback" not in (tmp_path / "err.txt").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["err.txt"]  # nothing else left behind


def _quote(word: str) -> str:
    import shlex

    return shlex.quote(word)
