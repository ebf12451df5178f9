"""Settings: one table of ranges that SynthesisConfig, voice.json and the CLI all follow."""

from __future__ import annotations

import json
import shutil

import click
import pytest
from click.testing import CliRunner
from voicekit import write_voice

from ttscli.cli import cli
from ttscli.config import RANGES, SynthesisConfig, VoiceDefaults
from ttscli.errors import ConfigError, VoiceError

# each with a value just outside the range that the CLI refuses
OUTSIDE = {
    "sigma": ("--sigma", 10.5),
    "denoiser_strength": ("--denoise", 1.5),
    "pause_seconds": ("--pause", 61.0),
}


@pytest.fixture(scope="module")
def voice_dir(tmp_path_factory):
    return write_voice(tmp_path_factory.mktemp("voice") / "tiny")


@pytest.mark.parametrize("name", sorted(OUTSIDE))
def test_the_cli_the_library_and_voice_json_refuse_the_same_values(name, voice_dir, tmp_path):
    flag, value = OUTSIDE[name]
    result = CliRunner().invoke(
        cli, ["say", "hi", "-o", str(tmp_path / "x.wav"), "--voice", str(voice_dir), flag, value]
    )
    assert result.exit_code == 2 and flag in result.output
    with pytest.raises(ConfigError, match=name):
        SynthesisConfig(**{name: value})
    folder = tmp_path / "voice"
    shutil.copytree(voice_dir, folder)
    config = json.loads((folder / "voice.json").read_text())
    (folder / "voice.json").write_text(json.dumps({**config, name: value}))
    from ttscli.voices import load_voice

    with pytest.raises(VoiceError, match=name):
        load_voice(str(folder))


def test_voice_json_gate_threshold_above_one_is_refused(voice_dir, tmp_path):
    from ttscli.voices import load_voice

    folder = tmp_path / "voice"
    shutil.copytree(voice_dir, folder)
    config = json.loads((folder / "voice.json").read_text())
    (folder / "voice.json").write_text(json.dumps({**config, "gate_threshold": 5}))
    with pytest.raises(VoiceError, match="'gate_threshold' must be at most 1"):
        load_voice(str(folder))


def test_the_cli_option_types_carry_the_tables_bounds():
    options = {p.name: p for p in cli.commands["say"].params}
    for name in ("sigma", "denoiser_strength", "seed", "max_decoder_steps", "batch_size"):
        kind = options[name].type
        limits = RANGES[name]
        assert isinstance(kind, click.IntRange | click.FloatRange)
        assert kind.min == limits.low
        assert kind.max == (None if limits.high == float("inf") else limits.high)
    assert options["pause_seconds"].type.max == RANGES["pause_seconds"].high


def test_every_voice_default_has_a_range():
    numbers = [k for k, v in VoiceDefaults().__dict__.items() if not isinstance(v, bool)]
    assert numbers and all(k in RANGES for k in numbers)


def test_values_inside_the_ranges_are_kept():
    config = SynthesisConfig(sigma=10.0, pause_seconds=60.0, prenet_dropout=0.0, seed=0)
    assert (config.sigma, config.pause_seconds, config.seed) == (10.0, 60.0, 0)
    with pytest.raises(ConfigError, match="prenet_dropout must be below 1"):
        SynthesisConfig(prenet_dropout=1.0)


def test_settings_and_voices_load_without_the_synthesizer():
    import subprocess
    import sys

    code = (
        "import sys, ttscli.config, ttscli.voices; "
        "print('ttscli.synthesizer' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
