"""WaveGlow and Denoiser parity with NVIDIA DeepLearningExamples' outputs (fixtures), keys, dtypes."""

from __future__ import annotations

import copy
import json
import pathlib

import pytest
import torch

from ttscli.errors import CheckpointError, SynthesisError, TTSError
from ttscli.waveglow import DEFAULT_CONFIG, Denoiser, Invertible1x1Conv, WaveGlow, as_rows

DATA = pathlib.Path(__file__).parent / "data"


def _load(name: str):
    return torch.load(DATA / name, map_location="cpu", weights_only=True)


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


def _load_waveglow(remove_weightnorm: bool = False) -> WaveGlow:
    """The fixture checkpoint as torch.hub loads it: `module.` stripped, strict, eval()."""
    checkpoint = _load("waveglow_dle_checkpoint.pt")
    state_dict = {k.replace("module.", ""): v for k, v in checkpoint["state_dict"].items()}
    model = WaveGlow(**checkpoint["config"])
    model.load_state_dict(state_dict, strict=True)
    model.eval()
    return model.remove_weightnorm() if remove_weightnorm else model


def _snr_db(reference: torch.Tensor, other: torch.Tensor) -> float:
    reference = reference.double()
    noise = other.double() - reference
    return float(10 * torch.log10(reference.pow(2).sum() / noise.pow(2).sum()))


@pytest.fixture(scope="module")
def infer_case():
    return _load("waveglow_infer.pt")


@pytest.fixture(scope="module")
def denoiser_case():
    return _load("waveglow_denoiser.pt")


