"""The embedded voice's training pieces: guided attention, collation, a learning step, export."""

from __future__ import annotations

import math
import random

import pytest
import torch

from ttscli.training.corpus import trim_silence
from ttscli.training.train import (
    collate,
    guided_attention_loss,
    guided_attention_weights,
    learning_rate,
    losses,
)


def test_guided_attention_weights_are_zero_on_the_diagonal_and_grow_off_it():
    w = guided_attention_weights(10, 20)
    assert w.shape == (10, 20)
    for s in range(10):
        assert float(w[s, 2 * s]) == pytest.approx(0.0, abs=1e-6)
    expected = 1 - math.exp(-((15 / 20 - 0 / 10) ** 2) / (2 * 0.2**2))
    assert float(w[0, 15]) == pytest.approx(expected, rel=1e-5)


def test_guided_attention_loss_prefers_diagonal_alignments():
    S, N = 12, 12
    diagonal = torch.eye(S, N)[None]
    flat = torch.full((1, S, N), 1.0 / N)
    lengths_n, lengths_s = torch.tensor([N]), torch.tensor([S])
    assert guided_attention_loss(diagonal, lengths_n, lengths_s) < 0.01
    assert guided_attention_loss(flat, lengths_n, lengths_s) > 0.3


def test_collate_pads_mels_to_a_multiple_of_r():
    items = [(torch.tensor([1, 2, 3]), torch.ones(80, 7)), (torch.tensor([4]), torch.ones(80, 2))]
    ids, text_lengths, mels, mel_lengths = collate(items, r=3)
    assert ids.tolist() == [[1, 2, 3], [4, 0, 0]]
    assert mels.shape == (2, 80, 9) and mel_lengths.tolist() == [7, 2]
    assert float(mels[1, :, 2:].abs().sum()) == 0.0


