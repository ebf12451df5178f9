"""One Tacotron2 shared by synthesizers and threads: each call decodes with its own options."""

from __future__ import annotations

import threading

import numpy as np
import torch
from voicekit import tiny_tacotron2

from ttscli.synthesizer import SynthesisConfig, Synthesizer, Voice, VoiceDefaults
from ttscli.tacotron2 import DecodeOptions, decode

HOP = 256
TEXT = "Hello."  # one piece (a voice with 60 steps takes up to 8 characters a piece)


class MeanVocoder:
    """Test vocoder: one block of HOP samples per mel frame (the frame's mean)."""

    hop_length = HOP

    def to(self, device, dtype):
        return self

    def __call__(self, mel, *, sigma, denoiser_strength):
        return mel.mean(dim=1).repeat_interleave(HOP, dim=1) / 20.0


def tiny_voice(model: torch.nn.Module) -> Voice:
    defaults = VoiceDefaults(prenet_dropout=0.0, max_decoder_steps=60, batch_size=1)
    return Voice("tiny", model, MeanVocoder(), defaults=defaults)


def frames_decoded(model: torch.nn.Module) -> list[int]:
    """The number of frames the decoder made in each call, in call order (the postnet sees
    every frame decoded, before any trimming)."""
    seen: list[int] = []
    model.postnet.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[2]))
    return seen


def run_in_threads(*jobs) -> list:
    """Run each job on its own thread (named job0, job1...); their results, errors raised."""
    results: list = [None] * len(jobs)

    def target(i: int) -> None:
        try:
            results[i] = jobs[i]()
        except BaseException as exc:  # handed to the test below
            results[i] = exc

    threads = [threading.Thread(target=target, args=(i,), name=f"job{i}") for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def test_two_synthesizers_on_two_threads_sharing_a_model_keep_their_own_options():
    """One synthesizer stops at the gate (20 frames), the other decodes exactly 7 steps with
    prenet dropout; the second one runs entirely while the first is inside its Tacotron2 call.
    Each gets what it gets alone (formerly the first one decoded with the second's options,
    written on the shared model: 60 frames, with dropout)."""
    model = tiny_tacotron2(20)
    voice = tiny_voice(model)
    stopping = Synthesizer(voice)
    fixed = Synthesizer(voice, SynthesisConfig(fixed_decoder_steps=7, prenet_dropout=0.5, seed=3))
    frames = frames_decoded(model)
    alone = [stopping.synthesize(TEXT).audio, fixed.synthesize(TEXT).audio]
    assert frames == [21, 7]  # the gate fires at step 21; its frame is not kept

    first_inside, second_done = threading.Event(), threading.Event()

    def hold_the_first_call(module, args) -> None:
        if threading.current_thread().name == "job0" and not first_inside.is_set():
            first_inside.set()
            second_done.wait(timeout=60)

    model.embedding.register_forward_pre_hook(hold_the_first_call)

    def second():
        try:
            assert first_inside.wait(timeout=60)
            return fixed.synthesize(TEXT).audio
        finally:
            second_done.set()

    together = run_in_threads(lambda: stopping.synthesize(TEXT).audio, second)
    assert frames[2:] == [7, 21]
    for audio, wanted in zip(together, alone, strict=True):
        assert np.array_equal(audio, wanted)
    assert len(together[0]) == 20 * HOP and len(together[1]) == 7 * HOP


def test_a_checkpoints_early_stopping_setting_is_kept_by_the_synthesizer():
    """decoder_no_early_stopping=True (a checkpoint's config): every step up to the limit is
    decoded, the audio is still trimmed where the gate fired, and the model is left as it
    was (formerly the synthesizer switched early stopping on, on the shared model)."""
    model = tiny_tacotron2(20, decoder_no_early_stopping=True)
    assert model.early_stopping is False
    frames = frames_decoded(model)
    result = Synthesizer(tiny_voice(model)).synthesize(TEXT)
    assert frames == [60]
    assert len(result.audio) == 20 * HOP and result.decoder_steps == 20
    assert model.early_stopping is False
    assert (model.max_decoder_steps, model.prenet_dropout) == (60, 0.5)  # the model's own

    stopping = tiny_tacotron2(20)  # the default: stop once the gate fired
    frames = frames_decoded(stopping)
    assert len(Synthesizer(tiny_voice(stopping)).synthesize(TEXT).audio) == 20 * HOP
    assert frames == [21]


def test_decode_calls_from_two_threads_on_one_model_each_get_their_own_result():
    model = tiny_tacotron2(20)
    ids = torch.randint(1, 148, (2, 9), generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([9, 6])
    short = DecodeOptions(prenet_dropout=0.0, max_decoder_steps=9)
    full = DecodeOptions(prenet_dropout=0.0, max_decoder_steps=40, early_stopping=False)
    alone = [decode(model, ids, lengths, short), decode(model, ids, lengths, full)]
    assert alone[0].hit_max_steps.tolist() == [True, True] and alone[0].mel.shape[2] == 9
    assert alone[1].hit_max_steps.tolist() == [False, False] and alone[1].mel.shape[2] == 40
    assert alone[1].mel_lengths.tolist() == [20, 20]

    both_inside = threading.Barrier(2, timeout=60)  # each waits in its call for the other

    def meet(module, args) -> None:
        both_inside.wait()

    model.embedding.register_forward_pre_hook(meet)
    together = run_in_threads(
        lambda: decode(model, ids, lengths, short), lambda: decode(model, ids, lengths, full)
    )
    for got, wanted in zip(together, alone, strict=True):
        assert torch.equal(got.mel, wanted.mel)
        assert torch.equal(got.mel_lengths, wanted.mel_lengths)
        assert torch.equal(got.alignments, wanted.alignments)
        assert torch.equal(got.hit_max_steps, wanted.hit_max_steps)


def test_a_model_already_in_place_is_not_moved_again(monkeypatch):
    """.to() rewrites every parameter's .data and an LSTM's weight list even when nothing
    changes, which another thread rendering with the same model may be reading (an LSTM's
    forward then failed with ValueError): a synthesizer leaves a model in place alone."""
    model = tiny_tacotron2(5)
    voice = tiny_voice(model)
    Synthesizer(voice).synthesize(TEXT)  # placed once
    moves = []
    real_to = model.to
    monkeypatch.setattr(model, "to", lambda *a, **k: moves.append((a, k)) or real_to(*a, **k))
    second = Synthesizer(voice)
    second.synthesize(TEXT)
    assert moves == []
    real_to(torch.float64)  # elsewhere, out of place: put back
    Synthesizer(voice).synthesize(TEXT)
    assert len(moves) == 1 and next(model.parameters()).dtype == torch.float32