# --- layout ----------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["waveglow_dle", "waveglow_dle_256"])
def test_hub_config_matches_full_size_manifest(variant):
    manifest = json.loads((DATA / "full_size_manifest.json").read_text())[variant]
    config = manifest["config"]
    if variant == "waveglow_dle":
        assert config == DEFAULT_CONFIG
    with torch.device("meta"):
        model = WaveGlow(**config)
    assert model.config == config
    got = [
        {"key": k, "shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
        for k, v in model.state_dict().items()
    ]
    assert got == manifest["state_dict"]  # keys, shapes, dtypes and order
    assert sum(p.numel() for p in model.parameters()) == manifest["n_parameters"]
    assert model.remove_weightnorm() is model
    assert list(model.state_dict()) == manifest["state_dict_after_remove_weightnorm"]
    n_folded = sum(p.numel() for p in model.parameters())
    assert n_folded == manifest["n_parameters_after_remove_weightnorm"]


def test_config_is_a_copy():
    model = _load_waveglow()
    config = model.config
    config["WN_config"]["n_channels"] = 1
    assert model.config["WN_config"]["n_channels"] == 32


_SMALL_WN = dict(n_layers=1, kernel_size=3, n_channels=8)


@pytest.mark.parametrize(
    ("n_group", "n_flows", "n_early_every", "n_early_size", "problem"),
    [
        (7, 2, 4, 2, "n_group must be even"),
        # 4 channels, 1 leaves at flow 2: halves of 1 and 2 (NVIDIA's conv raises mid-inference)
        (4, 4, 2, 1, "leaves 3 channels at flow 2"),
        # 8 - 2 - 2 - 2 - 2: nothing left at flow 8 (NVIDIA's constructor raises)
        (8, 12, 2, 2, "leaves 0 channels at flow 8"),
        (8, 6, 4, 1, "leaves 7 channels at flow 4"),
    ],
)
def test_configs_nvidia_cannot_run_are_refused_at_construction(
    n_group, n_flows, n_early_every, n_early_size, problem
):
    with pytest.raises(CheckpointError, match=problem):
        WaveGlow(80, n_flows, n_group, n_early_every, n_early_size, _SMALL_WN)


@pytest.mark.parametrize(
    ("n_group", "n_flows", "n_early_every", "n_early_size", "audio_channels_last_flow"),
    [
        (8, 12, 4, 2, 4),  # the torch.hub config
        (4, 4, 4, 1, 4),  # an odd early size is harmless when no early output happens
        (16, 6, 2, 4, 8),
        (4, 3, 2, 2, 2),
    ],
)
def test_valid_early_output_schedules_build(
    n_group, n_flows, n_early_every, n_early_size, audio_channels_last_flow
):
    model = WaveGlow(8, n_flows, n_group, n_early_every, n_early_size, _SMALL_WN)
    assert model.convinv[-1].conv.weight.shape[0] == audio_channels_last_flow


def test_untrained_flows_start_as_identity_couplings():
    torch.manual_seed(0)
    model = WaveGlow(
        **{
            **DEFAULT_CONFIG,
            "n_flows": 2,
            "WN_config": dict(n_layers=2, kernel_size=3, n_channels=8),
        }
    )
    for wn in model.WN:
        assert not wn.end.weight.any() and not wn.end.bias.any()
    for inv in model.convinv:
        weight = inv.conv.weight.squeeze(-1).double()
        torch.testing.assert_close(
            weight @ weight.T, torch.eye(8, dtype=torch.float64), atol=1e-6, rtol=0
        )
        assert torch.det(weight) > 0


# --- inference parity ------------------------------------------------------------------------


@pytest.mark.parametrize("remove_weightnorm", [False, True])
def test_infer_sigma0_matches_reference(infer_case, remove_weightnorm):
    model = _load_waveglow(remove_weightnorm)
    key = "audio_after_remove_weightnorm" if remove_weightnorm else "audio_with_weightnorm"
    audio = model.infer(infer_case["mel"], sigma=infer_case["sigma"])
    assert audio.shape == (2, 20 * 256)
    _close(audio, infer_case[key])


@pytest.mark.parametrize("remove_weightnorm", [False, True])
def test_infer_seeded_sigma_matches_reference(infer_case, remove_weightnorm):
    model = _load_waveglow(remove_weightnorm)
    seeded = infer_case["seeded"]
    key = "audio_after_remove_weightnorm" if remove_weightnorm else "audio_with_weightnorm"
    torch.manual_seed(seeded["torch_manual_seed"])
    audio = model.infer(infer_case["mel"], sigma=seeded["sigma"])
    _close(audio, seeded[key])
    # the noise is drawn as randn(B, 6, L) then randn(B, 2, L), nothing else
    torch.manual_seed(seeded["torch_manual_seed"])
    torch.randn(2, 6, 640)
    torch.randn(2, 2, 640)
    expected_state = torch.get_rng_state()
    torch.manual_seed(seeded["torch_manual_seed"])
    model.infer(infer_case["mel"], sigma=0.0)
    assert torch.equal(torch.get_rng_state(), expected_state)


def test_remove_weightnorm_keys_and_bitwise_identity(infer_case):
    model = _load_waveglow()
    before = model.infer(infer_case["mel"], sigma=0.0)
    assert model.remove_weightnorm() is model
    assert list(model.state_dict()) == infer_case["remove_weightnorm_state_dict_keys"]
    assert torch.equal(model.infer(infer_case["mel"], sigma=0.0), before)
    model.remove_weightnorm()  # a second call changes nothing
    assert list(model.state_dict()) == infer_case["remove_weightnorm_state_dict_keys"]


def test_infer_rejects_wrong_mel_channels(infer_case):
    model = _load_waveglow()
    with pytest.raises(SynthesisError):
        model.infer(torch.zeros(1, 80, 5))
    with pytest.raises(SynthesisError):
        model.infer(torch.zeros(8, 5))


def test_infer_batch_items_are_independent(infer_case):
    model = _load_waveglow(True)
    both = model.infer(infer_case["mel"], sigma=0.0)
    _close(model.infer(infer_case["mel"][1:], sigma=0.0), both[1:])


# --- training direction ----------------------------------------------------------------------


def test_forward_matches_reference():
    case = _load("waveglow_forward.pt")
    model = _load_waveglow()
    with torch.no_grad():
        z, log_s_list, log_det_list = model(case["mel"], case["audio"])
    _close(z, case["z"])
    assert len(log_s_list) == len(case["log_s_list"]) == 4
    for got, expected in zip(log_s_list, case["log_s_list"], strict=True):
        _close(got, expected)
    for got, expected in zip(log_det_list, case["log_det_W_list"], strict=True):
        assert got.shape == () and got.dtype == torch.float32
        _close(got, expected)


def test_forward_backpropagates_and_inverts_infer():
    case = _load("waveglow_forward.pt")
    model = _load_waveglow()
    z, log_s_list, log_det_list = model(case["mel"], case["audio"])
    _close(z.detach(), case["z"])  # grad mode takes the out-of-place path: same numbers
    loss = z.pow(2).sum() / 2 - sum(s.sum() for s in log_s_list) - sum(log_det_list)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # forward then infer with the latent as noise (sigma 1) gives the audio back
    with torch.no_grad():
        z, _, _ = model(case["mel"], case["audio"])
    inverse = _infer_from_latent(model, case["mel"], z)
    torch.testing.assert_close(inverse, case["audio"], rtol=1e-4, atol=1e-4)


def test_alternating_halves_forward_inverts_infer():
    """glow_old's coupling order: forward and infer stay each other's inverse."""
    case = _load("waveglow_forward.pt")
    model = _load_waveglow()
    with torch.no_grad():
        z_plain, _, _ = model(case["mel"], case["audio"])
        model.alternate_halves = True
        z, _, _ = model(case["mel"], case["audio"])
    assert (z - z_plain).abs().max() > 1e-2  # the order changes the latent
    inverse = _infer_from_latent(model, case["mel"], z)
    torch.testing.assert_close(inverse, case["audio"], rtol=1e-4, atol=1e-4)


def _infer_from_latent(model: WaveGlow, mel: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Run infer with sigma 1 and the random draws replaced by the parts of z."""
    early = model.n_early_size
    parts = [z[:, model.n_group - model.n_remaining_channels :]]  # drawn first
    n_early_flows = (model.n_flows - 1) // model.n_early_every
    for j in range(n_early_flows):  # later draws fill the front, last flow's first
        start = (n_early_flows - 1 - j) * early
        parts.append(z[:, start : start + early])
    draws = iter(parts)
    original = torch.randn

    def fake_randn(*shape, **kwargs):
        part = next(draws)
        assert tuple(part.shape) == tuple(shape)
        return part.clone()

    torch.randn = fake_randn
    try:
        return model.infer(mel, sigma=1.0)
    finally:
        torch.randn = original


# --- the invertible convolution's cached inverse ---------------------------------------------


def test_inverse_is_float32_then_cast_and_refreshed_on_change():
    torch.manual_seed(3)
    conv = Invertible1x1Conv(6)
    weight = conv.conv.weight.detach().squeeze(-1)
    first = conv.inverse_weight()
    torch.testing.assert_close(first[:, :, 0] @ weight, torch.eye(6), rtol=0, atol=1e-5)
    assert conv.inverse_weight() is first  # cached
    with torch.no_grad():
        conv.conv.weight.mul_(2.0)  # in-place change
    torch.testing.assert_close(conv.inverse_weight(), first / 2)
    conv.load_state_dict({"conv.weight": torch.eye(6)[:, :, None] * 4})
    torch.testing.assert_close(conv.inverse_weight()[:, :, 0], torch.eye(6) / 4)
    conv.to(torch.bfloat16)
    inverse = conv.inverse_weight()
    assert inverse.dtype == torch.bfloat16
    expected = torch.inverse(conv.conv.weight.squeeze(-1).float()).to(torch.bfloat16)
    assert torch.equal(inverse[:, :, 0], expected)


def test_dtype_round_trip_does_not_leave_a_stale_inverse(infer_case):
    model = _load_waveglow(True)
    reference = model.infer(infer_case["mel"], sigma=0.0)
    model.to(torch.bfloat16).infer(infer_case["mel"], sigma=0.0)
    model.to(torch.float32)
    # weights went through bf16, so the result must be that of a fresh model with those weights
    fresh = WaveGlow(**model.config).remove_weightnorm()
    fresh.load_state_dict(model.state_dict())
    expected = fresh.infer(infer_case["mel"], sigma=0.0)
    assert torch.equal(model.infer(infer_case["mel"], sigma=0.0), expected)
    assert not torch.equal(expected, reference)
    # new weights loaded in place are picked up too
    model.load_state_dict(_load_waveglow(True).state_dict())
    assert torch.equal(model.infer(infer_case["mel"], sigma=0.0), reference)


# --- reduced precision -----------------------------------------------------------------------


def test_bfloat16_cpu_is_close_to_float32(infer_case):
    model = _load_waveglow(True)
    reference = model.infer(infer_case["mel"], sigma=0.0)
    low = copy.deepcopy(model).to(torch.bfloat16)
    audio = low.infer(infer_case["mel"], sigma=0.0)  # float32 mel is cast to the model's dtype
    assert audio.dtype == torch.bfloat16
    assert _snr_db(reference, audio) > 35  # 41 dB measured
    # seeded noise: drawn in float32, then cast (same draws as float32)
    torch.manual_seed(7)
    noisy = low.infer(infer_case["mel"].bfloat16(), sigma=0.6)
    torch.manual_seed(7)
    assert _snr_db(model.infer(infer_case["mel"], sigma=0.6), noisy) > 35


def _random_full_size(n_channels: int, seed: int = 0) -> WaveGlow:
    torch.manual_seed(seed)
    config = {
        **DEFAULT_CONFIG,
        "WN_config": {**DEFAULT_CONFIG["WN_config"], "n_channels": n_channels},
    }
    model = WaveGlow(**config).remove_weightnorm().eval()
    with torch.no_grad():  # non-zero couplings, as after training
        for wn in model.WN:
            wn.end.weight.normal_(0.0, 0.02)
            wn.end.bias.normal_(0.0, 0.02)
    return model


@pytest.mark.slow
def test_bfloat16_full_size_snr():
    """bf16 vs fp32 at sigma 0 on a random full-size model: at least 30 dB (38 dB measured)."""
    model = _random_full_size(512)
    mel = torch.randn(1, 80, 20) * 1.5 - 4
    reference = model.infer(mel, sigma=0.0)
    audio = model.to(torch.bfloat16).infer(mel, sigma=0.0)
    assert _snr_db(reference, audio) >= 30


@pytest.fixture
def no_tf32():
    """Full float32 convolutions and matmuls on CUDA (TF32 would miss the 1e-4 tolerance)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.cuda
def test_float16_cuda_matches_float32(infer_case, no_tf32):
    model = _load_waveglow(True)
    mel = infer_case["mel"]
    reference = model.infer(mel, sigma=0.0)
    half = copy.deepcopy(model).to(device="cuda", dtype=torch.float16)
    audio = half.infer(mel.to("cuda", torch.float16), sigma=0.0)
    assert audio.dtype == torch.float16 and audio.device.type == "cuda"
    assert _snr_db(reference, audio.float().cpu()) > 25
    fp32 = copy.deepcopy(model).to("cuda")
    _close(fp32.infer(mel.to("cuda"), sigma=0.0).cpu(), infer_case["audio_after_remove_weightnorm"])
    denoiser = Denoiser(half)
    out = denoiser(audio, strength=0.01)
    assert out.dtype == torch.float32 and out.shape == audio.shape
    assert torch.isfinite(out).all()


@pytest.mark.cuda
def test_denoiser_cuda_float32_matches_reference(denoiser_case, no_tf32):
    model = _load_waveglow(True).to("cuda")
    denoiser = Denoiser(model)
    _close(denoiser.bias_spec.cpu(), denoiser_case["bias_spec"])
    out = denoiser(denoiser_case["audio_in"].to("cuda"), strength=denoiser_case["strength"])
    _close(out.cpu(), denoiser_case["audio_out"][:, 0])


# --- denoiser --------------------------------------------------------------------------------


def test_denoiser_bias_and_outputs_match_reference(denoiser_case, infer_case):
    model = _load_waveglow(True)
    _close(model.infer(torch.zeros(1, 8, 88), sigma=0.0), denoiser_case["bias_audio"])
    denoiser = Denoiser(model)
    assert denoiser.bias_spec.shape == (1, 513, 1)
    _close(denoiser.bias_spec, denoiser_case["bias_spec"])
    assert torch.equal(denoiser_case["audio_in"], infer_case["audio_after_remove_weightnorm"])
    strength = denoiser_case["strength"]
    for source, target in (("audio_in", "audio_out"), ("audio_in_seeded", "audio_out_seeded")):
        out = denoiser(denoiser_case[source], strength=strength)
        assert out.shape == denoiser_case[source].shape  # NVIDIA's has [B, 1, T]
        _close(out, denoiser_case[target][:, 0])


def test_denoiser_construction_draws_like_infer():
    model = _load_waveglow(True)
    torch.manual_seed(11)
    torch.randn(1, 6, 88 * 32)
    torch.randn(1, 2, 88 * 32)
    expected = torch.get_rng_state()
    torch.manual_seed(11)
    Denoiser(model)
    assert torch.equal(torch.get_rng_state(), expected)
    with pytest.raises(TTSError):
        Denoiser(model, mode="uniform")
    torch.manual_seed(11)
    Denoiser(model, mode="normal")  # the random mel is drawn too
    assert not torch.equal(torch.get_rng_state(), expected)


def test_denoiser_lengths_and_dtypes(denoiser_case):
    denoiser = Denoiser(_load_waveglow(True))
    audio = denoiser_case["audio_in"]
    reference = denoiser(audio)
    for dtype in (torch.bfloat16, torch.float16):
        converted = audio.to(dtype)
        out = denoiser(converted)
        assert out.dtype == torch.float32
        assert torch.equal(out, denoiser(converted.float()))
    # lengths that are not whole hops, or too short for the STFT, keep their length
    for length in (0, 1, 100, 512, 513, 700, 5000):
        out = denoiser(audio[:, :length])
        assert out.shape == (2, length)
        assert torch.isfinite(out).all()
    # a whole-hop prefix of at least 513 samples is processed like NVIDIA's (itself cut short)
    prefix = denoiser(audio[:, :4096])
    assert prefix.shape == (2, 4096)
    # strength 0 is an STFT round trip
    _close(denoiser(audio, strength=0.0), audio)
    assert (reference - audio).abs().max() > 1e-4
    with pytest.raises(SynthesisError):
        denoiser(audio[0])


# --- channels-last rows and inference mode ----------------------------------------------------


def _plain_wn(wn, audio: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """WN computed with plain [B, C, L] conv1d layers, as NVIDIA's code does."""
    c = wn.n_channels
    x = wn.start(audio)
    output = 0
    for i in range(wn.n_layers):
        t = wn.in_layers[i](x) + wn.cond_layers[i](cond)
        res_skip = wn.res_skip_layers[i](torch.tanh(t[:, :c]) * torch.sigmoid(t[:, c:]))
        if i < wn.n_layers - 1:
            x = x + res_skip[:, :c]
            output = output + res_skip[:, c:]
        else:
            output = output + res_skip
    return wn.end(output)


@pytest.mark.parametrize("grad", [False, True])
def test_channels_last_wn_matches_plain_convolutions(grad):
    model = _load_waveglow()
    wn = model.WN[0]
    with torch.no_grad():
        wn.end.weight.normal_(0.0, 0.1)
    torch.manual_seed(5)
    audio = torch.randn(2, wn.start.in_channels, 37)
    cond = torch.randn(2, wn.cond_layers[0].in_channels, 37)
    with torch.set_grad_enabled(grad):
        out = wn(audio, cond)
        expected = _plain_wn(wn, audio, cond)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(wn(audio, as_rows(cond)), out.detach(), rtol=0, atol=0)


def test_loaded_and_run_inside_inference_mode(infer_case):
    from ttscli.checkpoints import load_waveglow

    reference = _load_waveglow(True).infer(infer_case["mel"], sigma=0.0)
    with torch.inference_mode():
        model = load_waveglow(DATA / "waveglow_dle_checkpoint.pt")
        _close(model.infer(infer_case["mel"], sigma=0.0), reference)
    _close(model.infer(infer_case["mel"], sigma=0.0), reference)
