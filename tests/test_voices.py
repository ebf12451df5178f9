"""Voice discovery: search order, torch.hub's cache, `ttscli voices`, voice folders."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from ttscli.cli import cli
from ttscli.errors import VoiceError
from ttscli.voices import (
    NVIDIA_VOICES,
    default_voice_name,
    list_voices,
    load_voice,
    torch_hub_checkpoints,
    ttscli_home,
)

FP32 = NVIDIA_VOICES["nvidia-ljspeech"]


def put_files(folder: Path, voice=FP32, size=10):
    folder.mkdir(parents=True, exist_ok=True)
    for name in voice.files.values():
        (folder / name).write_bytes(b"x" * size)


def by_name(infos):
    return {i.name: i for i in infos}


def test_paths_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TTSCLI_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "t"))
    assert ttscli_home() == tmp_path / "h"
    assert torch_hub_checkpoints() == tmp_path / "t" / "checkpoints"  # not hub/checkpoints
    monkeypatch.delenv("TTSCLI_HOME")
    monkeypatch.delenv("TORCH_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert ttscli_home() == tmp_path / "x" / "ttscli"
    assert torch_hub_checkpoints() == tmp_path / "x" / "torch" / "checkpoints"


def test_nothing_installed_lists_nvidia_as_downloadable():
    infos = by_name(list_voices())
    assert infos["nvidia-ljspeech"].status == "downloadable"
    assert infos["nvidia-ljspeech-fp16"].status == "downloadable"
    assert "ttscli-en" in infos


def test_files_left_by_the_torch_hub_snippet_are_found():
    put_files(torch_hub_checkpoints(), size=123)
    info = by_name(list_voices())["nvidia-ljspeech"]
    assert info.status == "installed"
    assert info.location == str(torch_hub_checkpoints())
    assert info.size_bytes == 246
    assert default_voice_name() == "nvidia-ljspeech"


def test_ttscli_home_comes_before_the_torch_hub_cache():
    put_files(torch_hub_checkpoints())
    put_files(ttscli_home())
    assert by_name(list_voices())["nvidia-ljspeech"].location == str(ttscli_home())


def test_one_file_of_a_pair_is_not_installed():
    folder = ttscli_home()
    folder.mkdir(parents=True)
    (folder / FP32.files["tacotron2"]).write_bytes(b"x")
    assert by_name(list_voices())["nvidia-ljspeech"].status == "downloadable"
    with pytest.raises(VoiceError) as exc:
        load_voice("nvidia-ljspeech")
    message = str(exc.value)
    assert "ttscli download nvidia-ljspeech" in message
    assert FP32.files["waveglow"] in message and str(ttscli_home()) in message


def test_voices_json_has_the_documented_keys():
    put_files(torch_hub_checkpoints(), NVIDIA_VOICES["nvidia-ljspeech-fp16"])
    result = CliRunner().invoke(cli, ["voices", "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.output)
    for row in rows:
        assert set(row) == {"name", "kind", "precision", "status", "location", "size_bytes"}
    fp16 = next(r for r in rows if r["name"] == "nvidia-ljspeech-fp16")
    assert fp16["status"] == "installed" and fp16["precision"] == "fp16"


def test_voices_table_lists_every_voice():
    result = CliRunner().invoke(cli, ["voices"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split() == ["NAME", "KIND", "PRECISION", "STATUS", "SIZE", "LOCATION"]
    names = [line.split()[0] for line in lines[1:]]
    assert names[:2] == ["nvidia-ljspeech", "nvidia-ljspeech-fp16"] and "ttscli-en" in names


def test_unknown_voice_name_is_a_voice_error():
    with pytest.raises(VoiceError, match="unknown voice 'nope'"):
        load_voice("nope")


def test_user_voice_folders_in_ttscli_home_are_listed(tmp_path):
    folder = ttscli_home() / "voices" / "mine"
    folder.mkdir(parents=True)
    (folder / "voice.json").write_text(json.dumps({"name": "mine", "vocoder": "griffin-lim"}))
    info = by_name(list_voices())["mine"]
    assert info.kind == "folder" and info.status == "missing"  # no tacotron2.pt yet
    assert os.path.samefile(info.location, folder)


def _save_dle(model, path: Path) -> None:
    import torch

    state = {"module." + k: v for k, v in model.state_dict().items()}
    torch.save({"epoch": 1, "config": model.config, "state_dict": state}, path)


def test_say_uses_the_pair_left_by_the_torch_hub_snippet_with_no_flags(tmp_path):
    import soundfile
    from voicekit import TINY_WAVEGLOW, tiny_tacotron2

    from ttscli.waveglow import WaveGlow

    folder = torch_hub_checkpoints()
    folder.mkdir(parents=True)
    _save_dle(tiny_tacotron2(20), folder / FP32.files["tacotron2"])
    _save_dle(WaveGlow(**TINY_WAVEGLOW), folder / FP32.files["waveglow"])
    assert by_name(list_voices())["nvidia-ljspeech"].status == "installed"
    out = tmp_path / "x.wav"
    result = CliRunner().invoke(cli, ["say", "hello", "-o", str(out), "-v", "--denoise", "0"])
    assert result.exit_code == 0, result.output
    assert "voice: nvidia-ljspeech" in result.stderr
    assert FP32.files["waveglow"] in result.stderr
    audio, rate = soundfile.read(out)
    assert rate == 22050 and len(audio) > 0


def test_a_voice_folder_with_a_waveglow_loads_through_the_same_mechanism(tmp_path):
    from voicekit import write_voice

    folder = write_voice(tmp_path / "wg", vocoder="waveglow")
    voice = load_voice(str(folder))
    assert voice.name == "tiny" and type(voice.vocoder).__name__ == "WaveGlowVocoder"
    assert set(voice.files) >= {"tacotron2", "waveglow"}


def test_stop_at_text_end_comes_from_voice_json_and_reaches_the_decoder(tmp_path, monkeypatch):
    from voicekit import write_voice

    import ttscli.synthesizer as synthesizer
    from ttscli.synthesizer import Synthesizer

    seen = []  # the decoding options of each Tacotron2 call (they travel with the call)
    real_decode = synthesizer.decode

    def recording_decode(model, ids, lengths, options):
        seen.append(options.stop_at_text_end)
        return real_decode(model, ids, lengths, options)

    monkeypatch.setattr(synthesizer, "decode", recording_decode)
    plain = load_voice(str(write_voice(tmp_path / "plain")))
    assert plain.defaults.stop_at_text_end is False
    Synthesizer(plain).synthesize("hello")
    assert seen and set(seen) == {False}
    voice = load_voice(str(write_voice(tmp_path / "ruled", stop_at_text_end=True)))
    assert voice.defaults.stop_at_text_end is True
    seen.clear()
    Synthesizer(voice).synthesize("hello")
    assert seen and set(seen) == {True}
    assert voice.tacotron2.stop_at_text_end is False  # the shared model is left as loaded
    from ttscli.voices import NVIDIA_DEFAULTS

    assert NVIDIA_DEFAULTS.stop_at_text_end is False  # NVIDIA's voices keep NVIDIA's stop rule


def test_edge_silence_limit_comes_from_voice_json_and_trims_what_the_vocoder_left(tmp_path):
    import numpy as np
    import torch
    from voicekit import write_voice

    from ttscli.synthesizer import Synthesizer
    from ttscli.voices import NVIDIA_DEFAULTS

    class QuietThenLoud:  # a vocoder whose audio starts with 0.5 s of silence
        hop_length = 256

        def to(self, device, dtype):
            return self

        def __call__(self, mel, **_):
            audio = torch.zeros(mel.shape[0], mel.shape[2] * 256)
            audio[:, 11025:] = torch.sin(torch.arange(audio.shape[1] - 11025) * 0.1)
            return audio

    lengths = {}
    for name, extra in (("plain", {}), ("trimmed", {"max_edge_silence_seconds": 0.05})):
        voice = load_voice(str(write_voice(tmp_path / name, steps=120, **extra)))
        voice.vocoder = QuietThenLoud()
        lengths[name] = len(Synthesizer(voice).synthesize("hello").audio)

    assert load_voice(str(tmp_path / "trimmed")).defaults.max_edge_silence_seconds == 0.05
    assert lengths["plain"] - lengths["trimmed"] >= int((0.5 - 0.05 - 0.02) * 22050)
    assert np.isinf(NVIDIA_DEFAULTS.max_edge_silence_seconds)  # NVIDIA's audio is left whole


def test_the_fp32_twin_for_redos_reads_the_checkpoints_again(tmp_path):
    """A reduced-precision synthesizer cast the voice's models in place; its float32 twin
    (for pieces that came out non-finite) must not inherit that rounding."""
    import torch
    from voicekit import write_voice

    from ttscli.synthesizer import SynthesisConfig, Synthesizer
    from ttscli.voices import load_voice_dir

    folder = write_voice(tmp_path / "wg", vocoder="waveglow")
    voice = load_voice_dir(folder)
    synth = Synthesizer(voice, SynthesisConfig(precision="bf16"))  # WaveGlow in bfloat16
    rounded = next(voice.vocoder.waveglow.parameters())
    assert rounded.dtype == torch.bfloat16
    twin = synth._fp32_copy()
    original = next(load_voice_dir(folder).vocoder.waveglow.parameters())
    again = next(twin.voice.vocoder.waveglow.parameters())
    assert again.dtype == torch.float32 and torch.equal(again, original)
    assert not torch.equal(rounded.float(), original)  # what a cast back would have given


def test_moving_a_waveglow_vocoder_where_it_is_keeps_its_denoiser(tmp_path):
    import torch
    from voicekit import write_voice

    from ttscli.voices import load_voice_dir

    vocoder = load_voice_dir(write_voice(tmp_path / "wg", vocoder="waveglow")).vocoder
    mel = torch.full((1, vocoder.waveglow.n_mel_channels, 4), -4.0)
    vocoder(mel, sigma=0.0, denoiser_strength=0.1)
    denoiser = vocoder._denoiser
    vocoder.to(torch.device("cpu"), torch.float32)  # already there: the denoiser stays
    assert vocoder._denoiser is denoiser
    vocoder.to(torch.device("cpu"), torch.bfloat16)  # its bias must be rendered again
    assert vocoder._denoiser is None


def test_griffin_lim_voices_invert_the_mel_at_their_own_sample_rate(tmp_path):
    import torch
    from voicekit import write_voice

    from ttscli.audio import griffin_lim

    voice = load_voice(str(write_voice(tmp_path / "v16k", sample_rate=16000)))
    assert voice.sample_rate == 16000
    log_mel = torch.randn(1, 80, 10, generator=torch.Generator().manual_seed(0)) - 4.0
    audio = voice.vocoder(log_mel, sigma=None, denoiser_strength=None)
    at_16k = griffin_lim(log_mel, n_iter=4, momentum=0.99, sample_rate=16000)
    at_22k = griffin_lim(log_mel, n_iter=4, momentum=0.99, sample_rate=22050)
    assert not torch.allclose(at_16k, at_22k)  # the rate matters to the mel inverse
    assert torch.allclose(audio, at_16k)


def test_a_given_tacotron2_with_nvidias_voice_needs_only_nvidias_waveglow(tmp_path):
    """--tacotron2 FILE --voice nvidia-ljspeech: NVIDIA's Tacotron2 is neither needed nor read."""
    import soundfile
    from voicekit import TINY_WAVEGLOW, tiny_tacotron2

    from ttscli.waveglow import WaveGlow

    folder = torch_hub_checkpoints()
    folder.mkdir(parents=True)
    _save_dle(WaveGlow(**TINY_WAVEGLOW), folder / FP32.files["waveglow"])  # no Tacotron2 file
    mine = tmp_path / "mine.pt"
    _save_dle(tiny_tacotron2(20), mine)
    voice = load_voice("nvidia-ljspeech", tacotron2_path=mine)
    assert voice.files["tacotron2"] == str(mine) and voice.name == "nvidia-ljspeech"
    out = tmp_path / "x.wav"
    args = ["say", "hello", "-o", str(out), "--tacotron2", str(mine), "--voice", "nvidia-ljspeech"]
    result = CliRunner().invoke(cli, [*args, "--denoise", "0"])
    assert result.exit_code == 0, result.output
    assert len(soundfile.read(out)[0]) > 0
    (folder / FP32.files["tacotron2"]).write_bytes(b"not a checkpoint")  # never read
    assert load_voice("nvidia-ljspeech", tacotron2_path=mine).files["tacotron2"] == str(mine)


def test_a_given_tacotron2_with_a_voice_folder_does_not_need_the_folders_own(tmp_path):
    from voicekit import tiny_tacotron2, write_voice

    folder = write_voice(tmp_path / "v")
    (folder / "tacotron2.pt").unlink()
    mine = tmp_path / "mine.pt"
    _save_dle(tiny_tacotron2(20), mine)
    voice = load_voice(str(folder), tacotron2_path=mine)
    assert voice.files["tacotron2"] == str(mine) and voice.name == "tiny"
