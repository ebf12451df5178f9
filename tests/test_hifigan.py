"""HiFi-GAN generator, denoiser and checkpoint forms against NVIDIA's and jik876's outputs (fixtures)."""

from __future__ import annotations

import json
import pathlib
import shutil

import pytest
import torch

from ttscli.checkpoints import (
    inspect_checkpoint,
    load_hifigan,
    load_waveglow,
    save_hifigan,
)
from ttscli.errors import CheckpointError, ConfigError
from ttscli.hifigan import (
    CONFIG_KEYS,
    HIFIGAN_V1_CONFIG,
    Denoiser,
    HiFiGAN,
    vocode_by_length,
)

DATA = pathlib.Path(__file__).parent / "data" / "hifigan"
DLE_FILE = DATA / "hifigan_dle_checkpoint.pt"
JIK_CASES = [("hifigan_jik_v1", "generator_v1"), ("hifigan_jik_v3", "generator_v3")]


def _load(path: pathlib.Path):
    return torch.load(path, map_location="cpu", weights_only=True)


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-4)


def _snr_db(reference: torch.Tensor, other: torch.Tensor) -> float:
    reference = reference.double()
    noise = other.double() - reference
    return float(10 * torch.log10(reference.pow(2).sum() / noise.pow(2).sum()))


@pytest.fixture(scope="module")
def dle():
    return _load(DLE_FILE), _load(DATA / "hifigan_dle_expected.pt")


