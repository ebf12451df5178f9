"""Tacotron2 parity with NVIDIA's reference outputs (fixtures), plus batching, r > 1 and dtypes."""

from __future__ import annotations

import json
import pathlib

import pytest
import torch

from ttscli.errors import CheckpointError, TextError
from ttscli.tacotron2 import (
    DEFAULT_CONFIG,
    Tacotron2,
    config_from_state_dict,
    gate_targets,
    inference_for,
)

DATA = pathlib.Path(__file__).parent / "data"


def load(name: str):
    return torch.load(DATA / name, map_location="cpu", weights_only=True)


def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


def load_dle(name: str = "tacotron2_dle_checkpoint.pt") -> Tacotron2:
    ckpt = load(name)
    sd = ckpt["state_dict"]
    if any("module." in k for k in sd):
        sd = {k.replace("module.1.", "").replace("module.", ""): v for k, v in sd.items()}
    model = Tacotron2(**ckpt["config"])
    model.load_state_dict(sd, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def dle() -> Tacotron2:
    return load_dle()


@pytest.fixture(scope="module")
def infer_cases() -> dict:
    return load("tacotron2_infer.pt")["cases"]


def configure(model: Tacotron2, case: dict) -> None:
    model.gate_threshold = case["gate_threshold"]
    model.max_decoder_steps = case["max_decoder_steps"]
    model.early_stopping = case["early_stopping"]
    model.prenet_dropout = 0.5 if case["prenet_dropout"] else 0.0


def small_config(**overrides) -> dict:
    cfg = dict(
        n_symbols=148,
        symbols_embedding_dim=24,
        encoder_embedding_dim=24,
        attention_rnn_dim=32,
        attention_dim=16,
        attention_location_n_filters=4,
        decoder_rnn_dim=32,
        prenet_dim=16,
        postnet_embedding_dim=16,
        max_decoder_steps=30,
    )
    cfg.update(overrides)
    return cfg


def random_model(seed: int = 0, **overrides) -> Tacotron2:
    torch.manual_seed(seed)
    model = Tacotron2(**small_config(**overrides))
    with torch.no_grad():  # random BatchNorm statistics, so the eval path depends on them
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
        model.decoder.gate_layer.linear_layer.bias.fill_(-1.0)
    return model.eval()


def batch_of(lengths: list[int], seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(1, 148, (n,), generator=gen)
    return ids, torch.tensor(lengths)


# -- construction and keys ----------------------------------------------------------------------
def test_full_size_state_dict_matches_manifest() -> None:
    manifest = json.loads((DATA / "full_size_manifest.json").read_text())["tacotron2_dle"]
    with torch.device("meta"):
        model = Tacotron2(**manifest["config"])
    sd = model.state_dict()
    expected = [(e["key"], e["shape"], e["dtype"]) for e in manifest["state_dict"]]
    actual = [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in sd.items()]
    assert actual == expected
    assert sum(p.numel() for p in model.parameters()) == manifest["n_parameters"]
    assert sum(b.numel() for b in model.buffers()) == manifest["n_buffer_elements"]
    assert model.config == manifest["config"]


def test_config_defaults_unknown_keys_and_copy() -> None:
    with torch.device("meta"):
        model = Tacotron2(prenet_dim=128)
    assert list(model.config) == list(DEFAULT_CONFIG)
    assert model.config["prenet_dim"] == 128 and model.config["n_mel_channels"] == 80
    model.config["prenet_dim"] = 1  # a copy: the model's own config is unchanged
    assert model.config["prenet_dim"] == 128
    assert model.early_stopping and model.prenet_dropout == 0.5
    with pytest.raises(CheckpointError, match="fp16_run"):
        Tacotron2(fp16_run=False)
    with pytest.raises(CheckpointError):
        Tacotron2(encoder_kernel_size=4)


def test_no_early_stopping_config_flag() -> None:
    with torch.device("meta"):
        assert not Tacotron2(decoder_no_early_stopping=True).early_stopping


# -- DLE parity ---------------------------------------------------------------------------------
def test_forward_matches_reference(dle: Tacotron2) -> None:
    fix = load("tacotron2_forward.pt")
    assert dle.mask_padding is fix["mask_padding"] is True
    dle.prenet_dropout = 0.0
    inputs = (
        fix["text_padded"],
        fix["input_lengths"],
        fix["mel_padded"],
        fix["max_len"],
        fix["output_lengths"],
    )
    with torch.no_grad():
        mel, mel_post, gate, align = dle(inputs)
    names = ("mel_outputs", "mel_outputs_postnet", "gate_outputs", "alignments")
    for actual, name in zip((mel, mel_post, gate, align), names, strict=True):
        assert actual.shape == fix[name].shape, name
        close(actual, fix[name])


@pytest.mark.parametrize("name", ["fixed_steps", "early_stop", "seeded_prenet_dropout"])
def test_infer_matches_reference(dle: Tacotron2, infer_cases: dict, name: str) -> None:
    case = infer_cases[name]
    configure(dle, case)
    if "torch_manual_seed" in case:
        torch.manual_seed(case["torch_manual_seed"])
    mel, mel_lengths, align = dle.infer(case["text_padded"], case["input_lengths"])
    assert mel_lengths.dtype == torch.int32
    assert mel_lengths.tolist() == case["mel_lengths"].tolist()
    assert mel.shape == case["mel_outputs_postnet"].shape
    assert mel.shape[2] == case["n_decoder_steps"]
    assert align.shape == case["alignments"].shape
    close(mel, case["mel_outputs_postnet"])
    close(align, case["alignments"])
    hit_max = case["stdout"] == "Warning! Reached max decoder steps"
    assert dle.last_hit_max_steps.tolist() == [hit_max] * 2


def test_decoder_debug_outputs(dle: Tacotron2, infer_cases: dict) -> None:
    case = infer_cases["fixed_steps"]
    with torch.no_grad():
        memory = dle.encoder(
            dle.embedding(case["text_padded"]).transpose(1, 2), case["input_lengths"]
        )
        mel, gates, _, _, _ = dle.decoder.infer(memory, case["input_lengths"], 0.0, 40, 1.0, True)
    close(mel, case["debug_decoder_mel_outputs"])
    close(gates, case["debug_gate_logits"])


def test_early_stop_first_firing_steps(dle: Tacotron2, infer_cases: dict) -> None:
    case = infer_cases["early_stop"]
    configure(dle, case)
    _, mel_lengths, _ = dle.infer(case["text_padded"], case["input_lengths"])
    assert [n + 1 for n in mel_lengths.tolist()] == case["first_step_gate_exceeds_threshold"]


def test_original_checkpoint_via_inferred_config() -> None:
    ckpt = load("tacotron2_orig_checkpoint.pt")
    expected = load("tacotron2_orig_expected.pt")
    config = config_from_state_dict(ckpt["state_dict"])
    for key, value in expected["hparams"].items():
        if key in config and key not in ("mask_padding", "max_decoder_steps"):
            assert config[key] == value, key
    model = Tacotron2(**config)
    model.load_state_dict(ckpt["state_dict"], strict=True)
    model.eval()
    model.prenet_dropout = 0.0
    model.gate_threshold = expected["gate_threshold"]
    model.max_decoder_steps = expected["max_decoder_steps"]
    ids = expected["text_ids"]
    lengths = torch.tensor([ids.shape[1]])
    mel, mel_lengths, align = model.infer(ids, lengths)
    # The original keeps every generated frame (7, including the one whose gate fired);
    # DLE's mel_lengths excludes that frame.
    assert mel.shape == expected["mel_outputs_postnet"].shape
    assert mel_lengths.tolist() == expected["dle_infer_same_weights"]["mel_lengths"].tolist()
    assert mel_lengths.tolist() == [mel.shape[2] - 1]
    assert not model.last_hit_max_steps.item()
    close(mel, expected["mel_outputs_postnet"])
    close(align, expected["alignments"])
    with torch.no_grad():
        memory = model.encoder(model.embedding(ids).transpose(1, 2), lengths)
        pre, gates, _, _, _ = model.decoder.infer(
            memory, lengths, 0.0, 30, expected["gate_threshold"], True
        )
    close(pre, expected["mel_outputs"])
    close(gates.unsqueeze(2), expected["gate_outputs"])


def test_config_from_dle_state_dict_with_prefix() -> None:
    ckpt = load("tacotron2_dle_checkpoint.pt")
    config = config_from_state_dict(ckpt["state_dict"])
    shape_keys = set(DEFAULT_CONFIG) - {
        "mask_padding",
        "max_decoder_steps",
        "gate_threshold",
        "p_attention_dropout",
        "p_decoder_dropout",
        "decoder_no_early_stopping",
    }
    assert {k: config[k] for k in shape_keys} == {k: ckpt["config"][k] for k in shape_keys}
    broken = dict(ckpt["state_dict"])
    del broken["module.decoder.decoder_rnn.weight_hh"]
    with pytest.raises(CheckpointError):
        config_from_state_dict(broken)
    with pytest.raises(CheckpointError):
        config_from_state_dict({"embedding.weight": torch.zeros(3, 4)})


# -- batching -----------------------------------------------------------------------------------
@pytest.mark.parametrize("perm", [[2, 0, 1], [1, 2, 0], [2, 1, 0]])
def test_unsorted_batch_keeps_input_order(dle: Tacotron2, perm: list[int]) -> None:
    fix = load("tacotron2_forward.pt")  # three texts of distinct lengths, longest first
    ids, lengths = fix["text_padded"], fix["input_lengths"]
    dle.prenet_dropout = 0.0
    dle.max_decoder_steps = 40
    dle.early_stopping = True
    dle.gate_threshold = 0.5
    ref_mel, ref_len, ref_align = dle.infer(ids, lengths)
    ref_hit = dle.last_hit_max_steps.clone()
    p = torch.tensor(perm)
    mel, mel_len, align = dle.infer(ids[p], lengths[p])
    assert torch.equal(mel, ref_mel[p])
    assert torch.equal(mel_len, ref_len[p])
    assert torch.equal(align, ref_align[p])
    assert torch.equal(dle.last_hit_max_steps, ref_hit[p])


def test_unsorted_batch_seeded_dropout_masks_follow_sorted_rows(dle: Tacotron2) -> None:
    fix = load("tacotron2_forward.pt")
    ids, lengths = fix["text_padded"], fix["input_lengths"]
    dle.prenet_dropout = 0.5
    dle.max_decoder_steps = 12
    dle.gate_threshold = 1.0
    torch.manual_seed(5)
    ref_mel, _, _ = dle.infer(ids, lengths)
    p = torch.tensor([1, 2, 0])
    torch.manual_seed(5)
    mel, _, _ = dle.infer(ids[p], lengths[p])
    assert torch.equal(mel, ref_mel[p])


def test_last_hit_max_steps_per_item(dle: Tacotron2, infer_cases: dict) -> None:
    case = infer_cases["early_stop"]  # gates first fire at steps [7, 6]
    configure(dle, case)
    dle.max_decoder_steps = 6
    mel, mel_lengths, _ = dle.infer(case["text_padded"], case["input_lengths"])
    assert mel.shape[2] == 6
    assert mel_lengths.tolist() == [6, 5]
    assert dle.last_hit_max_steps.tolist() == [True, False]
    p = torch.tensor([1, 0])
    _, mel_lengths, _ = dle.infer(case["text_padded"][p], case["input_lengths"][p])
    assert mel_lengths.tolist() == [5, 6]
    assert dle.last_hit_max_steps.tolist() == [False, True]


def test_early_stopping_off_runs_every_step(dle: Tacotron2, infer_cases: dict) -> None:
    case = infer_cases["early_stop"]
    configure(dle, case)
    dle.early_stopping = False
    mel, mel_lengths, align = dle.infer(case["text_padded"], case["input_lengths"])
    assert mel.shape[2] == case["max_decoder_steps"]
    assert mel_lengths.tolist() == case["mel_lengths"].tolist()
    assert dle.last_hit_max_steps.tolist() == [False, False]
    n = case["alignments"].shape[1]  # the first steps are the early-stopped run's steps
    close(align[:, :n], case["alignments"])


def test_invalid_lengths_raise_text_error(dle: Tacotron2) -> None:
    ids, _ = batch_of([5, 3])
    with pytest.raises(TextError):
        dle.infer(ids, torch.tensor([5, 0]))
    with pytest.raises(TextError):
        dle.infer(ids, torch.tensor([6, 3]))
    with pytest.raises(TextError):
        dle.infer(ids + 200, torch.tensor([5, 3]))


# -- several frames per step --------------------------------------------------------------------
def test_r3_shapes_lengths_and_forward_consistency() -> None:
    model = random_model(n_frames_per_step=3, max_decoder_steps=9)
    assert model.n_frames_per_step == 3
    ids, lengths = batch_of([7, 11, 4])
    model.prenet_dropout = 0.0
    mel, mel_lengths, align = model.infer(ids, lengths)
    n_steps = align.shape[1]
    assert mel.shape == (3, 80, 3 * n_steps)
    assert align.shape == (3, n_steps, 11)
    assert all(n % 3 == 0 and 0 <= n <= 3 * n_steps for n in mel_lengths.tolist())

    # Teacher-forcing the decoder's own free-running frames reproduces the free run.
    with torch.no_grad():
        memory = model.encoder(model.embedding(ids[[1, 0, 2]]).transpose(1, 2), lengths[[1, 0, 2]])
        pre, gates, pre_align, _, _ = model.decoder.infer(
            memory, lengths[[1, 0, 2]], 0.0, 5, 1.0, True
        )
        back = torch.tensor([1, 0, 2])
        pre, gates, pre_align = pre[back], gates[back], pre_align[back]
        targets = pre[:, :, :14]  # 14 frames: not a multiple of r
        out_lengths = torch.tensor([14, 10, 5])
        t_mel, t_post, t_gate, t_align = model((ids, lengths, targets, 11, out_lengths))
    assert t_mel.shape == (3, 80, 14) and t_post.shape == (3, 80, 14)
    assert t_gate.shape == (3, 5) and t_align.shape == (3, 5, 11)
    close(t_mel, pre[:, :, :14])
    close(t_gate, gates)
    close(t_align, pre_align)


def test_forward_mask_padding_per_frame_and_step() -> None:
    model = random_model(n_frames_per_step=3, mask_padding=True)
    ids, lengths = batch_of([6, 9])
    targets = torch.randn(2, 80, 8)
    out_lengths = torch.tensor([8, 4])
    with torch.no_grad():
        mel, post, gate, _ = model((ids, lengths, targets, 9, out_lengths))
    assert torch.all(mel[1, :, 4:] == 0) and torch.all(post[1, :, 4:] == 0)
    assert torch.all(mel[1, :, :4] != 0)
    assert gate[1].tolist()[2] == 1e3 and gate[1, :2].abs().max() < 1e3  # steps >= ceil(4/3)
    assert gate[0].abs().max() < 1e3


def test_gate_targets() -> None:
    lengths = torch.tensor([4, 3, 1])
    expected_r1 = [[0, 0, 0, 1, 1], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]
    assert gate_targets(lengths, 5).tolist() == expected_r1
    # r = 3: frame 3 (last of length 4) lies in step 1; frame 2 in step 0.
    assert gate_targets(lengths, 3, 3).tolist() == [[0, 1, 1], [1, 1, 1], [1, 1, 1]]


@pytest.mark.parametrize("mask_padding", [False, True])
def test_forward_trains_batch_of_one_and_r3(mask_padding: bool) -> None:
    model = random_model(n_frames_per_step=3, mask_padding=mask_padding).train()
    ids, lengths = batch_of([6])
    targets = torch.randn(1, 80, 7)
    mel, post, gate, _ = model((ids, lengths, targets, 6, torch.tensor([7])))
    loss = (mel - targets).pow(2).mean() + (post - targets).pow(2).mean()
    loss = loss + torch.nn.functional.binary_cross_entropy_with_logits(
        gate, gate_targets(torch.tensor([7]), gate.shape[1], 3)
    )
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


# -- dtypes -------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_cpu_infer(infer_cases: dict, dtype: torch.dtype) -> None:
    case = infer_cases["fixed_steps"]
    model = load_dle().to(dtype)
    configure(model, case)
    mel, mel_lengths, align = model.infer(case["text_padded"], case["input_lengths"])
    assert mel.dtype == dtype and align.dtype == dtype
    assert torch.isfinite(mel).all() and torch.isfinite(align).all()
    assert mel_lengths.tolist() == case["mel_lengths"].tolist()
    # Measured: max |diff| 0.024 (bf16) and 0.009 (fp16) for values up to 3.2.
    torch.testing.assert_close(mel.float(), case["mel_outputs_postnet"], atol=0.1, rtol=0.05)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_float32_parity_and_float16(infer_cases: dict) -> None:
    case = infer_cases["fixed_steps"]
    device = torch.device("cuda")
    model = load_dle().to(device)
    configure(model, case)
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        mel32, len32, align32 = model.infer(
            case["text_padded"].to(device), case["input_lengths"].to(device)
        )
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    assert len32.tolist() == case["mel_lengths"].tolist()
    close(mel32.cpu(), case["mel_outputs_postnet"])
    close(align32.cpu(), case["alignments"])
    model.half()
    mel16, len16, align16 = model.infer(case["text_padded"].to(device), case["input_lengths"])
    assert mel16.dtype == torch.float16 and torch.isfinite(mel16).all()
    assert len16.tolist() == case["mel_lengths"].tolist()
    assert model.last_hit_max_steps.device.type == "cuda"
    torch.testing.assert_close(
        mel16.float().cpu(), case["mel_outputs_postnet"], atol=0.1, rtol=0.05
    )


@pytest.mark.parametrize("every", [2, 5, 16])
def test_deferred_stop_check_gives_identical_outputs(
    dle: Tacotron2, infer_cases: dict, every: int
) -> None:
    case = infer_cases["early_stop"]  # all gates have fired after step 7
    configure(dle, case)
    ids, lengths = case["text_padded"][[1, 0]], case["input_lengths"][[1, 0]]
    results = []
    for max_steps in (40, 9, 7, 6, 3):
        dle.max_decoder_steps = max_steps
        for check in (1, every):
            dle.stop_check_every = check
            mel, mel_lengths, align = dle.infer(ids, lengths)
            results.append((mel, mel_lengths, align, dle.last_hit_max_steps))
    dle.stop_check_every = None
    assert results[0][0].shape[2] == 7
    for exact, deferred in zip(results[::2], results[1::2], strict=True):
        for a, b in zip(exact, deferred, strict=True):
            assert torch.equal(a, b)


def test_r3_stop_rule_from_gate_logits() -> None:
    """mel_lengths = r * (steps before the gate first fired), derived from a free run's gates."""
    r, max_steps = 3, 12
    model = random_model(n_frames_per_step=r, max_decoder_steps=max_steps)
    model.prenet_dropout = 0.0
    ids, lengths = batch_of([7, 11, 4])
    order = torch.tensor([1, 0, 2])  # longest first
    with torch.no_grad():
        memory = model.encoder(model.embedding(ids[order]).transpose(1, 2), lengths[order])
        _, gates, _, _, _ = model.decoder.infer(memory, lengths[order], 0.0, max_steps, 1.0, True)
    probs = torch.sigmoid(gates)  # [B (sorted), max_steps]
    values = probs.flatten().unique()
    for q in (0.3, 0.6, 0.8, 0.95):
        i = int(q * (values.numel() - 1))
        threshold = float(values[i] + values[i + 1]) / 2
        fired = probs > threshold
        first = [int(row.nonzero()[0, 0]) if row.any() else None for row in fired]
        all_fired = all(f is not None for f in first)
        n_steps = max(f + 1 for f in first) if all_fired else max_steps
        expected = torch.empty(3, dtype=torch.long)
        expected_hit = torch.empty(3, dtype=torch.bool)
        for sorted_row, item in enumerate(order.tolist()):
            f = first[sorted_row]
            expected[item] = r * (n_steps if f is None else f)
            expected_hit[item] = f is None
        model.gate_threshold = threshold
        mel, mel_lengths, align = model.infer(ids, lengths)
        assert mel.shape[2] == r * n_steps and align.shape[1] == n_steps
        assert mel_lengths.tolist() == expected.tolist(), q
        assert model.last_hit_max_steps.tolist() == expected_hit.tolist()


# -- fast inference loop ------------------------------------------------------------------------
def step_by_step(decoder, memory, lengths, prenet_dropout: float, n_steps: int):
    """The plain per-module decoding (prenet, then ``_step``) for ``n_steps`` forced steps."""
    state = decoder._initial_state(memory)
    mask = torch.arange(memory.shape[1])[None, :] >= lengths[:, None]
    processed = decoder.attention_layer.memory_layer(memory)
    frame = memory.new_zeros(memory.shape[0], decoder.n_mel_channels)
    frames, gates, weights = [], [], []
    for _ in range(n_steps):
        out, gate = decoder._step(
            decoder.prenet(frame, prenet_dropout), state, memory, processed, mask, False
        )
        frames.append(out)
        gates.append(gate.squeeze(1))
        weights.append(state[4])
        frame = out[:, -decoder.n_mel_channels :]
    batch = memory.shape[0]
    mel = torch.stack(frames, 1).reshape(batch, -1, decoder.n_mel_channels).transpose(1, 2)
    return mel, torch.stack(gates, 1), torch.stack(weights, 1)


def assert_infer_matches_step_by_step(seed: int, r: int, training: bool, lengths: list[int]):
    """Decoder.infer and ``step_by_step`` on one random model and batch, after the same seed:
    the same outputs (float rounding). Returns (decoder, memory, lengths, infer's mel)."""
    model = random_model(seed=seed, n_frames_per_step=r)
    decoder = model.decoder.train(training)
    ids, lengths_t = batch_of(lengths)
    with torch.no_grad():
        memory = model.encoder(model.embedding(ids).transpose(1, 2), lengths_t)
        torch.manual_seed(5)
        expected = step_by_step(decoder, memory, lengths_t, 0.5, 25)
        torch.manual_seed(5)
        mel, gates, align, _, _ = decoder.infer(memory, lengths_t, 0.5, 25, 0.5, False)
    decoder.eval()
    for actual, wanted in zip((mel, gates, align), expected, strict=True):
        assert actual.shape == wanted.shape
        close(actual, wanted)
    return decoder, memory, lengths_t, mel


@pytest.mark.parametrize("r", [1, 3])
@pytest.mark.parametrize("training", [False, True])
def test_fast_infer_loop_matches_step_by_step_modules(r: int, training: bool) -> None:
    """Same numbers (float rounding) and the same dropout draws in the same order: prenet
    dropout always, attention/decoder dropout in training mode."""
    decoder, memory, lengths, mel = assert_infer_matches_step_by_step(3, r, training, [11, 7, 4])
    # a different seed gives different masks, so the comparison above can fail
    with torch.no_grad():
        torch.manual_seed(6)
        other = decoder.infer(memory, lengths, 0.5, 25, 0.5, False)[0]
    assert not torch.allclose(other, mel, rtol=1e-4, atol=1e-5)


def test_fused_weight_cache_follows_weight_changes() -> None:
    """The cached fused LSTM weights never go stale: load_state_dict, dtype round trips."""
    ids, lengths = batch_of([9, 5])
    a, b = random_model(seed=0), random_model(seed=1)
    for model in (a, b):
        model.prenet_dropout = 0.0
        model.max_decoder_steps = 12
        model.early_stopping = False
    first = a.infer(ids, lengths)[0]
    assert inference_for(a.decoder).weights_kind != ""
    assert not any("fused" in key for key in a.state_dict())
    a.load_state_dict(b.state_dict())  # in place: the version counters move
    assert torch.equal(a.infer(ids, lengths)[0], b.infer(ids, lengths)[0])
    assert not torch.equal(first, b.infer(ids, lengths)[0])
    for dtype in (torch.bfloat16, torch.float32, torch.float64, torch.float32):
        a.to(dtype)  # new storage each time; a float32 one may reuse a freed address
        b.to(dtype)
        mel_a, mel_b = a.infer(ids, lengths)[0], b.infer(ids, lengths)[0]
        assert mel_a.dtype == dtype and torch.equal(mel_a, mel_b)
    with torch.no_grad():
        a.decoder.decoder_rnn.weight_hh.mul_(0.5)  # in place, no state dict involved
        b.decoder.decoder_rnn.weight_hh.mul_(0.5)
    assert torch.equal(a.infer(ids, lengths)[0], b.infer(ids, lengths)[0])


def test_onednn_and_dense_lstm_matmuls_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches use oneDNN's packed matmul where available; MKL's dense one gives the same
    numbers up to float rounding, and the thread setting is left as it was."""
    import ttscli.tacotron2.decoding as decoding

    model = random_model(seed=4)
    model.prenet_dropout = 0.0
    model.max_decoder_steps = 20
    model.early_stopping = False
    ids, lengths = batch_of([10, 6, 8])
    threads = torch.get_num_threads()
    mel, mel_lengths, align = model.infer(ids, lengths)
    assert torch.get_num_threads() == threads
    if decoding.onednn_linear_available():
        assert inference_for(model.decoder).weights_kind == "onednn"
    monkeypatch.setattr(decoding, "onednn_linear_available", lambda: False)
    dense_mel, dense_lengths, dense_align = model.infer(ids, lengths)
    assert inference_for(model.decoder).weights_kind == "dense"
    close(mel, dense_mel)
    close(align, dense_align)
    assert mel_lengths.tolist() == dense_lengths.tolist()


def test_copies_and_pickles_after_inference() -> None:
    """The weight cache (oneDNN tensors can be neither copied nor saved) starts empty in
    copies, which then infer like the original."""
    import copy
    import io

    model = random_model(seed=5)
    model.prenet_dropout = 0.0
    model.max_decoder_steps = 10
    model.early_stopping = False
    ids, lengths = batch_of([7, 5])
    mel = model.infer(ids, lengths)[0]
    twin = copy.deepcopy(model)
    assert inference_for(twin.decoder).weights_kind == ""
    assert torch.equal(twin.infer(ids, lengths)[0], mel)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert torch.equal(loaded.infer(ids, lengths)[0], mel)


# -- one item on two threads: LSTM matmuls overlapped with the rest of the step ------------------
def _decoder_threads() -> list:
    import threading

    return [t for t in threading.enumerate() if t.name == "ttscli-decoder-matmuls"]


@pytest.fixture
def overlapped(monkeypatch: pytest.MonkeyPatch) -> list:
    """Two intra-op threads; records each overlapped decode started."""
    import ttscli.tacotron2.decoding as decoding

    started = []

    class Recording(decoding.OverlappedMatmuls):
        def __init__(self, *args, **kwargs) -> None:
            started.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(decoding, "OverlappedMatmuls", Recording)
    monkeypatch.setattr(decoding, "OVERLAP_MIN_WEIGHT_BYTES", 0)  # the test models are tiny
    torch.set_num_threads(2)
    yield started
    torch.set_num_threads(1)


@pytest.mark.parametrize("r", [1, 3])
@pytest.mark.parametrize("training", [False, True])
def test_overlapped_matmuls_match_step_by_step_modules(
    overlapped: list, r: int, training: bool
) -> None:
    assert_infer_matches_step_by_step(7, r, training, [13])
    assert len(overlapped) == 1
    assert torch.get_num_threads() == 2
    assert not _decoder_threads()


@pytest.mark.parametrize("name", ["fixed_steps", "early_stop"])
def test_overlapped_matmuls_match_reference(
    overlapped: list, dle: Tacotron2, infer_cases: dict, name: str
) -> None:
    """The longest row of NVIDIA's batch (no padding) decoded alone on two threads gives that
    row (shorter rows see padding ids in their encoder convolutions, so they differ alone)."""
    case = infer_cases[name]
    configure(dle, case)
    row = int(torch.argmax(case["input_lengths"]))
    with torch.inference_mode():
        mel, mel_lengths, align = dle.infer(
            case["text_padded"][row : row + 1], case["input_lengths"][row : row + 1]
        )
    steps = mel.shape[2]
    assert len(overlapped) == 1 and not _decoder_threads()
    if case["early_stopping"]:
        assert mel_lengths.tolist() == case["mel_lengths"][row : row + 1].tolist()
    else:
        assert steps == case["n_decoder_steps"]
    close(mel[0], case["mel_outputs_postnet"][row, :, :steps])
    close(align[0], case["alignments"][row, :steps])


def test_overlapped_matmuls_end_their_thread_on_errors(
    overlapped: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error in either thread reaches the caller and leaves no thread behind."""
    import ttscli.tacotron2.decoding as decoding

    model = random_model(seed=2)
    model.early_stopping = False
    ids, lengths = batch_of([9])
    calls = []
    real_cell = decoding.lstm_cell

    def failing_cell(*args) -> None:
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt
        real_cell(*args)

    monkeypatch.setattr(decoding, "lstm_cell", failing_cell)
    with pytest.raises(KeyboardInterrupt):
        model.infer(ids, lengths)
    assert not _decoder_threads()
    monkeypatch.setattr(decoding, "lstm_cell", real_cell)

    def failing_part(self) -> None:
        raise RuntimeError("helper failed")

    monkeypatch.setattr(decoding.OverlappedMatmuls, "_attention_hidden_parts", failing_part)
    with pytest.raises(RuntimeError, match="helper failed"):
        model.infer(ids, lengths)
    assert not _decoder_threads()
    assert torch.get_num_threads() == 2


def test_overlap_only_for_one_large_item_on_two_threads(
    overlapped: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ttscli.tacotron2.decoding as decoding

    model = random_model(seed=2)
    model.early_stopping = False
    model.max_decoder_steps = 3
    one, three = batch_of([9]), batch_of([9, 8, 7])
    model.infer(*three)
    torch.set_num_threads(1)
    model.infer(*one)
    torch.set_num_threads(2)
    assert overlapped == []
    model.infer(*one)
    assert len(overlapped) == 1
    monkeypatch.setattr(decoding, "OVERLAP_MIN_WEIGHT_BYTES", 16 << 20)
    model.infer(*one)  # weights that fit the caches: no helper thread
    assert len(overlapped) == 1


# -- stop_at_text_end: the stop also follows the attention (the embedded voice's rule) ----------
@pytest.mark.parametrize("gate_bias, expect", [(10.0, "reached"), (-10.0, "dwell")])
def test_stop_at_text_end(gate_bias: float, expect: str) -> None:
    """Gate always firing: each item stops at the first step where its attention summed on its
    own last position reaches 0.5; gate never firing: where that sum reaches 12."""
    import ttscli.tacotron2.decoding as decoding

    model = random_model(seed=11)
    model.prenet_dropout = 0.0
    model.max_decoder_steps = 200
    with torch.no_grad():
        model.decoder.gate_layer.linear_layer.bias.fill_(gate_bias)
    ids, lengths = batch_of([9, 6])
    _, lengths_off, _ = model.infer(ids, lengths)
    if expect == "reached":
        assert lengths_off.tolist() == [0, 0]  # NVIDIA's rule: stop at the first gate
    else:
        assert model.last_hit_max_steps.tolist() == [True, True]
    model.stop_at_text_end = True
    mel, mel_lengths, align = model.infer(ids, lengths)
    assert model.last_hit_max_steps.tolist() == [False, False]
    limit = decoding._TEXT_END_REACHED if expect == "reached" else decoding._TEXT_END_MAX_DWELL
    wanted = []
    for row, n in enumerate(lengths.tolist()):
        on_last = align[row, :, n - 1].cumsum(0)
        wanted.append(int((on_last >= limit).nonzero()[0, 0]))
    assert mel_lengths.tolist() == wanted
    assert min(wanted) > 0
    assert mel.shape[2] == max(wanted) + 1  # the last item's stopping step is decoded
    # only the stop moved: the same number of steps decoded with NVIDIA's rule are identical
    model.stop_at_text_end = False
    model.early_stopping = False
    model.max_decoder_steps = mel.shape[2]
    close(mel, model.infer(ids, lengths)[0])


# -- the inference object and decoding options ----------------------------------------------------
def forced(model: Tacotron2, steps: int = 12) -> Tacotron2:
    model.prenet_dropout = 0.0
    model.max_decoder_steps = steps
    model.early_stopping = False
    return model


def test_model_loaded_inside_inference_mode_infers_inside_and_outside(infer_cases: dict) -> None:
    """Parameters made under torch.inference_mode are inference tensors (no version counter);
    decoding such a model failed with "Inference tensors do not track version counter"."""
    from ttscli.checkpoints import load_tacotron2

    case = infer_cases["fixed_steps"]
    with torch.inference_mode():
        model = load_tacotron2(DATA / "tacotron2_dle_checkpoint.pt")
        assert model.decoder.decoder_rnn.weight_hh.is_inference()
        configure(model, case)
        inside = model.infer(case["text_padded"], case["input_lengths"])
    outside = model.infer(case["text_padded"], case["input_lengths"])
    for mel, lengths, align in (inside, outside):
        assert lengths.tolist() == case["mel_lengths"].tolist()
        close(mel, case["mel_outputs_postnet"])
        close(align, case["alignments"])


@pytest.mark.parametrize("lengths", [[9], [9, 5]])  # one row: dense weights; several: oneDNN's
def test_inference_mode_model_follows_weight_changes(lengths: list[int]) -> None:
    """Inference tensors change in place only under inference mode, without a version
    counter to say so: load_state_dict and .to(dtype) there still reach the decoding."""
    ids, lengths_t = batch_of(lengths)
    a, b = forced(random_model(seed=0)), forced(random_model(seed=1))
    with torch.inference_mode():
        model = forced(random_model(seed=0))
        first = model.infer(ids, lengths_t)[0]
    assert torch.equal(first, a.infer(ids, lengths_t)[0])
    with torch.inference_mode():
        model.load_state_dict(b.state_dict())  # in place
        assert torch.equal(model.infer(ids, lengths_t)[0], b.infer(ids, lengths_t)[0])
        model.decoder.attention_rnn.weight_hh.mul_(0.5)  # in place, no state dict involved
        b.decoder.attention_rnn.weight_hh.mul_(0.5)
    assert torch.equal(model.infer(ids, lengths_t)[0], b.infer(ids, lengths_t)[0])
    assert not torch.equal(first, b.infer(ids, lengths_t)[0])
    with torch.inference_mode():
        model.to(torch.float64)
    mel = model.infer(ids, lengths_t)[0]
    assert mel.dtype == torch.float64 and torch.equal(
        mel, b.to(torch.float64).infer(ids, lengths_t)[0]
    )


def test_inference_object_is_built_once_reused_and_dropped_with_its_model() -> None:
    import gc
    import weakref

    model = forced(random_model(seed=3))
    ids, lengths = batch_of([8])
    model.infer(ids, lengths)
    inference = inference_for(model.decoder)
    fused = inference.lstm_weights("dense")
    model.infer(ids, lengths)
    assert inference_for(model.decoder) is inference
    assert all(x is y for x, y in zip(inference.lstm_weights("dense"), fused, strict=True))
    assert not any(isinstance(v, torch.Tensor) and v is fused[0] for v in vars(model).values())
    gone = weakref.ref(model)
    del model, inference, fused
    gc.collect()
    assert gone() is None  # the registry holds no model alive


def test_decode_options_travel_with_the_call_and_leave_the_model_alone() -> None:
    from ttscli.errors import SynthesisError
    from ttscli.tacotron2 import DecodeOptions, decode

    model = random_model(seed=2)
    model.prenet_dropout = 0.0
    ids, lengths = batch_of([7, 4])
    assert DecodeOptions.from_model(model) == DecodeOptions(
        prenet_dropout=0.0, max_decoder_steps=30
    )
    options = DecodeOptions(prenet_dropout=0.0, max_decoder_steps=5, early_stopping=False)
    mel, mel_lengths, align = model.infer(ids, lengths, options=options)
    assert mel.shape[2] == 5 and align.shape[1] == 5
    assert model.max_decoder_steps == 30 and model.early_stopping
    result = decode(model, ids, lengths, options)
    assert torch.equal(result.mel, mel) and torch.equal(result.mel_lengths, mel_lengths)
    assert torch.equal(result.hit_max_steps, model.last_hit_max_steps)
    with pytest.raises(SynthesisError):
        decode(model, ids, lengths, DecodeOptions(max_decoder_steps=0))
