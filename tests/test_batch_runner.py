"""BatchRunner from Python: files, manifest rows, resume, progress and summary, any renderer."""

from __future__ import annotations

import io
import json
import os
import signal

import pytest
import soundfile
from test_synthesizer import FRAMES, HOP, make_voice

from ttscli.batch import (
    FLUSH,
    BatchRunner,
    InputItem,
    Manifest,
    Renderer,
    Result,
    read_items,
    run_batch,
)
from ttscli.synthesizer import Synthesizer

INPUT = b"One line.\n\nLJ|not an id line\nAnother line.\n"


def items(data: bytes = INPUT):
    return read_items(io.BytesIO(data), "text")


def rows(out):
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_a_run_writes_each_line_and_a_second_run_resumes(tmp_path):
    synth = Synthesizer(make_voice())
    out = tmp_path / "out"
    seen = []
    summary = run_batch(
        synth, items(), out, settings="v1", progress=lambda item, s: seen.append(item.line)
    )
    assert (summary.ok, summary.skipped, summary.error, summary.done_before) == (3, 1, 0, 0)
    assert seen == [1, 2, 3, 4]  # once per line, in input order
    assert summary.lines == 4 and summary.audio_seconds == pytest.approx(3 * FRAMES * HOP / 22050)
    assert [r["status"] for r in rows(out)] == ["ok", "skipped", "ok", "ok"]
    audio, rate = soundfile.read(out / "000001.wav")
    assert rate == 22050 and len(audio) == FRAMES * HOP
    again = run_batch(synth, items(), out, settings="v1")
    assert (again.ok, again.done_before) == (0, 4) and len(rows(out)) == 4
    other = run_batch(synth, items(), out, settings="v2")  # other settings: spoken again
    assert (other.ok, other.done_before) == (3, 1) and len(rows(out)) == 7  # blank: once


def test_overwrite_starts_a_new_manifest(tmp_path):
    synth = Synthesizer(make_voice())
    run_batch(synth, items(), tmp_path)
    summary = run_batch(synth, items(), tmp_path, overwrite=True)
    assert summary.ok == 3 and len(rows(tmp_path)) == 4


class _Refuses:
    """A renderer that fails every line: the Renderer protocol is all BatchRunner needs."""

    def __init__(self):
        self.flushes = 0

    def stream(self, pairs):
        for pair in pairs:
            if pair is FLUSH:
                self.flushes += 1
                continue
            item, text = pair
            yield Result(item, text, None, 22050, error=f"no thanks: {text}")


def test_any_renderer_works_and_errors_are_counted_with_their_lines(tmp_path):
    renderer = _Refuses()
    assert isinstance(renderer, Renderer) and isinstance(Synthesizer(make_voice()), Renderer)
    data = [*items(b"first\nsecond\n"), FLUSH, InputItem(3, None, "a/b", "x", "bad id")]
    with Manifest(tmp_path) as manifest:
        summary = BatchRunner(renderer, manifest, tmp_path).run(data)
    assert renderer.flushes == 1
    assert (summary.ok, summary.error) == (0, 3)
    assert summary.first_errors == ["line 1: no thanks: first", "line 2: no thanks: second",
                                    "line 3: bad id"]  # fmt: skip
    assert [r["status"] for r in rows(tmp_path)] == ["error"] * 3
    assert rows(tmp_path)[2]["raw_id"] == "a/b"


def test_former_module_names_still_import():
    from ttscli import batch, rendering
    from ttscli.batchio import Manifest as OldManifest
    from ttscli.batchio import read_items as old_read_items
    from ttscli.distributed import RayOptions, RayPool
    from ttscli.ray import RayPool as NewRayPool
    from ttscli.synthesizer import FLUSH as SYNTH_FLUSH
    from ttscli.synthesizer import Result as SynthResult

    assert OldManifest is batch.Manifest and old_read_items is batch.read_items
    assert SYNTH_FLUSH is rendering.FLUSH is batch.FLUSH  # one FLUSH everywhere
    assert SynthResult is rendering.Result
    assert RayPool is NewRayPool
    pool = RayPool((None, None, None), None, RayOptions(), None, ".wav", name_of=str)
    assert isinstance(pool, Renderer)


@pytest.fixture
def ctrl_c_raises():
    """Python's own Ctrl-C handler for the test (a run started in the background of a
    non-interactive shell inherits SIGINT ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_between_a_file_and_its_row_is_raised_after_the_row(
    tmp_path, monkeypatch, ctrl_c_raises
):
    from ttscli.batch import runner

    real_write = runner.write_audio_atomic

    def write_then_ctrl_c(path, audio, sample_rate):
        real_write(path, audio, sample_rate)
        os.kill(os.getpid(), signal.SIGINT)  # the file exists, its row is not written yet

    monkeypatch.setattr(runner, "write_audio_atomic", write_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        run_batch(Synthesizer(make_voice()), items(b"first\nsecond\n"), tmp_path)
    assert [(r["id"], r["status"]) for r in rows(tmp_path)] == [("000001", "ok")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["000001.wav", "manifest.jsonl"]
    monkeypatch.setattr(runner, "write_audio_atomic", real_write)
    again = run_batch(Synthesizer(make_voice()), items(b"first\nsecond\n"), tmp_path)
    assert (again.done_before, again.ok) == (1, 1)  # resume trusts the recorded line


def test_interrupts_deferred_raises_once_at_the_end_and_restores_the_handler(ctrl_c_raises):
    from ttscli.interrupts import interrupts_deferred

    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
            done.append("block finished")
    assert done == ["block finished"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with interrupts_deferred():  # no Ctrl-C: nothing raised
        done.append("quiet")
    assert done[-1] == "quiet"
