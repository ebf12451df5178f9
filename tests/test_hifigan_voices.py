"""HiFi-GAN as a vocoder: --vocoder, voices, defaults, batches, precision, convert/info, download."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from click.testing import CliRunner

from ttscli.checkpoints import inspect_checkpoint, load_hifigan, save_hifigan
from ttscli.cli import cli
from ttscli.errors import VoiceError
from ttscli.hifigan import Denoiser, HiFiGAN
from ttscli.synthesizer import SynthesisConfig, Synthesizer
from ttscli.vocoders import GriffinLimVocoder, HiFiGANVocoder, WaveGlowVocoder
from ttscli.voices import NVIDIA_VOICES, default_voice_choice, list_voices, load_voice
from ttscli.voices import torch_hub_checkpoints as hub

DATA = Path(__file__).parent / "data"
HUB_VOICE = NVIDIA_VOICES["nvidia-ljspeech-hifigan"]
HUB_FILE = "hifigan_gen_checkpoint_10000_ft.pt"
TINY = {
    "resblock": "1",
    "upsample_rates": [8, 8, 2, 2],
    "upsample_kernel_sizes": [16, 16, 4, 4],
    "upsample_initial_channel": 32,
    "resblock_kernel_sizes": [3, 5],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5]],
}
TEXT = "Hello there, how are you?"


def tiny_hifigan(seed: int = 0, **overrides) -> HiFiGAN:
    """A small random generator with weight norm, as the training code leaves it."""
    torch.manual_seed(seed)
    model = HiFiGAN(**{**TINY, **overrides}, weight_norm=True)
    with torch.no_grad():  # livelier than the 0.01-std init, so the audio is not ~0
        for name, p in model.named_parameters():
            if name.endswith("weight_g"):
                p.mul_(8.0)
            elif name.endswith("bias"):  # a zero mel then has audio: the denoiser's bias
                p.normal_(0.0, 0.1)
    return model.eval()


def save_nvidia(model: HiFiGAN, path: Path) -> Path:
    """NVIDIA's torch.hub form: {"generator", "config" with training keys}, ``module.`` keys."""
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in model.config.items() if k != "n_mel_channels"}
    config.update(sampling_rate=22050, segment_size=8192, num_mels=80)
    generator = {"module." + k: v for k, v in model.state_dict().items()}
    torch.save({"generator": generator, "config": config, "epoch": 3}, path)
    return path


def save_jik876(model: HiFiGAN, folder: Path, name: str = "generator_v1") -> Path:
    """jik876's release folder: flat residual-block keys, config.json beside."""
    folder.mkdir(parents=True, exist_ok=True)
    kernels = len(model.config["resblock_kernel_sizes"])
    flat = {}
    for key, value in model.state_dict().items():
        parts = key.split(".")
        if parts[0] == "resblocks":
            parts = ["resblocks", str(int(parts[1]) * kernels + int(parts[2])), *parts[3:]]
        flat[".".join(parts)] = value
    torch.save({"generator": flat}, folder / name)
    config = {k: v for k, v in model.config.items() if k != "n_mel_channels"}
    (folder / "config.json").write_text(json.dumps({**config, "num_mels": 80}))
    return folder


def _save_tacotron2_dle(model, path: Path) -> None:
    state = {"module." + k: v for k, v in model.state_dict().items()}
    torch.save({"epoch": 1, "config": model.config, "state_dict": state}, path)


def _install_hub_voice(steps: int | None = 20, waveglow: bool = False) -> Path:
    from voicekit import tiny_tacotron2, tiny_waveglow

    folder = hub()
    folder.mkdir(parents=True, exist_ok=True)
    _save_tacotron2_dle(tiny_tacotron2(steps), folder / HUB_VOICE.files["tacotron2"])
    save_nvidia(tiny_hifigan(), folder / HUB_FILE)
    if waveglow:
        wg = NVIDIA_VOICES["nvidia-ljspeech"].files["waveglow"]
        torch.save({"config": {}, "state_dict": tiny_waveglow().state_dict()}, folder / wg)
    return folder


