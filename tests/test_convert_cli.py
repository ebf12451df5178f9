"""`ttscli convert` and `ttscli info`: safe format out, same numbers, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from ttscli.checkpoints import load_waveglow
from ttscli.cli import cli

DATA = Path(__file__).parent / "data"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_info_reports_format_and_safety():
    result = run("info", DATA / "waveglow_orig_checkpoint.pt", "--json")
    assert result.exit_code == 0, result.output
    details = json.loads(result.output)
    assert details["format"] == "waveglow-original-pickle"
    assert details["kind"] == "waveglow" and details["safe"] is False
    details = json.loads(run("info", DATA / "tacotron2_dle_checkpoint.pt", "--json").output)
    assert details["format"] == "dle" and details["kind"] == "tacotron2" and details["safe"]


@pytest.mark.parametrize("fp16", [False, True])
def test_convert_original_waveglow_pickle_gives_the_same_audio(tmp_path, fp16):
    src = DATA / "waveglow_orig_checkpoint.pt"
    dst = tmp_path / "wg.pt"
    result = run("convert", src, dst, *(["--fp16"] if fp16 else []))
    assert result.exit_code == 0, result.output
    torch.load(dst, weights_only=True)  # the converted file is safe to load
    details = json.loads(run("info", dst, "--json").output)
    assert details["format"] == "ttscli" and details["safe"] is True
    mel = torch.randn(1, 8, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = load_waveglow(src).infer(mel, sigma=0.0)
        actual = load_waveglow(dst).infer(mel, sigma=0.0)
    if fp16:
        assert float((actual - expected).abs().max()) < 0.02 * float(expected.abs().max())
        assert dst.stat().st_size < 0.6 * src.stat().st_size
    else:
        torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def test_convert_tacotron2_keeps_its_numbers(tmp_path):
    from ttscli.checkpoints import load_tacotron2

    src = DATA / "tacotron2_orig_checkpoint.pt"
    dst = tmp_path / "t2.pt"
    assert run("convert", src, dst).exit_code == 0
    a, b = load_tacotron2(src), load_tacotron2(dst)
    for m in (a, b):
        m.prenet_dropout, m.max_decoder_steps, m.early_stopping = 0.0, 5, False
    ids, lengths = torch.tensor([[40, 41, 42, 11, 43]]), torch.tensor([5])
    torch.testing.assert_close(a.infer(ids, lengths)[0], b.infer(ids, lengths)[0], rtol=0, atol=0)


def test_bad_files_get_one_line_errors(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    for args in (("info", junk), ("convert", junk, tmp_path / "out.pt")):
        result = run(*args)
        assert result.exit_code == 1 and result.output.startswith("Error: ")
        assert "Traceback" not in result.output
    assert not (tmp_path / "out.pt").exists()
    assert run("info", tmp_path / "missing.pt").exit_code == 2
