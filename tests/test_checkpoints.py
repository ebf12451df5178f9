"""Checkpoint loading and saving: every NVIDIA format against its fixture, safety, errors."""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import subprocess
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from ttscli.checkpoints import (
    fold_weight_norm,
    inspect_checkpoint,
    load_tacotron2,
    load_waveglow,
    save_tacotron2,
    save_waveglow,
    waveglow_config_from_state_dict,
    waveglow_state_dict_to_dle,
)
from ttscli.errors import CheckpointError
from ttscli.legacy_pickle import module_state_dict, read_pickled_checkpoint

DATA = Path(__file__).parent / "data"
TACOTRON2_DLE = DATA / "tacotron2_dle_checkpoint.pt"
TACOTRON2_ORIG = DATA / "tacotron2_orig_checkpoint.pt"
WAVEGLOW_DLE = DATA / "waveglow_dle_checkpoint.pt"
WAVEGLOW_ORIG = DATA / "waveglow_orig_checkpoint.pt"
# The legacy format's magic number, as the fixtures README gives it.
MAGIC = 0x1950A86A20F9469CFC6C


def load(name: str):
    return torch.load(DATA / name, map_location="cpu", weights_only=True)


def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


class StorageRef:
    """Stands for one float32 storage in a hand-built legacy file."""

    def __init__(self, key: str, numel: int) -> None:
        self.key, self.numel = key, numel


class LegacyPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, StorageRef):
            return ("storage", torch.FloatStorage, obj.key, "cuda:0", obj.numel, None)
        return None


