"""The command line: exit codes, files and messages, run through Click's CliRunner."""

from __future__ import annotations

import io
import json

import pytest
import soundfile
from click.testing import CliRunner
from voicekit import write_voice

from ttscli import __version__
from ttscli.cli import cli


@pytest.fixture(scope="module")
def voice_dir(tmp_path_factory):
    return write_voice(tmp_path_factory.mktemp("voice") / "tiny")


def run(*args, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


def test_version_and_help():
    assert run("--version").output.strip() == f"ttscli, version {__version__}"
    for flag in ("-h", "--help"):
        result = run(flag)
        assert result.exit_code == 0
        for command in ("say", "batch", "normalize", "voices", "download", "convert", "info"):
            assert command in result.output
    for command in ("say", "batch", "normalize", "voices", "download", "convert", "info"):
        result = run(command, "-h")
        assert result.exit_code == 0 and "Examples:" in result.output, command


def test_normalize_stdin_must_be_utf8():
    result = CliRunner().invoke(cli, ["normalize", "-"], input=b"fine\nbad \x80 x\n")
    assert result.exit_code == 2
    assert "line 2 is not valid UTF-8 (byte 0x80 at column 5)" in result.output


def test_stdout_writes_go_on_after_a_short_write_until_the_pipe_breaks(monkeypatch):
    from ttscli.cli import say as speak

    class Pipe:  # what a pipe whose reader left mid-write does: a short count, then EPIPE
        def __init__(self, accepts):
            self.accepts, self.got = list(accepts), b""

        def write(self, data):
            if not self.accepts:
                raise BrokenPipeError(32, "Broken pipe")
            n = min(self.accepts.pop(0), len(data))
            self.got += bytes(data[:n])
            return n

        def flush(self):
            pass

    pipe = Pipe([4, 3, 100])
    monkeypatch.setattr("sys.stdout", type("S", (), {"buffer": pipe})())
    speak._write_stdout(b"0123456789")
    assert pipe.got == b"0123456789"
    pipe = Pipe([4])
    monkeypatch.setattr("sys.stdout", type("S", (), {"buffer": pipe})())
    with pytest.raises(BrokenPipeError):
        speak._write_stdout(b"0123456789")
    pipe = Pipe([0])
    monkeypatch.setattr("sys.stdout", type("S", (), {"buffer": pipe})())
    with pytest.raises(BrokenPipeError):
        speak._write_stdout(b"0123456789")


def test_a_closed_stdout_is_an_error_not_a_traceback():
    import os
    import subprocess
    import sys

    for args in (["normalize", "hi"], ["voices"]):
        done = subprocess.run(
            [sys.executable, "-c", "from ttscli.cli import main; main()", *args],
            preexec_fn=lambda: os.close(1),
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
        assert done.returncode == 1, done.stderr
        assert done.stderr.strip().splitlines()[-1] == "Error: standard output is closed"


def test_checkpoint_options_need_each_other_and_name_the_bad_file(voice_dir, tmp_path):
    taco = voice_dir / "tacotron2.pt"
    result = run("say", "hi", "-o", tmp_path / "x.wav", "--tacotron2", taco)
    assert result.exit_code == 2 and "--tacotron2 needs --waveglow too" in result.output
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    result = run("say", "hi", "-o", tmp_path / "x.wav", "--voice", voice_dir, "--waveglow", empty)
    assert result.exit_code == 1 and "empty.pt is empty; expected a checkpoint" in result.output


def test_dash_is_refused_where_only_a_file_or_folder_makes_sense(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.txt").write_text("hello\n")
    result = run("batch", "in.txt", "-o", "-")
    assert result.exit_code == 2 and "one audio file per line into a folder" in result.output
    src = tmp_path / "wg.pt"
    src.write_bytes(b"x")
    result = run("convert", src, "-")
    assert result.exit_code == 2 and "not to standard output" in result.output
    assert not (tmp_path / "-").exists()


def test_waveglow_options_on_a_griffin_lim_voice_are_warned_about(voice_dir, tmp_path):
    result = run("say", "hi", "-o", tmp_path / "x.wav", "--voice", voice_dir, "--sigma", "0.3")
    assert result.exit_code == 0
    assert "Warning: --sigma changes nothing for voice" in result.output
    result = run("say", "hi", "-o", tmp_path / "x.wav", "--voice", voice_dir, "--denoise", "0.1",
                 "--sigma", "1")  # fmt: skip
    assert "--sigma and --denoise change nothing" in result.output
    assert "Warning" not in run("say", "hi", "-o", tmp_path / "x.wav", "--voice", voice_dir).output


def test_bad_environment_values_name_their_variable(monkeypatch, tmp_path):
    for name, value in (("TTSCLI_SEED", "junk"), ("TTSCLI_MAX_DECODER_STEPS", "0")):
        monkeypatch.setenv(name, value)
        result = run("say", "hi", "-o", tmp_path / "x.wav")
        assert result.exit_code == 2 and f"env var: '{name}'" in result.output
        monkeypatch.delenv(name)
    monkeypatch.setenv("TTSCLI_FRONTEND", "x")
    result = run("normalize", "hi")
    assert result.exit_code == 2 and "env var: 'TTSCLI_FRONTEND'" in result.output


def test_unknown_option_is_a_usage_error():
    result = run("say", "hi", "--bogus")
    assert result.exit_code == 2 and "No such option" in result.output


def test_normalize_prints_nvidia_reading():
    result = run("normalize", "Dr. Smith paid $3.50 on the 2nd of May, 1984.")
    assert result.exit_code == 0
    assert result.output == (
        "doctor smith paid three dollars, fifty cents on the second of may, nineteen eighty-four.\n"
    )


def test_normalize_ids_and_json_and_stdin():
    assert run("normalize", "--ids", "hi!").output == "45 46 2\n"
    result = run("normalize", "--json", "-", input="Mr. X\n2nd\n")
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["cleaned"] for r in rows] == ["mister x", "second"]
    assert rows[0]["ids"][:6] == [50, 46, 56, 57, 42, 55]  # m i s t e r


def test_say_writes_a_wav(voice_dir, tmp_path):
    out = tmp_path / "hello.wav"
    result = run("say", "hello world", "-o", out, "--voice", voice_dir)
    assert result.exit_code == 0, result.output
    audio, rate = soundfile.read(out)
    assert rate == 22050 and len(audio) == 20 * 256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hello.wav"]


def test_say_flac_and_stdout_and_raw(voice_dir, tmp_path):
    assert run("say", "hi", "-o", tmp_path / "a.flac", "--voice", voice_dir).exit_code == 0
    assert soundfile.info(str(tmp_path / "a.flac")).format == "FLAC"
    result = CliRunner().invoke(cli, ["say", "hi", "-o", "-", "--voice", str(voice_dir)])
    audio, rate = soundfile.read(io.BytesIO(result.stdout_bytes))
    assert result.exit_code == 0 and rate == 22050 and len(audio) == 20 * 256
    two = "The first sentence is here. And here is the second."
    result = CliRunner().invoke(
        cli, ["say", two, "--raw", "--pause", "0.1", "--voice", str(voice_dir)]
    )
    assert result.exit_code == 0
    assert len(result.stdout_bytes) == 2 * (2 * 20 * 256 + 2205)  # 16-bit samples
    # the same pieces as -o: sentences under 20 characters go with the next one, no pause
    result = CliRunner().invoke(
        cli, ["say", "One. Two.", "--raw", "--pause", "0.1", "--voice", str(voice_dir)]
    )
    assert result.exit_code == 0 and len(result.stdout_bytes) == 2 * 20 * 256
    # a sentence with nothing to say is left out, as -o does, not an error after the audio
    result = CliRunner().invoke(
        cli,
        ["say", "The first sentence is here. And here is the second. 😀!", "--raw",
         "--pause", "0.1", "--voice", str(voice_dir)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(result.stdout_bytes) == 2 * (2 * 20 * 256 + 2205)


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["say", "hi"], 2, "-o FILE"),
        (["say", "hi", "-o", "x.mp3"], 2, ".wav or .flac"),
        (["say", "hi", "-o", "x.wav", "--raw"], 2, "not both"),
        (["say", "hi", "-o", "x.wav", "--precision", "fp64"], 2, "fp64"),
        (["say", "hi", "-o", "x.wav", "--batch-size", "0"], 2, "batch-size"),
        (["say", "hi", "-o", "x.wav", "--voice", "no-such-voice"], 2, "unknown voice"),
        (["say", "", "-o", "x.wav"], 2, "TEXT is empty"),
        (["say", "hi", "-o", "x.wav", "--pause", "inf"], 2, "--pause"),
        (["say", "hi", "-o", "x.wav", "--seed", "99999999999999999999"], 2, "--seed"),
        (["say", "hi", "-o", "x.wav", "--sigma", "nan"], 2, "--sigma"),
        (["say", "hi", "-o", "no-such-dir/x.wav"], 2, "does not exist"),
        (["say", "hi", "-o", "."], 2, ".wav or .flac"),
        (["say", "hi", "-o", "dir.wav"], 2, "is a folder"),
    ],
)
def test_say_mistakes_get_one_line_errors(args, code, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dir.wav").mkdir()
    result = run(*args)
    assert result.exit_code == code
    assert message in result.output
    assert "Traceback" not in result.output


def test_say_unspeakable_text_exits_1(voice_dir, tmp_path):
    result = run("say", "☃☃☃", "-o", tmp_path / "x.wav", "--voice", voice_dir)
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "x.wav").exists()


def test_say_fp16_without_cuda_is_a_clear_error(voice_dir, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("has CUDA")
    result = run("say", "hi", "-o", tmp_path / "x.wav", "--voice", voice_dir, "--precision", "fp16")
    assert result.exit_code == 2 and "fp16 needs a CUDA GPU" in result.output
    result = run("say", "hi", "-o", tmp_path / "x.wav", "--voice", voice_dir, "--device", "cuda")
    assert result.exit_code == 2 and "no CUDA GPU" in result.output
    assert not (tmp_path / "x.wav").exists()


def test_device_takes_a_cuda_index_and_a_missing_gpu_is_a_usage_error(voice_dir, tmp_path):
    import torch

    out = tmp_path / "x.wav"
    result = run("say", "hi", "-o", out, "--voice", voice_dir, "--device", "cuda:1")
    assert "not one of" not in result.output
    if torch.cuda.device_count() > 1:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == 2 and "CUDA" in result.output
        assert not out.exists()
    result = run("say", "hi", "-o", out, "--voice", voice_dir, "--device", "gpu1")
    assert result.exit_code == 2 and "cuda:N" in result.output


def test_envvars_set_defaults(voice_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TTSCLI_VOICE", str(voice_dir))
    result = run("say", "hello", "-o", tmp_path / "x.wav", "-v")
    assert result.exit_code == 0, result.output
    assert "voice: tiny" in result.output


def test_say_uses_the_embedded_voice_when_nothing_else_is_installed(tmp_path):
    out = tmp_path / "hello.wav"
    result = CliRunner().invoke(cli, ["say", "hello world", "-o", str(out), "-v"])
    assert result.exit_code == 0, result.output
    assert "voice: ttscli-en" in result.stderr
    audio, rate = soundfile.read(out)
    assert rate == 22050 and 0.3 < len(audio) / rate < 3.0


@pytest.mark.parametrize(
    "data, message",
    [
        (b"hello \xff\xfe world\n", "byte 0xff at offset 6"),
        ("hello".encode("utf-16"), "UTF-16"),
    ],
)
def test_say_refuses_standard_input_that_is_not_utf8(voice_dir, tmp_path, data, message):
    result = run("say", "-", "-o", tmp_path / "x.wav", "--voice", voice_dir, input=data)
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "x.wav").exists()


def test_say_will_not_write_audio_to_a_terminal(voice_dir, monkeypatch):
    import ttscli.cli.say as speak

    monkeypatch.setattr(speak, "_stdout_is_terminal", lambda: True)
    for args in (["-o", "-"], ["--raw"]):
        result = run("say", "hi", *args, "--voice", voice_dir)
        assert result.exit_code == 2 and "terminal" in result.output


def test_say_speaks_text_longer_than_one_item_sentence_by_sentence(voice_dir, tmp_path,
                                                                    monkeypatch):  # fmt: skip
    import ttscli.cli.options as options
    from ttscli.synthesizer import SynthesisConfig

    make_config = options.synthesis_config
    monkeypatch.setattr(
        options,
        "synthesis_config",
        lambda p: SynthesisConfig(**{**make_config(p).__dict__, "max_chars": 12}),  # fmt: skip
    )
    out = tmp_path / "long.wav"
    result = run("say", "First one. Second one.", "-o", out, "--voice", voice_dir, "--pause", "0.1")
    assert result.exit_code == 0, result.output
    audio, rate = soundfile.read(out)
    assert len(audio) == 2 * 20 * 256 + 2205  # two sentences and one pause


def test_a_broken_voice_folder_does_not_break_the_others(voice_dir, tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "voices" / "broken").mkdir(parents=True)
    (home / "voices" / "broken" / "voice.json").write_text("{bad", encoding="utf-8")
    monkeypatch.setenv("TTSCLI_HOME", str(home))
    assert run("voices").exit_code == 0
    result = run("say", "hi", "-o", tmp_path / "x.wav", "--voice", voice_dir)
    assert result.exit_code == 0, result.output
    result = run("say", "hi", "-o", tmp_path / "y.wav", "--voice", "broken")
    assert result.exit_code == 1 and "cannot read" in result.output  # named: says why


@pytest.mark.parametrize(
    "change, message",
    [
        ({"batch_size": "four"}, "'batch_size' must be an integer"),
        ({"gate_threshold": True}, "'gate_threshold' must be a number"),
        ({"griffin_lim": {"n_iter": "x"}}, "'griffin_lim.n_iter' must be an integer"),
        ({"sample_rate": 22050.5}, "'sample_rate' must be an integer"),
        ({"max_edge_silence_seconds": -0.1}, "'max_edge_silence_seconds' must not be negative"),
        ({"pause_seconds": -1}, "'pause_seconds' must not be negative"),
        ({"prenet_dropout": 1.5}, "'prenet_dropout' must be below 1"),
        ({"prenet_dropout": 1}, "'prenet_dropout' must be below 1"),
        ({"griffin_lim": {"momentum": 1.2}}, "'griffin_lim.momentum' must be below 1"),
        ({"griffin_lim": {"n_iter": 0}}, "'griffin_lim.n_iter' must be at least 1"),
        ({"max_decoder_steps": 0}, "'max_decoder_steps' must be at least 1"),
        ({"batch_size": 0}, "'batch_size' must be at least 1"),
        ({"sample_rate": 0}, "'sample_rate' must be at least 1"),
    ],
)
def test_wrongly_typed_voice_json_values_are_clear_errors(voice_dir, tmp_path, change, message):
    import shutil

    folder = tmp_path / "voice"
    shutil.copytree(voice_dir, folder)
    config = json.loads((folder / "voice.json").read_text())
    config.update(change)
    if "griffin_lim" in change:
        config["vocoder"] = "griffin-lim"
    (folder / "voice.json").write_text(json.dumps(config))
    result = run("say", "hi", "-o", tmp_path / "x.wav", "--voice", folder)
    assert result.exit_code == 1 and message in result.output
    assert "Traceback" not in result.output