def _wav(path: Path) -> np.ndarray:
    audio, rate = soundfile.read(path, dtype="float32")
    assert rate == 22050
    return audio


# --- the nvidia-ljspeech-hifigan voice ------------------------------------------------------------


def test_hub_voice_is_listed_and_named_by_its_torch_hub_file():
    assert HUB_VOICE.files == {
        "tacotron2": "nvidia_tacotron2pyt_fp32_20190427",
        "hifigan": HUB_FILE,
    }
    assert HUB_VOICE.vocoder_url.endswith("/" + HUB_FILE)
    info = {i.name: i for i in list_voices()}["nvidia-ljspeech-hifigan"]
    assert info.status == "downloadable"
    _install_hub_voice()
    info = {i.name: i for i in list_voices()}["nvidia-ljspeech-hifigan"]
    assert info.status == "installed" and info.precision == "fp32"


def test_say_with_the_hub_voice_runs_from_the_torch_hub_cache(tmp_path):
    folder = _install_hub_voice(steps=20)
    out = tmp_path / "x.wav"
    args = ["say", "hello", "-o", str(out), "-v", "--voice", "nvidia-ljspeech-hifigan"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "HiFiGANVocoder" in result.stderr and str(folder / HUB_FILE) in result.stderr
    assert len(_wav(out)) == 20 * 256  # the decoder stops after 20 frames: 20 x hop


def test_a_random_tacotron2_reaching_its_decoder_limit_is_a_clear_error(tmp_path):
    _install_hub_voice(steps=None)  # never stops, as a random Tacotron2
    args = ["say", "hello", "-o", str(tmp_path / "x.wav"), "--voice", "nvidia-ljspeech-hifigan"]
    result = CliRunner().invoke(cli, [*args, "--max-decoder-steps", "30"])
    assert result.exit_code == 1
    assert "decoder" in result.output and "Traceback" not in result.output
    assert "checkpoint" not in result.output  # loading went fine


def test_default_voice_prefers_hifigan_on_a_cpu(tmp_path):
    _install_hub_voice(waveglow=True)
    assert {i.name for i in list_voices() if i.status == "installed"} >= {
        "nvidia-ljspeech",
        "nvidia-ljspeech-hifigan",
    }
    name, why = default_voice_choice("cpu")
    assert name == "nvidia-ljspeech-hifigan" and "CPU" in why
    assert default_voice_choice("cuda")[0] == "nvidia-ljspeech"
    out = tmp_path / "x.wav"
    result = CliRunner().invoke(cli, ["say", "hi", "-o", str(out), "-v", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "voice: nvidia-ljspeech-hifigan" in result.stderr
    assert "chosen as the default voice" in result.stderr and "faster" in result.stderr


def test_nvidia_hifigan_defaults_to_nvidias_denoiser_strength():
    _install_hub_voice()
    voice = load_voice("nvidia-ljspeech-hifigan")
    assert isinstance(voice.vocoder, HiFiGANVocoder) and voice.vocoder.origin == "nvidia"
    assert Synthesizer(voice).denoiser_strength == 0.005
    assert Synthesizer(voice, SynthesisConfig(denoiser_strength=0.1)).denoiser_strength == 0.1


# --- --vocoder with any Tacotron2 ---------------------------------------------------------------


@pytest.fixture(params=["hub-file", "jik876-folder"])
def vocoder_path(request, tmp_path) -> Path:
    model = tiny_hifigan(seed=3)
    if request.param == "hub-file":
        return save_nvidia(model, tmp_path / "hub" / HUB_FILE)
    return save_jik876(model, tmp_path / "LJ_FT_T2_V2")


def _trace_mels(vocoder):
    """Wrap a vocoder's generator so that every mel it is given is recorded."""
    seen = []
    model = vocoder.hifigan
    original = model.forward

    def forward(mel):
        seen.append(mel.detach().clone())
        return original(mel)

    model.forward = forward
    return seen


def test_vocoder_replaces_the_embedded_voices_griffin_lim(vocoder_path, tmp_path):
    voice = load_voice("ttscli-en", vocoder=vocoder_path)
    assert isinstance(voice.vocoder, HiFiGANVocoder)
    assert voice.vocoder.origin == ("nvidia" if vocoder_path.is_file() else "jik876")
    voice.defaults = dataclasses.replace(voice.defaults, max_edge_silence_seconds=math.inf)
    seen = _trace_mels(voice.vocoder)
    config = SynthesisConfig(seed=1, denoiser_strength=0.0)
    audio = Synthesizer(voice, config).synthesize(TEXT).audio
    (mel,) = seen
    direct = load_hifigan(vocoder_path)(mel.float())[0, 0].detach().numpy()
    assert audio.shape == direct.shape
    peak = np.max(np.abs(direct))
    np.testing.assert_allclose(audio / np.max(np.abs(audio)), direct / peak, atol=1e-4)
    # the CLI writes that audio, and not the embedded voice's own vocoder's
    out, own = tmp_path / "h.wav", tmp_path / "g.wav"
    base = ["say", TEXT, "--voice", "ttscli-en", "--seed", "1", "--denoise", "0"]
    result = CliRunner().invoke(cli, [*base, "-o", str(out), "--vocoder", str(vocoder_path)])
    assert result.exit_code == 0, result.output
    assert CliRunner().invoke(cli, [*base, "-o", str(own)]).exit_code == 0
    expected = Synthesizer(load_voice("ttscli-en", vocoder=vocoder_path), config)
    wanted = expected.synthesize(TEXT).audio
    written, griffin_lim = _wav(out), _wav(own)
    assert written.shape == wanted.shape
    np.testing.assert_allclose(written, wanted, atol=2e-4)
    n = min(len(written), len(griffin_lim))
    assert np.max(np.abs(written[:n] - griffin_lim[:n])) > 0.1


def test_waveglow_flag_is_the_vocoder_flags_former_name(tmp_path, monkeypatch):
    path = save_jik876(tiny_hifigan(), tmp_path / "LJ_FT_T2_V1")
    out = tmp_path / "x.wav"
    base = ["say", "Hi there.", "--voice", "ttscli-en", "-v", "-o", str(out)]
    result = CliRunner().invoke(cli, [*base, "--waveglow", str(path)])
    assert result.exit_code == 0, result.output
    assert "HiFiGANVocoder" in result.stderr
    monkeypatch.setenv("TTSCLI_VOCODER", str(path))
    result = CliRunner().invoke(cli, base)
    assert result.exit_code == 0 and "HiFiGANVocoder" in result.stderr


def test_nvidia_voice_with_a_vocoder_needs_no_waveglow(tmp_path):
    from voicekit import tiny_tacotron2

    folder = hub()
    folder.mkdir(parents=True)
    _save_tacotron2_dle(tiny_tacotron2(20), folder / HUB_VOICE.files["tacotron2"])
    path = save_jik876(tiny_hifigan(), tmp_path / "LJ_FT_T2_V2")
    with pytest.raises(VoiceError, match="nvidia_waveglowpyt_fp32_20190427"):
        load_voice("nvidia-ljspeech")
    voice = load_voice("nvidia-ljspeech", vocoder=path)
    assert isinstance(voice.vocoder, HiFiGANVocoder)
    assert set(voice.files) == {"tacotron2", "hifigan"}
    assert Synthesizer(voice).denoiser_strength == 0.0  # jik876's generators: no denoiser
    gl = load_voice("nvidia-ljspeech", vocoder="griffin-lim")
    assert isinstance(gl.vocoder, GriffinLimVocoder)


def test_tacotron2_and_vocoder_without_a_voice(tmp_path):
    from voicekit import tiny_tacotron2

    from ttscli.checkpoints import save_tacotron2

    save_tacotron2(tiny_tacotron2(20), tmp_path / "t.pt")
    path = save_nvidia(tiny_hifigan(), tmp_path / "g.pt")
    out = tmp_path / "x.wav"
    args = ["say", "hi", "-o", str(out), "--tacotron2", str(tmp_path / "t.pt")]
    result = CliRunner().invoke(cli, [*args, "--vocoder", str(path)])
    assert result.exit_code == 0, result.output
    assert len(_wav(out)) == 20 * 256


def test_a_vocoder_of_another_hop_or_mel_size_is_refused_at_load(tmp_path):
    short_hop = save_nvidia(tiny_hifigan(upsample_rates=[8, 8, 2, 1]), tmp_path / "hop.pt")
    with pytest.raises(VoiceError, match="128 audio samples per mel frame"):
        load_voice("ttscli-en", vocoder=short_hop)
    model = HiFiGAN(**TINY, n_mel_channels=40)
    torch.save({"generator": model.state_dict(), "config": {**TINY}}, tmp_path / "mel.pt")
    with pytest.raises(VoiceError, match="80-channel mels, its HiFiGAN reads 40"):
        load_voice("ttscli-en", vocoder=tmp_path / "mel.pt")
    out = str(tmp_path / "x.wav")
    result = CliRunner().invoke(cli, ["say", "hi", "-o", out, "--vocoder", str(short_hop)])
    assert result.exit_code == 1 and "samples per mel frame" in result.output


def test_vocoder_errors_have_exact_exit_codes(tmp_path):
    folder = save_jik876(tiny_hifigan(), tmp_path / "two")
    save_jik876(tiny_hifigan(), folder, name="generator_v2")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    out = str(tmp_path / "x.wav")
    base = ["say", "hi", "-o", out, "--voice", "ttscli-en", "--vocoder"]
    two = CliRunner().invoke(cli, [*base, str(folder)])
    assert two.exit_code == 1 and "generator_v1, generator_v2" in two.output
    bad = CliRunner().invoke(cli, [*base, str(text)])
    assert bad.exit_code == 1 and "not a PyTorch checkpoint" in bad.output
    taco = CliRunner().invoke(cli, [*base, str(DATA / "tacotron2_dle_checkpoint.pt")])
    assert taco.exit_code == 1 and "not a vocoder" in taco.output
    missing = CliRunner().invoke(cli, [*base, str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "griffin-lim" in missing.output
    for result in (two, bad, taco, missing):
        assert "Traceback" not in result.output


def test_batch_takes_the_vocoder_and_resumes_only_with_the_same_one(tmp_path):
    jik = save_jik876(tiny_hifigan(), tmp_path / "LJ_FT_T2_V2")
    lines = tmp_path / "in.txt"
    lines.write_text("Hello there.\nHow are you today?\n")
    out = tmp_path / "wavs"
    base = ["batch", str(lines), "-o", str(out), "--voice", "ttscli-en", "-q", "--seed", "1"]
    first = CliRunner().invoke(cli, [*base, "--vocoder", str(jik)])
    assert first.exit_code == 0, first.output
    rows = [json.loads(r) for r in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["status"] for r in rows] == ["ok", "ok"]
    again = CliRunner().invoke(cli, [*base, "--vocoder", str(jik)])
    assert again.exit_code == 0
    rows = [json.loads(r) for r in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["status"] for r in rows] == ["ok", "ok"]  # nothing spoken again
    other = CliRunner().invoke(cli, [*base, "--vocoder", "griffin-lim"])
    assert other.exit_code == 0
    rows = [json.loads(r) for r in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["status"] for r in rows[2:]] == ["ok", "ok"]  # another vocoder: spoken again


# --- voice folders --------------------------------------------------------------------------------


def test_voice_json_names_a_hifigan_file_or_a_jik876_folder(tmp_path):
    from voicekit import write_voice

    folder = write_voice(tmp_path / "v", vocoder="hifigan", steps=20)
    del_key = json.loads((folder / "voice.json").read_text())
    del del_key["denoiser_strength"]
    (folder / "voice.json").write_text(json.dumps(del_key))
    with pytest.raises(VoiceError, match="needs a HiFi-GAN"):
        load_voice(str(folder))
    save_jik876(tiny_hifigan(), folder / "LJ_FT_T2_V3")
    voice = load_voice(str(folder))
    assert isinstance(voice.vocoder, HiFiGANVocoder) and voice.vocoder.origin == "jik876"
    save_hifigan(load_hifigan(folder / "LJ_FT_T2_V3"), folder / "hifigan.pt", {"origin": "nvidia"})
    voice = load_voice(str(folder))
    assert voice.files["hifigan"] == str(folder / "hifigan.pt")
    assert voice.defaults.denoiser_strength == 0.005  # the file's origin decides
    result = Synthesizer(voice).synthesize("hello")
    assert result.ok and len(result.audio) > 0


def test_a_converted_generator_keeps_its_origins_default(tmp_path):
    hub_file = save_nvidia(tiny_hifigan(), tmp_path / HUB_FILE)
    jik = save_jik876(tiny_hifigan(), tmp_path / "LJ_FT_T2_V2")
    for source, strength in ((hub_file, 0.005), (jik, 0.0)):
        out = tmp_path / f"{source.name}.converted.pt"
        result = CliRunner().invoke(cli, ["convert", str(source), str(out), "--fp16"])
        assert result.exit_code == 0, result.output
        info = inspect_checkpoint(out)
        assert info["format"] == "ttscli" and info["dtypes"] == ["float16"]
        assert info["origin"] == inspect_checkpoint(source)["origin"]
        voice = load_voice("ttscli-en", vocoder=out)
        assert voice.defaults.denoiser_strength == strength
    shown = CliRunner().invoke(cli, ["info", str(jik)])
    assert shown.exit_code == 0 and "hifigan-jik876" in shown.output


def test_the_voice_signature_follows_the_vocoder_given_or_inside_a_voice_folder(tmp_path):
    import os

    from voicekit import write_voice

    from ttscli.voices import voice_signature

    jik = save_jik876(tiny_hifigan(), tmp_path / "LJ_FT_T2_V2")
    before = voice_signature("ttscli-en", None, jik)
    assert (
        before != voice_signature("ttscli-en", None, "griffin-lim") != voice_signature("ttscli-en")
    )
    save_jik876(tiny_hifigan(seed=5), jik)
    os.utime(jik / "generator_v1", ns=(1, 1))
    assert voice_signature("ttscli-en", None, jik) != before
    folder = write_voice(tmp_path / "v", vocoder="hifigan")
    save_jik876(tiny_hifigan(), folder / "LJ_FT_T2_V1")
    inside = voice_signature(str(folder))
    os.utime(folder / "LJ_FT_T2_V1" / "generator_v1", ns=(1, 1))
    assert voice_signature(str(folder)) != inside


# --- the vocoder itself ---------------------------------------------------------------------------


def test_batched_lines_of_different_lengths_equal_one_at_a_time():
    from ttscli.audio import LOG_MEL_FLOOR

    vocoder = HiFiGANVocoder(tiny_hifigan().remove_weight_norm())
    torch.manual_seed(0)
    frames = [23, 9, 23, 16]
    mel = torch.full((4, 80, 23), LOG_MEL_FLOOR)
    for row, n in enumerate(frames):
        mel[row, :, :n] = torch.randn(80, n) - 5
    batched = vocoder(mel, sigma=None, denoiser_strength=None, frames=frames)
    assert batched.shape == (4, 23 * 256)
    for row, n in enumerate(frames):
        alone = vocoder(mel[row : row + 1, :, :n], sigma=None, denoiser_strength=None)
        torch.testing.assert_close(batched[row, : n * 256], alone[0], rtol=0, atol=1e-4)
        assert torch.all(batched[row, n * 256 :] == 0)
    padded = vocoder(mel, sigma=None, denoiser_strength=None)  # no frames: padding leaks in
    assert (padded[1, : 9 * 256] - batched[1, : 9 * 256]).abs().max() > 1e-4


def test_the_denoiser_applies_to_hifigan():
    model = tiny_hifigan().remove_weight_norm()
    vocoder = HiFiGANVocoder(model)
    mel = 0.1 * torch.randn(1, 80, 12)  # near the zero log-mel the bias is rendered from
    plain = vocoder(mel, sigma=None, denoiser_strength=0.0)
    denoised = vocoder(mel, sigma=None, denoiser_strength=0.5)
    expected = Denoiser(model)(plain, strength=0.5)
    torch.testing.assert_close(denoised, expected, rtol=0, atol=1e-5)
    assert (denoised - plain).abs().max() > 1e-4


def test_bf16_runs_hifigan_in_bfloat16_and_redoes_non_finite_output_in_fp32(tmp_path):
    path = save_jik876(tiny_hifigan(), tmp_path / "LJ_FT_T2_V2")
    config = SynthesisConfig(seed=1, precision="bf16", device="cpu")
    voice = load_voice("ttscli-en", vocoder=path)
    synth = Synthesizer(voice, config)
    assert voice.vocoder.dtype == torch.bfloat16
    with torch.no_grad():
        voice.vocoder.hifigan.conv_post.bias.fill_(float("nan"))  # the bf16 copy only
    result = synth.synthesize("Hello there.")
    assert result.ok and np.isfinite(result.audio).all() and np.abs(result.audio).max() > 0
    redo = synth._fp32_fallback.voice.vocoder  # read again from its file, in float32
    assert isinstance(redo, HiFiGANVocoder) and redo.dtype == torch.float32


def test_a_ray_worker_builds_the_voice_with_the_vocoder(tmp_path):
    from ttscli.ray import SynthesisWorker

    path = save_jik876(tiny_hifigan(), tmp_path / "LJ_FT_T2_V2")
    worker = SynthesisWorker(
        ("ttscli-en", None, str(path)), SynthesisConfig(seed=1), None, "wav", 1
    )
    assert worker.load_error is None
    assert isinstance(worker.synth.voice.vocoder, HiFiGANVocoder)
    (result,), _ = worker.render([(0, "a", "Hello there.")])
    assert result.error is None and len(result.audio) > 0


def test_waveglow_files_still_give_a_waveglow_vocoder(tmp_path):
    from voicekit import tiny_waveglow

    from ttscli.checkpoints import save_waveglow

    save_waveglow(tiny_waveglow(), tmp_path / "wg.pt")
    voice = load_voice("ttscli-en", vocoder=tmp_path / "wg.pt")
    assert isinstance(voice.vocoder, WaveGlowVocoder)
    assert voice.files["waveglow"] == str(tmp_path / "wg.pt")
    assert voice.defaults.denoiser_strength == load_voice("ttscli-en").defaults.denoiser_strength


# --- download -------------------------------------------------------------------------------------


def test_download_fetches_the_hub_voices_files_through_a_mirror(tmp_path, monkeypatch):
    import http.server
    import os
    import threading

    from voicekit import tiny_tacotron2

    _save_tacotron2_dle(tiny_tacotron2(20), tmp_path / "t.pt")
    save_nvidia(tiny_hifigan(), tmp_path / "g.pt")
    bodies = {
        HUB_VOICE.files["tacotron2"]: (tmp_path / "t.pt").read_bytes(),
        HUB_FILE: (tmp_path / "g.pt").read_bytes(),
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            body = bodies.get(self.path.rsplit("/", 1)[1])
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("TTSCLI_DOWNLOAD_BASE", f"http://127.0.0.1:{httpd.server_address[1]}/x")
        result = CliRunner().invoke(cli, ["download", "nvidia-ljspeech-hifigan", "-q"])
    finally:
        httpd.shutdown()
    assert result.exit_code == 0, result.output
    home = Path(os.environ["TTSCLI_HOME"])
    for name, body in bodies.items():
        assert (home / name).read_bytes() == body
    assert isinstance(load_voice("nvidia-ljspeech-hifigan").vocoder, HiFiGANVocoder)


# --- CUDA (skipped without a GPU; `make gpu-check` runs them) --------------------------------------


def _snr_db(reference: torch.Tensor, other: torch.Tensor) -> float:
    noise = (reference - other).pow(2).sum()
    return float(10 * torch.log10(reference.pow(2).sum() / noise.clamp_min(1e-30)))


@pytest.mark.cuda
def test_cuda_fp16_hifigan_matches_fp32_on_the_fixture():
    data = DATA / "hifigan"
    expected = torch.load(data / "hifigan_dle_expected.pt", weights_only=True)
    mel = expected["mel"]
    model = load_hifigan(data / "hifigan_dle_checkpoint.pt", device="cuda", dtype=torch.float16)
    with torch.no_grad():
        audio = model(mel.to("cuda", torch.float16)).float().cpu()
    reference = load_hifigan(data / "hifigan_dle_checkpoint.pt")(mel).detach()
    assert audio.shape == reference.shape and torch.isfinite(audio).all()
    assert _snr_db(reference, audio) > 30


@pytest.mark.cuda
def test_cuda_fp16_vocoder_batches_equal_one_at_a_time_and_denoise():
    model = tiny_hifigan().remove_weight_norm()
    vocoder = HiFiGANVocoder(model).to(torch.device("cuda"), torch.float16)
    torch.manual_seed(0)
    frames = [17, 9, 17]
    mel = torch.randn(3, 80, 17, device="cuda") - 5
    batched = vocoder(mel, sigma=None, denoiser_strength=0.005, frames=frames)
    assert batched.dtype == torch.float32 and batched.device.type == "cuda"
    for row, n in enumerate(frames):
        alone = vocoder(mel[row : row + 1, :, :n], sigma=None, denoiser_strength=0.005)
        torch.testing.assert_close(batched[row, : n * 256], alone[0], rtol=0, atol=1e-3)


@pytest.mark.cuda
def test_cuda_fp16_synthesizer_with_hifigan(tmp_path):
    path = save_nvidia(tiny_hifigan(), tmp_path / HUB_FILE)
    voice = load_voice("ttscli-en", vocoder=path)
    synth = Synthesizer(voice, SynthesisConfig(seed=1, device="cuda", precision="fp16"))
    assert voice.vocoder.dtype == torch.float16
    result = synth.synthesize(TEXT)
    assert result.ok and np.isfinite(result.audio).all() and len(result.audio) > 0
    fp32 = Synthesizer(load_voice("ttscli-en", vocoder=path), SynthesisConfig(seed=1))
    assert abs(len(fp32.synthesize(TEXT).audio) - len(result.audio)) <= 0.2 * len(result.audio)


# --- the GPU check's smoke mode (so that `make gpu-check` cannot rot) -----------------------------


def test_gpu_check_smoke_mode_on_the_cpu(capsys):
    from benchmarks import gpu_check

    assert gpu_check.main(["--device", "cpu", "--quick", "--no-tests"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(line)
    assert result["quick"] is True and result["steps"] == 8
    for vocoder in ("waveglow", "hifigan"):
        figures = result["real_time_factor"][vocoder]["fp32"]
        assert set(figures) == {"B1", "B4"} and all(v > 0 for v in figures.values())


def test_gpu_check_runs_the_cuda_marked_tests():
    import re

    from benchmarks import gpu_check

    result = gpu_check.run_cuda_tests(timeout_s=300)
    assert result["rc"] == 0, result
    counts = dict(
        (word, int(n))
        for n, word in re.findall(r"(\d+) (passed|skipped|deselected)", result["summary"])
    )
    # this file's three cuda tests are among them: skipped without a GPU, passed with one
    assert counts.get("passed", 0) + counts.get("skipped", 0) >= 3
    assert counts.get("deselected", 0) > 0  # the other tests are left out