def legacy_bytes(obj, storages: dict[str, bytes], counts: dict[str, int] | None = None) -> bytes:
    """A legacy-format file built by hand from the README's description (section 4.2)."""
    f = io.BytesIO()
    pickle.dump(MAGIC, f, protocol=2)
    pickle.dump(1001, f, protocol=2)
    info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"int": 4}}
    pickle.dump(info, f, protocol=2)
    LegacyPickler(f, protocol=2).dump(obj)
    pickle.dump(list(storages), f, protocol=2)
    for key, raw in storages.items():
        count = (counts or {}).get(key, len(raw) // 4)
        f.write(count.to_bytes(8, "little") + raw)
    return f.getvalue()


def tensor_of(ref: StorageRef, offset: int, size: tuple, stride: tuple) -> Payload:
    return Payload(torch._utils._rebuild_tensor_v2, ref, offset, size, stride, False, OrderedDict())


def pickled_globals(data: bytes) -> list[str]:
    """The globals a pickle names, read with pickletools (independent of the loader)."""
    names, strings = [], []
    for op, arg, _pos in pickletools.genops(data):
        if op.name == "GLOBAL":
            names.append(arg.replace(" ", "."))
        elif op.name == "STACK_GLOBAL":
            names.append(".".join(strings[-2:]))
        elif isinstance(arg, str):
            strings.append(arg)
    return names


# -- restricted reader ---------------------------------------------------------------------------
def test_reader_matches_torch_load_on_legacy_and_zip_files() -> None:
    for path in (TACOTRON2_ORIG, TACOTRON2_DLE, WAVEGLOW_DLE):
        mine = read_pickled_checkpoint(path)
        ref = torch.load(path, map_location="cpu", weights_only=True)
        assert list(mine) == list(ref)
        assert list(mine["state_dict"]) == list(ref["state_dict"])
        for key, tensor in ref["state_dict"].items():
            got = mine["state_dict"][key]
            assert got.dtype == tensor.dtype and got.stride() == tensor.stride(), key
            assert torch.equal(got, tensor), key


def test_reader_views_offsets_shared_storage_and_dtypes(tmp_path: Path) -> None:
    base = torch.arange(60, dtype=torch.float32).reshape(6, 10)
    obj = {
        "t": base,
        "transposed": base.t(),
        "slice": base[2:5, 3:7],
        "same_storage": base[1],
        "half": torch.linspace(-2, 2, 7).half(),
        "bf16": torch.linspace(-3, 3, 5).to(torch.bfloat16),
        "long": torch.tensor([1, -2, 3]),
        "bool": torch.tensor([True, False]),
        "empty": torch.zeros(0, 3),
        "scalar": torch.tensor(4.5, dtype=torch.float64),
    }
    for name, kwargs in (("legacy.pt", {"_use_new_zipfile_serialization": False}), ("zip.pt", {})):
        path = tmp_path / name
        torch.save(obj, path, **kwargs)
        got = read_pickled_checkpoint(path)
        for key, tensor in obj.items():
            assert got[key].dtype == tensor.dtype and got[key].shape == tensor.shape, key
            assert torch.equal(got[key], tensor), key
        assert got["same_storage"].untyped_storage().data_ptr() == (
            got["t"].untyped_storage().data_ptr()
        )


def test_reader_hand_built_legacy_file(tmp_path: Path) -> None:
    values = torch.arange(12, dtype=torch.float32)
    raw = values.numpy().tobytes()  # little-endian float32 on this machine
    ref = StorageRef("140000", 12)
    obj = {"m": tensor_of(ref, 2, (2, 3), (1, 2)), "v": tensor_of(ref, 0, (12,), (1,))}
    path = tmp_path / "hand.pt"
    path.write_bytes(legacy_bytes(obj, {"140000": raw}))
    got = read_pickled_checkpoint(path)
    assert torch.equal(got["v"], values)
    assert torch.equal(got["m"], torch.as_strided(values, (2, 3), (1, 2), 2))
    bad = {
        "past the end": legacy_bytes({"t": tensor_of(ref, 10, (3,), (1,))}, {"140000": raw}),
        "count mismatch": legacy_bytes(obj, {"140000": raw}, counts={"140000": 11}),
        "short data": legacy_bytes(obj, {"140000": raw[:20]}, counts={"140000": 12}),
        "huge storage": legacy_bytes(
            {"t": tensor_of(StorageRef("1", 10**12), 0, (1,), (1,))}, {"1": raw}
        ),
        "negative stride": legacy_bytes({"t": tensor_of(ref, 4, (2,), (-1,))}, {"140000": raw}),
    }
    for what, data in bad.items():
        path.write_bytes(data)
        with pytest.raises(CheckpointError):
            read_pickled_checkpoint(path)
        with pytest.raises(CheckpointError):
            inspect_checkpoint(path)
        assert what


def test_reader_flattens_the_waveglow_pickle() -> None:
    expected = load("waveglow_orig_expected.pt")
    cfg = expected["config"]
    obj = read_pickled_checkpoint(WAVEGLOW_ORIG)
    assert set(obj) == {"model", "iteration", "optimizer", "learning_rate"}
    sd, norms = module_state_dict(obj["model"])
    # Expected keys and shapes from the config, in module-registration order (README 4.2).
    n_mel, group, layers, c = (
        cfg["n_mel_channels"],
        cfg["n_group"],
        cfg["WN_config"]["n_layers"],
        cfg["WN_config"]["n_channels"],
    )
    k_size = cfg["WN_config"]["kernel_size"]
    wn = ("bias", "weight_g", "weight_v")
    want = [("upsample.weight", [n_mel, n_mel, 1024]), ("upsample.bias", [n_mel])]
    channels = group
    per_flow = []
    for k in range(cfg["n_flows"]):
        if k % cfg["n_early_every"] == 0 and k > 0:
            channels -= cfg["n_early_size"]
        per_flow.append(channels)
        half = channels // 2
        p = f"WN.{k}."
        for i in range(layers):
            want += [
                (f"{p}in_layers.{i}.{n}", s)
                for n, s in zip(wn, ([2 * c], [2 * c, 1, 1], [2 * c, c, k_size]), strict=True)
            ]
        for i in range(layers):
            out = 2 * c if i < layers - 1 else c
            want += [
                (f"{p}res_skip_layers.{i}.{n}", s)
                for n, s in zip(wn, ([out], [out, 1, 1], [out, c, 1]), strict=True)
            ]
        want += [
            (f"{p}start.{n}", s) for n, s in zip(wn, ([c], [c, 1, 1], [c, half, 1]), strict=True)
        ]
        want += [(f"{p}end.weight", [2 * half, c, 1]), (f"{p}end.bias", [2 * half])]
        cond = 2 * c * layers
        want += [(f"{p}cond_layer.{n}", s) for n, s in zip(wn, ([cond], [cond, 1, 1], [cond, n_mel * group, 1]), strict=True)]  # fmt: skip
    want += [(f"convinv.{k}.conv.weight", [ch, ch, 1]) for k, ch in enumerate(per_flow)]
    assert [(k, list(v.shape)) for k, v in sd.items()] == want
    assert all(v.dtype == torch.float32 for v in sd.values())
    assert len(norms) == cfg["n_flows"] * (2 * layers + 2) and set(norms.values()) == {0}


def test_reader_ignores_the_stale_weight_attribute() -> None:
    obj = read_pickled_checkpoint(WAVEGLOW_ORIG)
    start = obj["model"].pickled_state["_modules"]["WN"].pickled_state["_modules"]["0"]
    start = start.pickled_state["_modules"]["start"]
    state = start.pickled_state
    stale = state["weight"]
    g, v = state["_parameters"]["weight_g"], state["_parameters"]["weight_v"]
    fresh = g * v / v.norm(dim=(1, 2), keepdim=True)
    assert (stale - fresh).abs().max() > 1e-3  # the trap the fixture sets
    sd, _ = module_state_dict(obj["model"])
    assert "WN.0.start.weight" not in sd


# -- Tacotron2 --------------------------------------------------------------------------------
@pytest.mark.parametrize("case_name", ["fixed_steps", "early_stop"])
def test_dle_tacotron2_matches_reference(case_name: str) -> None:
    case = load("tacotron2_infer.pt")["cases"][case_name]
    model = load_tacotron2(TACOTRON2_DLE)
    assert not model.training
    model.prenet_dropout = 0.0
    model.gate_threshold = case["gate_threshold"]
    model.max_decoder_steps = case["max_decoder_steps"]
    model.early_stopping = case["early_stopping"]
    with torch.no_grad():
        mel, lengths, alignments = model.infer(case["text_padded"], case["input_lengths"])
    assert lengths.tolist() == case["mel_lengths"].tolist()
    assert mel.shape == case["mel_outputs_postnet"].shape
    close(mel, case["mel_outputs_postnet"])
    close(alignments, case["alignments"])


def orig_tacotron2_outputs(model) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    expected = load("tacotron2_orig_expected.pt")
    model.prenet_dropout = 0.0
    model.gate_threshold = expected["gate_threshold"]
    model.max_decoder_steps = expected["max_decoder_steps"]
    ids = expected["text_ids"]
    with torch.no_grad():
        return model.infer(ids, torch.tensor([ids.shape[1]]))


def test_original_tacotron2_matches_reference() -> None:
    expected = load("tacotron2_orig_expected.pt")
    model = load_tacotron2(TACOTRON2_ORIG)
    hparams = expected["hparams"]
    for key, value in model.config.items():
        if key in hparams and key not in ("mask_padding", "max_decoder_steps"):
            assert value == hparams[key], key
    mel, lengths, alignments = orig_tacotron2_outputs(model)
    # The original keeps the frame on which the gate fired; DLE's length excludes it.
    assert mel.shape == expected["mel_outputs_postnet"].shape
    assert lengths.tolist() == [expected["mel_outputs_postnet"].shape[2] - 1]
    close(mel, expected["mel_outputs_postnet"])
    close(alignments, expected["alignments"])


def test_bare_and_prefixed_state_dicts_load(tmp_path: Path) -> None:
    sd = load("tacotron2_orig_checkpoint.pt")["state_dict"]
    bare, prefixed = tmp_path / "bare.pt", tmp_path / "prefixed.pt"
    torch.save(sd, bare)
    torch.save({"state_dict": OrderedDict(("module." + k, v) for k, v in sd.items())}, prefixed)
    expected = load("tacotron2_orig_expected.pt")
    for path in (bare, prefixed):
        info = inspect_checkpoint(path)
        assert info["kind"] == "tacotron2" and info["safe"]
        mel, _, _ = orig_tacotron2_outputs(load_tacotron2(path))
        close(mel, expected["mel_outputs_postnet"])
    assert inspect_checkpoint(bare)["format"] == "state-dict"
    assert inspect_checkpoint(prefixed)["format"] == "tacotron2-original"


def test_tacotron2_round_trip_is_exact(tmp_path: Path) -> None:
    model = load_tacotron2(TACOTRON2_DLE)
    path = tmp_path / "sub" / "t2.pt"
    path.parent.mkdir()
    save_tacotron2(model, path, metadata={"source": "fixture", "n": [1, 2]})
    raw = torch.load(path, weights_only=True)  # the file is plain data
    assert raw["format"] == "ttscli" and raw["format_version"] == 1
    assert raw["kind"] == "tacotron2" and raw["config"] == model.config
    assert raw["metadata"]["source"] == "fixture"
    assert sorted(os.listdir(path.parent)) == ["t2.pt"]  # no temp file left behind
    again = load_tacotron2(path)
    assert again.config == model.config
    for (k1, v1), (k2, v2) in zip(
        model.state_dict().items(), again.state_dict().items(), strict=True
    ):
        assert k1 == k2 and torch.equal(v1, v2)
    case = load("tacotron2_infer.pt")["cases"]["early_stop"]
    outs = []
    for m in (model, again):
        m.prenet_dropout, m.gate_threshold = 0.0, case["gate_threshold"]
        with torch.no_grad():
            outs.append(m.infer(case["text_padded"], case["input_lengths"]))
    for a, b in zip(*outs, strict=True):
        assert torch.equal(a, b)
    info = inspect_checkpoint(path)
    assert info["format"] == "ttscli" and info["metadata"]["n"] == [1, 2]


def test_tacotron2_half_save_and_dtype_on_load(tmp_path: Path) -> None:
    model = load_tacotron2(TACOTRON2_DLE)
    path = tmp_path / "t2_half.pt"
    save_tacotron2(model, path, half=True)
    raw = torch.load(path, weights_only=True)["state_dict"]
    assert {v.dtype for v in raw.values()} == {torch.float16, torch.int64}
    assert inspect_checkpoint(path)["dtypes"] == ["float16", "int64"]
    assert path.stat().st_size < TACOTRON2_DLE.stat().st_size * 0.6
    loaded = load_tacotron2(path, dtype=torch.bfloat16)
    assert loaded.embedding.weight.dtype == torch.bfloat16
    assert load_tacotron2(path).embedding.weight.dtype == torch.float32


def test_inspect_counts_parameters_without_buffers() -> None:
    info = inspect_checkpoint(TACOTRON2_DLE)
    ckpt = load("tacotron2_dle_checkpoint.pt")
    from ttscli.tacotron2 import Tacotron2

    model = Tacotron2(**ckpt["config"])
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    assert info["format"] == "dle" and info["kind"] == "tacotron2"
    assert info["safe"] and not info["needs_conversion"]
    assert info["config"] == ckpt["config"]
    orig = inspect_checkpoint(TACOTRON2_ORIG)
    assert orig["format"] == "tacotron2-original" and orig["tensors"] == 84


# -- safety --------------------------------------------------------------------------------------
class Payload:
    """Pickles as a call of ``func(*args)``."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def payloads(target: Path) -> dict[str, bytes]:
    """Pickles whose loading would create ``target``."""
    open_call = (
        b"cbuiltins\nopen\n(V" + str(target).encode() + b"\nVw\ntR."
    )  # builtins.open(target, "w"), written by hand so the name is exactly builtins.open
    return {
        "os.system": pickle.dumps(Payload(os.system, f"touch {target}"), protocol=2),
        "builtins.open": open_call,
        "subprocess": pickle.dumps(Payload(subprocess.call, ["touch", str(target)]), protocol=4),
    }


@pytest.mark.parametrize("name", ["os.system", "builtins.open", "subprocess"])
def test_plain_malicious_pickle_is_refused(tmp_path: Path, name: str) -> None:
    control = tmp_path / "control"
    pickle.loads(payloads(control)[name])  # the payload really works when unpickled normally
    assert control.exists()
    target = tmp_path / "pwned"
    data = payloads(target)[name]
    path = tmp_path / "evil.pt"
    path.write_bytes(data)
    (global_name,) = pickled_globals(data)
    for call in (load_waveglow, load_tacotron2, inspect_checkpoint):
        with pytest.raises(CheckpointError, match=global_name.replace(".", r"\.")):
            call(path)
    assert not target.exists()


def test_legacy_format_malicious_pickle_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    model = {"weights": torch.zeros(2), "hook": Payload(os.system, f"touch {target}")}
    path = tmp_path / "evil_legacy.pt"
    torch.save({"model": model, "iteration": 1}, path, _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(path)
    with pytest.raises(CheckpointError, match=r"posix\.system"):
        load_waveglow(path)
    with pytest.raises(CheckpointError, match=r"posix\.system"):
        inspect_checkpoint(path)
    assert not target.exists()


def test_zip_format_malicious_pickle_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    path = tmp_path / "evil_zip.pt"
    torch.save(
        {"state_dict": {"x": torch.ones(1)}, "x": Payload(os.system, f"touch {target}")}, path
    )
    with pytest.raises(CheckpointError, match=r"posix\.system"):
        load_tacotron2(path)
    assert not target.exists()


def test_the_waveglow_pickle_names_only_known_globals() -> None:
    expected = load("waveglow_orig_expected.pt")["pickle_globals"]
    with open(WAVEGLOW_ORIG, "rb") as f:
        for _ in range(3):
            pickle.load(f)  # header pickles hold plain values
        start = f.tell()
        data = f.read()
    # Only the object pickle names globals; read up to its STOP.
    found = []
    for name in pickled_globals(data[: next(p for op, _a, p in pickletools.genops(data) if op.name == "STOP") + 1]):  # fmt: skip
        if name not in found:
            found.append(name)
    assert start > 0 and found == expected


# -- errors ----------------------------------------------------------------------------------------
def zip_without_entry(src: Path, dst: Path, suffix: str) -> str:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        dropped = [n for n in zin.namelist() if n.endswith(suffix)][0]
        for item in zin.infolist():
            if item.filename != dropped:
                zout.writestr(item, zin.read(item.filename))
    return dropped


def test_broken_files_raise_checkpoint_error(tmp_path: Path) -> None:
    cases: dict[str, Path] = {}
    cases["missing"] = tmp_path / "nope.pt"
    cases["directory"] = tmp_path
    (empty := tmp_path / "empty.pt").write_bytes(b"")
    cases["empty"] = empty
    (noise := tmp_path / "noise.pt").write_bytes(
        torch.randint(0, 256, (4096,)).byte().numpy().tobytes()
    )
    cases["random bytes"] = noise
    legacy = TACOTRON2_ORIG.read_bytes()
    for frac in (0.01, 0.5, 0.99):
        (p := tmp_path / f"legacy_{frac}.pt").write_bytes(legacy[: int(len(legacy) * frac)])
        cases[f"truncated legacy {frac}"] = p
    dle = TACOTRON2_DLE.read_bytes()
    for frac in (0.5, 0.999):
        (p := tmp_path / f"zip_{frac}.pt").write_bytes(dle[: int(len(dle) * frac)])
        cases[f"truncated zip {frac}"] = p
    missing_entry = tmp_path / "missing_entry.pt"
    dropped = zip_without_entry(TACOTRON2_DLE, missing_entry, "/data/0")
    cases["zip entry missing"] = missing_entry
    torch.save({"foo": 1, "bar": [1, 2]}, unknown := tmp_path / "unknown.pt")
    cases["unknown layout"] = unknown
    torch.save({"a": torch.zeros(2)}, unclear := tmp_path / "unclear.pt")
    cases["unclear state dict"] = unclear
    pickle.dump({"a": 1}, open(plain := tmp_path / "plain.pkl", "wb"))
    cases["plain pickle, no torch header"] = plain
    for what, path in cases.items():
        for call in (load_tacotron2, load_waveglow, inspect_checkpoint):
            with pytest.raises(CheckpointError) as info:
                call(path)
            assert str(info.value), what
    with pytest.raises(CheckpointError, match=dropped):
        load_tacotron2(missing_entry)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_tacotron2(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="directory"):
        load_tacotron2(tmp_path)
    with pytest.raises(CheckpointError, match="empty"):
        load_tacotron2(empty)
    with pytest.raises(CheckpointError, match="truncated"):
        load_tacotron2(tmp_path / "legacy_0.5.pt")
    partial = tmp_path / "partial.pt"  # Tacotron2-looking keys, most of the model missing
    torch.save(
        {"state_dict": {"embedding.weight": torch.zeros(3, 4), "decoder.x": torch.ones(1)}}, partial
    )
    with pytest.raises(CheckpointError, match=r"partial\.pt: not a Tacotron2 state dict: missing"):
        load_tacotron2(partial)
    (text := tmp_path / "notes.txt").write_text("[1, 2, 3]\n")
    with pytest.raises(CheckpointError, match="notes.txt is not a PyTorch checkpoint"):
        inspect_checkpoint(text)


def test_wrong_kind_is_refused() -> None:
    with pytest.raises(CheckpointError, match="WaveGlow checkpoint .*expected a Tacotron2"):
        load_tacotron2(WAVEGLOW_DLE)
    with pytest.raises(CheckpointError, match="WaveGlow checkpoint .*expected a Tacotron2"):
        load_tacotron2(WAVEGLOW_ORIG)
    with pytest.raises(CheckpointError, match="Tacotron2 checkpoint .*expected a WaveGlow"):
        load_waveglow(TACOTRON2_DLE)
    with pytest.raises(CheckpointError, match="Tacotron2 checkpoint .*expected a WaveGlow"):
        load_waveglow(TACOTRON2_ORIG)


def test_shape_mismatch_and_bad_config(tmp_path: Path) -> None:
    ckpt = load("tacotron2_dle_checkpoint.pt")
    ckpt["config"] = {**ckpt["config"], "prenet_dim": 48}
    torch.save(ckpt, bad := tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"shape mismatch: .*prenet"):
        load_tacotron2(bad)
    ckpt = load("tacotron2_dle_checkpoint.pt")
    del ckpt["state_dict"]["module.embedding.weight"]
    torch.save(ckpt, missing := tmp_path / "missing.pt")
    with pytest.raises(CheckpointError):
        load_tacotron2(missing)
    ckpt = load("tacotron2_dle_checkpoint.pt")
    ckpt["config"]["WN_config"] = {"n_layers": 2}
    torch.save(ckpt, mixed := tmp_path / "mixed.pt")
    with pytest.raises(CheckpointError, match="config describes a WaveGlow"):
        load_tacotron2(mixed)


def test_ttscli_format_version_and_save_errors(tmp_path: Path) -> None:
    model = load_tacotron2(TACOTRON2_DLE)
    path = tmp_path / "t2.pt"
    save_tacotron2(model, path)
    raw = torch.load(path, weights_only=True)
    raw["format_version"] = 2
    torch.save(raw, future := tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="version 2"):
        load_tacotron2(future)
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match="metadata"):
        save_tacotron2(model, path, metadata={"bad": object()})
    with pytest.raises(CheckpointError):
        save_tacotron2(model, tmp_path / "no_such_dir" / "x.pt")
    with pytest.raises(CheckpointError, match="directory"):
        save_tacotron2(model, tmp_path)
    with pytest.raises(CheckpointError):
        save_waveglow(model, tmp_path / "x.pt")  # not a WaveGlow
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["future.pt", "t2.pt"]


def test_device_and_dtype_arguments() -> None:
    model = load_tacotron2(TACOTRON2_DLE, device=torch.device("cpu"), dtype=torch.float64)
    assert model.embedding.weight.dtype == torch.float64
    with pytest.raises(CheckpointError):
        load_tacotron2(TACOTRON2_DLE, dtype=torch.int32)
    with pytest.raises(CheckpointError):
        load_tacotron2(TACOTRON2_DLE, device="no-such-device")
    if not torch.cuda.is_available():
        with pytest.raises(CheckpointError, match="cuda"):
            load_waveglow(WAVEGLOW_DLE, device="cuda")


# -- WaveGlow key mappings ---------------------------------------------------------------------
def dle_waveglow_state_dict() -> dict[str, torch.Tensor]:
    sd = load("waveglow_dle_checkpoint.pt")["state_dict"]
    return OrderedDict((k.removeprefix("module."), v) for k, v in sd.items())


def test_layout_c_split_inverts_concatenation() -> None:
    sd = dle_waveglow_state_dict()
    n_layers = 3
    fused = OrderedDict()
    for key, value in sd.items():  # DLE -> C: concatenate cond_layers.i in order of i (spec 3.9)
        if ".cond_layers." in key:
            block, rest = key.split(".cond_layers.")
            i, name = rest.split(".")
            if i == "0":
                parts = [sd[f"{block}.cond_layers.{j}.{name}"] for j in range(n_layers)]
                fused[f"{block}.cond_layer.{name}"] = torch.cat(parts, 0)
            continue
        fused[key] = value
    back, dims, layout = waveglow_state_dict_to_dle(fused)
    assert layout == "C"
    assert set(back) == set(sd)
    assert all(torch.equal(back[k], sd[k]) for k in sd)
    assert waveglow_config_from_state_dict(back) == load("waveglow_dle_checkpoint.pt")["config"]
    assert set(dims.values()) == {0} and len(dims) == 4 * n_layers


def test_layout_a_fuses_residual_and_skip_layers() -> None:
    sd = dle_waveglow_state_dict()
    c, n_layers = 32, 3
    old = OrderedDict()
    for key, value in sd.items():  # DLE -> A: split each res_skip layer into res and skip
        if ".res_skip_layers." not in key:
            old[key] = value
            continue
        block, rest = key.split(".res_skip_layers.")
        i, name = rest.split(".")
        if name != "bias":
            continue
        weight = torch._weight_norm(
            sd[f"{block}.res_skip_layers.{i}.weight_v"],
            sd[f"{block}.res_skip_layers.{i}.weight_g"],
            0,
        )
        if int(i) < n_layers - 1:
            old[f"{block}.res_layers.{i}.bias"] = value[:c]
            old[f"{block}.res_layers.{i}.weight"] = weight[:c]
            old[f"{block}.skip_layers.{i}.bias"] = value[c:]
            # keep the skip layer weight-normed, as the old pickles are
            old[f"{block}.skip_layers.{i}.weight_g"] = weight[c:].norm(dim=(1, 2), keepdim=True)
            old[f"{block}.skip_layers.{i}.weight_v"] = weight[c:]
        else:
            old[f"{block}.skip_layers.{i}.bias"] = value
            old[f"{block}.skip_layers.{i}.weight"] = weight
    back, _dims, layout = waveglow_state_dict_to_dle(old)
    assert layout == "A"
    want = fold_weight_norm(sd)
    got = fold_weight_norm(back)
    assert set(got) == set(want)
    for key in want:
        close(got[key], want[key])


def test_fold_weight_norm_matches_definition() -> None:
    sd = dle_waveglow_state_dict()
    folded = fold_weight_norm(sd)
    g, v = sd["WN.1.start.weight_g"], sd["WN.1.start.weight_v"]
    close(folded["WN.1.start.weight"], g * v / v.norm(dim=(1, 2), keepdim=True))
    assert not any(k.endswith(("weight_g", "weight_v")) for k in folded)
    assert list(folded).index("WN.1.start.weight") == list(folded).index("WN.1.start.bias") + 1


# -- WaveGlow ---------------------------------------------------------------------------------------
def test_dle_waveglow_matches_reference() -> None:
    fix = load("waveglow_infer.pt")
    model = load_waveglow(WAVEGLOW_DLE)
    assert not model.training
    assert not any(k.endswith(("weight_g", "weight_v")) for k in model.state_dict())
    assert list(model.state_dict()) == fix["remove_weightnorm_state_dict_keys"]
    close(model.infer(fix["mel"], sigma=fix["sigma"]), fix["audio_after_remove_weightnorm"])
    seeded = fix["seeded"]
    torch.manual_seed(seeded["torch_manual_seed"])
    close(model.infer(fix["mel"], sigma=seeded["sigma"]), seeded["audio_after_remove_weightnorm"])


def test_original_waveglow_pickle_matches_reference() -> None:
    expected = load("waveglow_orig_expected.pt")
    info = inspect_checkpoint(WAVEGLOW_ORIG)
    assert info["format"] == "waveglow-original-pickle" and info["layout"] == "C"
    assert not info["safe"] and info["needs_conversion"]
    assert info["config"] == expected["config"]
    model = load_waveglow(WAVEGLOW_ORIG)
    assert model.config == expected["config"]
    audio = model.infer(expected["mel"], sigma=expected["sigma"])
    close(audio, expected["audio_after_remove_weightnorm"])
    close(audio, expected["dle_infer_after_key_conversion"])


GLOW_OLD = DATA / "waveglow_glow_old_checkpoint.pt"  # tests/make_glow_old_fixture.py


def test_glow_old_pickle_matches_nvidias_glow_old_code(tmp_path: Path) -> None:
    """NVIDIA's first WaveGlow class transforms the first half of the channels on odd flows."""
    expected = load("waveglow_glow_old_expected.pt")
    info = inspect_checkpoint(GLOW_OLD)
    assert info["format"] == "waveglow-original-pickle" and info["layout"] == "B"
    assert info["config"]["alternate_halves"] is True
    model = load_waveglow(GLOW_OLD)
    close(model.infer(expected["mel"], sigma=0.0), expected["audio_sigma0"])
    # the fixture tells the coupling orders apart: read as glow.py/DLE it is another voice
    model.alternate_halves = False
    other = model.infer(expected["mel"], sigma=0.0)
    assert (other - expected["audio_sigma0"]).abs().max() > 0.1 * other.abs().max()
    # the order survives conversion to ttscli's format
    save_waveglow(load_waveglow(GLOW_OLD), path := tmp_path / "old.pt")
    assert inspect_checkpoint(path)["config"]["alternate_halves"] is True
    close(load_waveglow(path).infer(expected["mel"], sigma=0.0), expected["audio_sigma0"])


def test_glow_old_with_an_early_schedule_its_code_cannot_run_is_refused(tmp_path: Path) -> None:
    from ttscli.checkpoints import _check_glow_old_schedule

    for every, n_flows in ((4, 12), (4, 4), (8, 4), (3, 3)):  # same flows as "every 4"
        _check_glow_old_schedule({"n_early_every": every, "n_flows": n_flows}, tmp_path)
    for every, n_flows in ((2, 4), (8, 6), (3, 4)):
        with pytest.raises(CheckpointError, match="every 4 flows"):
            _check_glow_old_schedule({"n_early_every": every, "n_flows": n_flows}, tmp_path)


def test_waveglow_round_trip_is_exact(tmp_path: Path) -> None:
    fix = load("waveglow_infer.pt")
    for source in (WAVEGLOW_DLE, WAVEGLOW_ORIG):
        model = load_waveglow(source)
        path = tmp_path / f"wg_{source.stem}.pt"
        save_waveglow(model, path, metadata={"converted_from": source.name})
        raw = torch.load(path, weights_only=True)
        assert raw["kind"] == "waveglow" and raw["weight_norm_removed"] is True
        assert raw["config"] == model.config
        again = load_waveglow(path)
        info = inspect_checkpoint(path)
        assert info["format"] == "ttscli" and info["safe"] and not info["weight_norm"]
        mel = fix["mel"]  # both models take 8 mel channels
        assert torch.equal(again.infer(mel, sigma=0.0), model.infer(mel, sigma=0.0))


def test_saving_a_weight_normed_waveglow_folds_it(tmp_path: Path) -> None:
    from ttscli.waveglow import WaveGlow

    config = load("waveglow_dle_checkpoint.pt")["config"]
    model = WaveGlow(**config)
    model.load_state_dict(dle_waveglow_state_dict())  # weight norm still on
    save_waveglow(model, path := tmp_path / "wg.pt")
    assert any(k.endswith("weight_g") for k in model.state_dict())  # the model is unchanged
    saved = torch.load(path, weights_only=True)["state_dict"]
    assert not any(k.endswith(("weight_g", "weight_v")) for k in saved)
    fix = load("waveglow_infer.pt")
    with torch.no_grad():
        close(model.infer(fix["mel"], sigma=0.0), fix["audio_with_weightnorm"])
    close(load_waveglow(path).infer(fix["mel"], sigma=0.0), fix["audio_after_remove_weightnorm"])


def test_waveglow_half_file_and_bfloat16_inference(tmp_path: Path) -> None:
    fix = load("waveglow_infer.pt")
    reference = fix["audio_after_remove_weightnorm"]
    path = tmp_path / "wg_half.pt"
    save_waveglow(load_waveglow(WAVEGLOW_DLE), path, half=True)
    assert inspect_checkpoint(path)["dtypes"] == ["float16"]
    from_half = load_waveglow(path)  # fp16 weights, computed in float32
    assert from_half.upsample.weight.dtype == torch.float32
    scale = reference.abs().max()
    assert (from_half.infer(fix["mel"], sigma=0.0) - reference).abs().max() < 0.02 * scale
    bf16 = load_waveglow(WAVEGLOW_DLE, dtype=torch.bfloat16)
    assert bf16.upsample.weight.dtype == torch.bfloat16
    audio = bf16.infer(fix["mel"].to(torch.bfloat16), sigma=0.0)
    assert audio.dtype == torch.bfloat16 and torch.isfinite(audio).all()
    error = (audio.float() - reference).abs().max()
    assert error < 0.05 * scale, float(error / scale)  # measured 1.3%


def test_2019_dle_layout_legacy_file_and_bare_waveglow_state_dict(tmp_path: Path) -> None:
    ckpt = load("waveglow_dle_checkpoint.pt")
    old = {"epoch": 1, "config": ckpt["config"], "state_dict": ckpt["state_dict"]}
    torch.save(old, legacy := tmp_path / "wg_2019.pt", _use_new_zipfile_serialization=False)
    torch.save(dle_waveglow_state_dict(), bare := tmp_path / "wg_bare.pt")
    fix = load("waveglow_infer.pt")
    for path, fmt in ((legacy, "dle"), (bare, "state-dict")):
        info = inspect_checkpoint(path)
        assert info["format"] == fmt and info["safe"] and info["weight_norm"]
        assert info["config"] == ckpt["config"]  # the bare one's is inferred from shapes
        close(
            load_waveglow(path).infer(fix["mel"], sigma=0.0), fix["audio_after_remove_weightnorm"]
        )


def test_fold_weight_norm_of_half_tensors_uses_float32() -> None:
    sd = dle_waveglow_state_dict()
    half = {k: v.half() for k, v in sd.items()}
    folded = fold_weight_norm(half)["WN.0.in_layers.1.weight"]
    assert folded.dtype == torch.float32
    g, v = half["WN.0.in_layers.1.weight_g"].float(), half["WN.0.in_layers.1.weight_v"].float()
    assert torch.equal(folded, torch._weight_norm(v, g, 0))


@pytest.mark.cuda
def test_cuda_loading_from_cuda_tagged_files() -> None:
    fix = load("waveglow_infer.pt")
    reference = fix["audio_after_remove_weightnorm"]
    waveglow = load_waveglow(WAVEGLOW_DLE, device="cuda")
    assert waveglow.upsample.weight.device.type == "cuda"
    audio = waveglow.infer(fix["mel"].to("cuda"), sigma=0.0).cpu()
    torch.testing.assert_close(audio, reference, rtol=1e-3, atol=1e-4)
    half = load_waveglow(WAVEGLOW_DLE, device=torch.device("cuda"), dtype=torch.float16)
    audio = half.infer(fix["mel"].to("cuda", torch.float16), sigma=0.0).float().cpu()
    assert (audio - reference).abs().max() < 0.02 * reference.abs().max()
    case = load("tacotron2_infer.pt")["cases"]["fixed_steps"]
    model = load_tacotron2(TACOTRON2_DLE, device="cuda")
    model.prenet_dropout, model.gate_threshold = 0.0, case["gate_threshold"]
    with torch.no_grad():
        mel, lengths, _ = model.infer(case["text_padded"].cuda(), case["input_lengths"].cuda())
    assert lengths.cpu().tolist() == case["mel_lengths"].tolist()
    torch.testing.assert_close(mel.cpu(), case["mel_outputs_postnet"], rtol=1e-3, atol=1e-4)


def test_a_third_model_kind_plugs_into_reading_loading_saving_and_inspecting(tmp_path):
    """A new model (e.g. a vocoder) needs only a ModelKind: the rest of the package follows."""
    from ttscli import checkpoints
    from ttscli.checkpoints import KINDS, ModelKind, load_model, register, save_model

    class Toy(torch.nn.Module):
        def __init__(self, width: int = 3) -> None:
            super().__init__()
            self.config = {"width": width}
            self.toy_proj = torch.nn.Linear(width, width)

    def recognises(sd):
        return "toy_proj.weight" in sd

    def config_from_state_dict(sd, attributes=None):
        return {"width": sd["toy_proj.weight"].shape[1]}

    register(ModelKind("toy", "Toy", recognises, lambda: Toy, config_from_state_dict))
    try:
        model = Toy(5)
        bare = tmp_path / "bare.pt"
        torch.save(model.state_dict(), bare)
        info = checkpoints.inspect_checkpoint(bare)
        assert (info["format"], info["kind"], info["config"]) == ("state-dict", "toy", {"width": 5})
        loaded = load_model("toy", bare, dtype=torch.float64)
        assert torch.equal(loaded.toy_proj.weight, model.toy_proj.weight.double())
        saved = tmp_path / "toy.pt"
        save_model("toy", model, saved, half=True)
        assert checkpoints.inspect_checkpoint(saved)["format"] == "ttscli"
        assert load_model("toy", saved).toy_proj.weight.dtype == torch.float32
        with pytest.raises(CheckpointError, match="is a Toy checkpoint"):
            load_tacotron2(saved)
    finally:
        del KINDS["toy"]