def _run(model: torch.nn.Module, mel: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(mel)


def _flat_to_nested(sd: dict, n_kernels: int) -> dict:
    # written out independently of the loader: resblocks.<n>.X -> resblocks.<n // k>.<n % k>.X
    out = {}
    for key, value in sd.items():
        parts = key.split(".")
        if parts[0] == "resblocks":
            n = int(parts[1])
            key = ".".join(["resblocks", str(n // n_kernels), str(n % n_kernels), *parts[2:]])
        out[key] = value
    return out


def _nested_to_flat(sd: dict, n_kernels: int) -> dict:
    out = {}
    for key, value in sd.items():
        parts = key.split(".")
        if parts[0] == "resblocks":
            n = int(parts[1]) * n_kernels + int(parts[2])
            key = ".".join(["resblocks", str(n), *parts[3:]])
        out[key] = value
    return out


# --- generator ---------------------------------------------------------------------------------


def test_dle_audio_before_and_after_folding_weight_norm(dle):
    checkpoint, expected = dle
    model = HiFiGAN(**checkpoint["config"], weight_norm=True).eval()
    model.load_state_dict(checkpoint["generator"], strict=True)
    _close(_run(model, expected["mel"]), expected["audio_before_remove_weight_norm"])
    model.remove_weight_norm()
    assert not any(k.endswith("weight_g") for k in model.state_dict())
    _close(_run(model, expected["mel"]), expected["audio"])
    loaded = load_hifigan(DLE_FILE)
    assert not loaded.training
    out = _run(loaded, expected["mel"])
    assert out.shape == (2, 1, 256 * expected["mel"].size(-1))
    _close(out, expected["audio"])


@pytest.mark.parametrize(("folder", "generator"), JIK_CASES)
def test_jik876_audio_before_and_after_folding(folder, generator):
    expected = _load(DATA / f"{folder}_expected.pt")
    config = json.loads((DATA / folder / "config.json").read_text())
    model = HiFiGAN(**{k: config[k] for k in CONFIG_KEYS}, weight_norm=True).eval()
    raw = _load(DATA / folder / generator)["generator"]
    model.load_state_dict(_flat_to_nested(raw, len(config["resblock_kernel_sizes"])))
    _close(_run(model, expected["mel"]), expected["audio_before_remove_weight_norm"])
    for path in (DATA / folder, DATA / folder / generator):
        _close(_run(load_hifigan(path), expected["mel"]), expected["audio"])


def test_full_size_v1_keys_and_shapes_match_nvidia():
    expected = json.loads((DATA / "full_size_dle_v1_keys.json").read_text())
    model = HiFiGAN(**HIFIGAN_V1_CONFIG, weight_norm=True)
    found = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert found == expected
    assert model.hop_length == 256


@pytest.mark.parametrize(
    "config",
    [
        {
            "resblock": "1",
            "upsample_rates": [5, 5, 4, 3],
            "upsample_kernel_sizes": [11, 11, 8, 7],
            "upsample_initial_channel": 32,
            "resblock_kernel_sizes": [3, 5],
            "resblock_dilation_sizes": [[1, 2, 4], [1, 3, 9]],
        },
        {
            "resblock": 2,
            "upsample_rates": (4, 4),
            "upsample_kernel_sizes": (8, 4),
            "upsample_initial_channel": 16,
            "resblock_kernel_sizes": (3,),
            "resblock_dilation_sizes": ((1, 2),),
        },
    ],
)
def test_other_configs_give_frames_times_hop(config, tmp_path):
    torch.manual_seed(0)
    model = HiFiGAN(**config, weight_norm=True).eval()
    hop = 1
    for rate in config["upsample_rates"]:
        hop *= rate
    assert model.hop_length == hop
    mel = torch.randn(3, 80, 9)
    audio = _run(model, mel)
    assert audio.shape == (3, 1, 9 * hop)
    path = tmp_path / "dle.pt"
    torch.save({"generator": model.state_dict(), "config": dict(config)}, path)
    loaded = load_hifigan(path)
    _close(_run(loaded, mel), audio)
    assert inspect_checkpoint(path)["hop_length"] == hop


@pytest.mark.parametrize(
    "change",
    [
        {"resblock": "3"},
        {"upsample_kernel_sizes": [16, 16, 4]},
        {"upsample_kernel_sizes": [4, 16, 4, 4]},
        {"resblock_dilation_sizes": [[1, 3], [1, 3, 5], [1, 3, 5]]},
        {"resblock": "2", "resblock_dilation_sizes": [[1], [1, 3], [1, 3]]},
        {"resblock_kernel_sizes": [3, 7]},
        {"upsample_initial_channel": 8},
    ],
)
def test_inconsistent_configs_are_config_errors(change):
    with pytest.raises(ConfigError):
        HiFiGAN(**{**HIFIGAN_V1_CONFIG, **change})


def test_bfloat16_model_runs_in_bfloat16(dle):
    _, expected = dle
    model = load_hifigan(DLE_FILE).to(torch.bfloat16)
    out = _run(model, expected["mel"].to(torch.bfloat16))
    assert out.dtype == torch.bfloat16 and out.shape == expected["audio"].shape
    assert _snr_db(expected["audio"], out.float()) > 20
    again = load_hifigan(DLE_FILE, dtype=torch.bfloat16)
    assert next(again.parameters()).dtype == torch.bfloat16


# --- denoiser ----------------------------------------------------------------------------------


def test_denoiser_matches_nvidia_at_both_strengths(dle):
    _, expected = dle
    denoiser = Denoiser(load_hifigan(DLE_FILE))
    _close(denoiser.bias_spec, expected["denoiser_bias_spec"])
    for strength in (0.005, 0.1):
        target = expected[f"denoised_strength_{strength}"]  # [B, 1, T]
        _close(denoiser(expected["audio"], strength=strength), target)
        _close(denoiser(expected["audio"][:, 0], strength=strength), target[:, 0])
    assert not torch.equal(
        denoiser(expected["audio"], strength=0.1), denoiser(expected["audio"], strength=0.0)
    )


def test_denoiser_of_bfloat16_model_is_float32(dle):
    _, expected = dle
    denoiser = Denoiser(load_hifigan(DLE_FILE, dtype=torch.bfloat16))
    assert denoiser.bias_spec.dtype == torch.float32
    out = denoiser(expected["audio"].to(torch.bfloat16), strength=0.005)
    assert out.dtype == torch.float32 and out.shape == expected["audio"].shape


# --- checkpoint forms ------------------------------------------------------------------------


def test_dle_key_variants_and_storage_forms(dle, tmp_path):
    checkpoint, expected = dle
    sd, config = checkpoint["generator"], checkpoint["config"]
    n = len(config["resblock_kernel_sizes"])
    variants = {
        "module": {"module." + k: v for k, v in sd.items()},
        "flat": _nested_to_flat(sd, n),
        "flat_module": {"module." + k: v for k, v in _nested_to_flat(sd, n).items()},
        # conv weights stored with a trailing singleton dimension (NVIDIA's conv2d form)
        "trailing_dim": {k: v[..., None] if k.endswith("weight_v") else v for k, v in sd.items()},
    }
    model = HiFiGAN(**config, weight_norm=True)
    model.load_state_dict(sd)
    variants["folded"] = model.remove_weight_norm().state_dict()  # as some exports are
    for name, state_dict in variants.items():
        path = tmp_path / f"{name}.pt"
        torch.save({**checkpoint, "generator": state_dict}, path)
        _close(_run(load_hifigan(path), expected["mel"]), expected["audio"])


def test_jik876_nested_keys_and_bare_state_dict(tmp_path):
    expected = _load(DATA / "hifigan_jik_v1_expected.pt")
    raw = _load(DATA / "hifigan_jik_v1" / "generator_v1")["generator"]
    shutil.copy(DATA / "hifigan_jik_v1" / "config.json", tmp_path / "config.json")
    nested = _flat_to_nested(raw, 3)
    torch.save({"generator": nested}, tmp_path / "g_00100000")
    _close(_run(load_hifigan(tmp_path / "g_00100000"), expected["mel"]), expected["audio"])
    torch.save(raw, tmp_path / "bare.pt")
    _close(_run(load_hifigan(tmp_path / "bare.pt"), expected["mel"]), expected["audio"])


def test_legacy_format_and_cuda_storages_are_read_safely():
    # the jik876 file is torch's pre-1.6 format; the DLE file's storages are tagged cuda:0
    assert (DATA / "hifigan_jik_v1" / "generator_v1").read_bytes()[:2] == b"\x80\x02"
    assert inspect_checkpoint(DATA / "hifigan_jik_v1")["safe"] is True
    info = inspect_checkpoint(DLE_FILE)
    assert info["safe"] is True and info["format"] == "hifigan-dle"
    assert all(p.device.type == "cpu" for p in load_hifigan(DLE_FILE).parameters())


def test_ttscli_format_round_trip(dle, tmp_path):
    _, expected = dle
    model = load_hifigan(DATA / "hifigan_jik_v3")
    path = tmp_path / "hifigan.pt"
    save_hifigan(model, path, {"origin": "jik876"})
    info = inspect_checkpoint(path)
    assert info["format"] == "ttscli" and info["kind"] == "hifigan"
    assert info["origin"] == "jik876" and info["weight_norm"] is False
    jik = _load(DATA / "hifigan_jik_v3_expected.pt")
    _close(_run(load_hifigan(path), jik["mel"]), jik["audio"])
    save_hifigan(model, tmp_path / "half.pt", half=True)
    assert inspect_checkpoint(tmp_path / "half.pt")["dtypes"] == ["float16"]
    half = load_hifigan(tmp_path / "half.pt")
    assert _snr_db(jik["audio"], _run(half, jik["mel"])) > 30
    with pytest.raises(CheckpointError, match="needs a HiFiGAN"):
        save_hifigan(torch.nn.Linear(2, 2), tmp_path / "x.pt")


def test_inspect_describes_each_form():
    dle_info = inspect_checkpoint(DLE_FILE)
    assert (dle_info["kind"], dle_info["origin"], dle_info["hop_length"]) == (
        "hifigan",
        "nvidia",
        256,
    )
    assert dle_info["weight_norm"] is True
    for folder, generator in JIK_CASES:
        info = inspect_checkpoint(DATA / folder)
        assert info["format"] == "hifigan-jik876" and info["origin"] == "jik876"
        assert info["path"].endswith(generator)
    v3 = inspect_checkpoint(DATA / "hifigan_jik_v3")
    assert v3["config"]["resblock"] == "2" and v3["config"]["upsample_rates"] == [8, 8, 4]


# --- errors ------------------------------------------------------------------------------------


def test_folder_errors(tmp_path):
    folder = tmp_path / "LJ_FT_T2_V1"
    folder.mkdir()
    with pytest.raises(CheckpointError, match="directory without a HiFi-GAN generator"):
        load_hifigan(folder)
    shutil.copy(DATA / "hifigan_jik_v1" / "generator_v1", folder / "generator_v1")
    with pytest.raises(CheckpointError, match="config.json"):
        load_hifigan(folder)
    with pytest.raises(CheckpointError, match="config.json"):
        load_hifigan(folder / "generator_v1")
    shutil.copy(DATA / "hifigan_jik_v1" / "config.json", folder / "config.json")
    shutil.copy(DATA / "hifigan_jik_v3" / "generator_v3", folder / "generator_v3")
    with pytest.raises(CheckpointError, match="generator_v1, generator_v3"):
        load_hifigan(folder)


def test_bad_files_are_checkpoint_errors(dle, tmp_path):
    checkpoint, _ = dle
    bad_json = tmp_path / "json"
    bad_json.mkdir()
    shutil.copy(DATA / "hifigan_jik_v1" / "generator_v1", bad_json / "generator_v1")
    (bad_json / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_hifigan(bad_json)
    (bad_json / "config.json").write_text(json.dumps({"resblock": "1"}))
    with pytest.raises(CheckpointError, match="lacks upsample_rates"):
        load_hifigan(bad_json)
    wider = tmp_path / "wider.pt"
    torch.save(
        {**checkpoint, "config": {**checkpoint["config"], "upsample_initial_channel": 256}}, wider
    )
    with pytest.raises(CheckpointError, match="do not fit"):
        load_hifigan(wider)
    broken = tmp_path / "broken.pt"
    torch.save({**checkpoint, "config": {**checkpoint["config"], "resblock": "7"}}, broken)
    with pytest.raises(CheckpointError, match="resblock"):
        load_hifigan(broken)
    with pytest.raises(CheckpointError, match="expected a WaveGlow"):
        load_waveglow(DLE_FILE)
    with pytest.raises(CheckpointError, match="expected a HiFi-GAN"):
        load_hifigan(pathlib.Path(__file__).parent / "data" / "waveglow_dle_checkpoint.pt")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_hifigan(text)


# --- batches -------------------------------------------------------------------------------------


def test_padding_leaks_into_a_shorter_items_audio(dle):
    _, expected = dle
    model = load_hifigan(DLE_FILE)
    mel = expected["mel"][:1, :, :20]
    alone = _run(model, mel)
    for value in (0.0, -11.5129):  # zeros, and log(1e-5): the silence of a log-mel
        padded = torch.nn.functional.pad(mel, (0, 12), value=value)
        trimmed = _run(model, padded)[..., : alone.size(-1)]
        assert (trimmed - alone).abs().max() > 1e-4  # why batches are grouped by length


def test_vocode_by_length_equals_one_at_a_time(dle):
    _, expected = dle
    model = load_hifigan(DLE_FILE)
    mel = expected["mel"]
    lengths = [20, 32, 7, 20, 32, 1]
    mels = [mel[i % 2, :, :n] for i, n in enumerate(lengths)]
    for max_batch in (None, 1, 2):
        audio = vocode_by_length(model, mels, max_batch=max_batch)
        assert [a.shape[-1] for a in audio] == [256 * n for n in lengths]
        for one, m in zip(audio, mels, strict=True):
            _close(one, _run(model, m[None])[0, 0])
    assert vocode_by_length(model, []) == []


# --- fast paths ----------------------------------------------------------------------------------


def test_fused_inference_path_matches_the_plain_one(dle):
    _, expected = dle
    model = load_hifigan(DLE_FILE)
    with torch.no_grad():  # oneDNN's fused convolutions where torch has them
        fast = model(expected["mel"])
    with torch.enable_grad():  # plain convolutions, then elementwise ops
        plain = model(expected["mel"]).detach()
    _close(fast, plain)
    _close(fast, expected["audio"])


def test_new_weights_are_used_after_a_run(dle):
    _, expected = dle
    jik = _load(DATA / "hifigan_jik_v1_expected.pt")  # same config as the DLE fixture
    model = load_hifigan(DLE_FILE)
    _close(_run(model, expected["mel"]), expected["audio"])
    model.load_state_dict(load_hifigan(DATA / "hifigan_jik_v1").state_dict())
    _close(_run(model, jik["mel"]), jik["audio"])
    with torch.no_grad():
        model.conv_post.weight.zero_()
        model.conv_post.bias.zero_()
    assert torch.equal(_run(model, jik["mel"]), torch.zeros_like(jik["audio"]))
    model.to(torch.bfloat16)
    out = _run(model, jik["mel"].to(torch.bfloat16))
    assert out.dtype == torch.bfloat16 and not out.any()


def test_blocks_use_the_dilations_the_references_use():
    # NVIDIA's and jik876's blocks read dilation[0..2] (type "1") or dilation[0..1] (type "2")
    config = {**HIFIGAN_V1_CONFIG, "upsample_initial_channel": 16}
    one = HiFiGAN(**{**config, "resblock_dilation_sizes": [[1, 3, 5, 7]] * 3})
    assert [c.dilation for c in one.resblocks[0][0].convs1] == [1, 3, 5]
    two = HiFiGAN(**{**config, "resblock": "2", "resblock_dilation_sizes": [[1, 3, 5]] * 3})
    assert [c.dilation for c in two.resblocks[1][2].convs] == [1, 3]
    assert not any(".convs.2." in k for k in two.state_dict())