def test_a_few_steps_on_one_batch_lower_the_loss():
    from ttscli.tacotron2 import Tacotron2

    torch.manual_seed(0)
    config = dict(
        mask_padding=True, symbols_embedding_dim=16, encoder_embedding_dim=16,
        encoder_n_convolutions=1, attention_rnn_dim=16, attention_dim=8,
        attention_location_n_filters=4, attention_location_kernel_size=5,
        n_frames_per_step=3, decoder_rnn_dim=16, prenet_dim=8, postnet_embedding_dim=16,
        postnet_n_convolutions=2,
    )  # fmt: skip
    model = Tacotron2(**config)
    model.prenet_dropout = 0.0
    rng = random.Random(0)
    items = [
        (torch.tensor([rng.randrange(38, 64) for _ in range(n)]), torch.randn(80, 4 * n) - 5)
        for n in (6, 9, 5)
    ]
    batch = collate(items, r=3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        mel_loss, gate_loss, attn_loss, _, _ = losses(model, batch)
        loss = mel_loss + gate_loss + attn_loss
        first = float(loss) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < 0.5 * first


def test_trim_silence_cuts_quiet_edges():
    import numpy as np

    tone = np.sin(np.arange(22050) * 0.1).astype(np.float32)
    audio = np.concatenate([np.zeros(11025, np.float32), tone, np.zeros(22050, np.float32)])
    trimmed = trim_silence(audio)
    assert 22050 <= len(trimmed) <= 22050 + 4 * 256


def test_export_writes_a_voice_that_loads_back(tmp_path, monkeypatch):
    import json

    from ttscli.checkpoints import load_tacotron2
    from ttscli.tacotron2 import Tacotron2
    from ttscli.training import export as export_module
    from ttscli.training.train import VOICE_CONFIG

    monkeypatch.setenv("TTSCLI_TRAIN_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    monkeypatch.setattr(export_module, "GATE_THRESHOLDS", (0.5,))
    monkeypatch.setattr(export_module, "PRENET_DROPOUTS", (0.0,))
    monkeypatch.setitem(export_module.VOICE_JSON, "max_decoder_steps", 4)
    torch.manual_seed(0)
    model = Tacotron2(**VOICE_CONFIG)
    torch.save({"model": model.state_dict(), "step": 7}, tmp_path / "cache" / "state.pt")
    val = {"ids": [torch.tensor([40, 41, 42])], "mels": [torch.zeros(80, 9, dtype=torch.float16)]}
    torch.save(val, tmp_path / "cache" / "val.pt")

    out = export_module.export(tmp_path / "voice")

    loaded = load_tacotron2(out / "tacotron2.pt")
    assert loaded.config["n_frames_per_step"] == VOICE_CONFIG["n_frames_per_step"]
    for name, tensor in model.state_dict().items():
        expected = tensor.half().float() if tensor.is_floating_point() else tensor
        assert torch.equal(loaded.state_dict()[name].float(), expected.float()), name
    config = json.loads((out / "voice.json").read_text())
    assert config["name"] == "ttscli-en" and config["training_steps"] == 7
    assert config["prenet_dropout"] == 0.0 and config["gate_threshold"] == 0.5
    assert config["vocoder"] == "griffin-lim" and config["sample_rate"] == 22050


def test_learning_rate_holds_then_halves_down_to_a_plateau_then_decays_again():
    assert learning_rate(0) == learning_rate(1999) == 1e-3
    assert learning_rate(3500) == pytest.approx(5e-4)
    assert learning_rate(5000) == pytest.approx(2.5e-4)
    assert learning_rate(8000) == pytest.approx(1e-4)
    assert learning_rate(9400) == pytest.approx(5e-5)  # the final decay, past the plateau
    assert learning_rate(100_000) == pytest.approx(1e-5)


def test_corpus_split_is_rebuilt_when_its_lines_change(tmp_path, monkeypatch):
    import numpy as np
    import soundfile

    from ttscli.training import corpus

    monkeypatch.setenv("TTSCLI_TRAIN_CACHE", str(tmp_path))
    rendered = []

    def fake_festival(items, out_dir, processes=2):
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, _ in items:
            if not (out_dir / f"{name}.wav").exists():
                rendered.append(name)
                tone = 0.5 * np.sin(np.arange(8000) * 0.05).astype(np.float32)
                soundfile.write(out_dir / f"{name}.wav", tone, 22050)

    monkeypatch.setattr(corpus, "render_with_festival", fake_festival)
    corpus.build_split("train", [("a", "First line."), ("b", "Second line.")])
    corpus.build_split("train", [("a", "First line."), ("b", "Second line.")])
    assert rendered == ["a", "b"]  # cached: nothing rendered twice
    path = corpus.build_split("train", [("a", "First line."), ("b", "Second."), ("c", "Third.")])
    assert rendered == ["a", "b", "c"]  # only the new line is rendered
    assert torch.load(path, weights_only=True)["names"] == ["a", "b", "c"]


def test_eval_text_file_rows_are_keyed_by_their_text(tmp_path):
    from ttscli.training.__main__ import GENERAL_SENTENCES
    from ttscli.training.evaluate import text_file_rows

    path = tmp_path / "s.txt"
    path.write_text("Hello world.\n\n  Why?  \nHello world.\n", encoding="utf-8")
    rows = text_file_rows(path)
    assert [text for _, text in rows] == ["Hello world.", "Why?", "Hello world."]
    assert rows[0][0] == rows[2][0] != rows[1][0]
    path.write_text("Why?\n", encoding="utf-8")
    assert text_file_rows(path)[0][0] == rows[1][0]  # the id follows the text, not the line
    general = text_file_rows(GENERAL_SENTENCES)
    assert len(general) >= 50 and len({rid for rid, _ in general}) == len(general)


def test_everyday_sentences_split_fortune_cookies_and_drop_what_a_teacher_cannot_read(tmp_path):
    from ttscli.training.corpus import everyday_sentences

    (tmp_path / "fortunes").write_text(
        "Absence makes the heart grow fonder. Or so they say!\n"
        "\t\t-- Somebody Famous\n%\n"
        "Q: Why did the chicken cross the road?\n%\n"
        "Use <b>bold</b> text.\n%\n"
        "Is it raining?\n%\n"
        "Hi.\n%\n"
        "I owe you $5.\n%\n"
        "STOP SHOUTING.\n%\n"
        "The quick brown fox jumps over the lazy dog.\n",
        encoding="latin-1",
    )
    (tmp_path / "ethnic").write_text("Not a collection that is read.\n", encoding="latin-1")
    held_out = {"The quick brown fox jumps over the lazy dog."}
    rows = everyday_sentences(100, folder=tmp_path, exclude=held_out)
    assert sorted(text for _, text in rows) == [
        "Absence makes the heart grow fonder.",
        "I owe you $5.",
        "Is it raining?",
        "Or so they say!",
    ]  # "Hi." is under 4 characters, the rest is attribution, dialogue, markup, capitals
    ids = {text: rid for rid, text in rows}
    assert ids["Is it raining?"].startswith("everyday-") and len(set(ids.values())) == 4
    again = everyday_sentences(100, folder=tmp_path, exclude=held_out)
    assert again == rows  # seeded order, ids from the text
    assert everyday_sentences(2, folder=tmp_path, exclude=held_out) == rows[:2]
    assert everyday_sentences(5, folder=tmp_path / "missing") == []


def test_warm_start_goes_on_from_the_shipped_voices_step(tmp_path, monkeypatch):
    import json

    import ttscli.voices as voices
    from ttscli.checkpoints import save_tacotron2
    from ttscli.tacotron2 import Tacotron2
    from ttscli.training.train import VOICE_CONFIG, _shipped_weights

    folder = tmp_path / "ttscli-en"
    folder.mkdir()
    torch.manual_seed(0)
    model = Tacotron2(**VOICE_CONFIG)
    save_tacotron2(model, folder / "tacotron2.pt")
    (folder / "voice.json").write_text(json.dumps({"training_steps": 6599}))
    monkeypatch.setattr(voices, "EMBEDDED_DIR", tmp_path)
    monkeypatch.setattr(voices, "EMBEDDED_VOICE", "ttscli-en")

    weights, step = _shipped_weights()

    assert step == 6599 and learning_rate(step) < 2e-4  # not the 1e-3 of a fresh start
    for name, tensor in model.state_dict().items():
        assert torch.equal(weights[name], tensor), name


def test_eval_reads_the_test_lines_from_the_data_folder_given(tmp_path, monkeypatch):
    from ttscli.training import __main__ as entry
    from ttscli.training import evaluate

    read = []

    class Stop(Exception):
        pass

    def fake_read_transcripts(path):
        read.append(path)
        raise Stop

    monkeypatch.setattr(evaluate, "read_transcripts", fake_read_transcripts)
    with pytest.raises(Stop):
        entry.main(["--data", str(tmp_path), "eval", "--lines", "1"])
    assert read == [tmp_path / "ljspeech_test.txt"]
