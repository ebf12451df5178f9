"""The Synthesizer: order, batching, trimming, splitting, retries, errors, precision."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from voicekit import tiny_tacotron2

from ttscli.errors import ConfigError, SynthesisError, TextError
from ttscli.synthesizer import (
    FLUSH,
    SynthesisConfig,
    Synthesizer,
    Voice,
    VoiceDefaults,
    resolve_device,
    resolve_precision,
)

HOP = 256
FRAMES = 20  # the tiny decoder stops after 20 frames


class FrameVocoder:
    """Test vocoder: one constant block of `hop` samples per mel frame (the frame's mean)."""

    hop_length = HOP

    def __init__(self):
        self.batches = []

    def to(self, device, dtype):
        return self

    def __call__(self, mel, *, sigma, denoiser_strength):
        self.batches.append(mel.shape[0])
        return mel.mean(dim=1).repeat_interleave(HOP, dim=1) / 20.0


def make_voice(steps=FRAMES, **defaults) -> Voice:
    base = dict(prenet_dropout=0.0, max_decoder_steps=400, pause_seconds=0.01, batch_size=3)
    return Voice(
        "tiny",
        tiny_tacotron2(steps),
        FrameVocoder(),
        defaults=VoiceDefaults(**{**base, **defaults}),
    )


PAUSE = int(round(0.01 * 22050))


def expected_samples(n_sentences: int, frames: int = FRAMES) -> int:
    return n_sentences * frames * HOP + (n_sentences - 1) * PAUSE


def test_results_come_back_in_input_order_with_trimmed_audio():
    texts = [
        "Hi.",
        "A much longer sentence than the others.",
        "The first sentence here. And a second!",
        "ok",
    ]
    synth = Synthesizer(make_voice())
    results = list(synth.stream(enumerate(texts)))
    assert [r.id for r in results] == [0, 1, 2, 3]
    assert [len(r.audio) for r in results] == [
        expected_samples(1),
        expected_samples(1),
        expected_samples(2),
        expected_samples(1),
    ]
    assert all(r.ok and r.sample_rate == 22050 for r in results)
    assert [r.decoder_steps for r in results] == [20, 20, 40, 20]
    peak = max(float(np.abs(r.audio).max()) for r in results)
    assert peak == pytest.approx(10 ** (-1 / 20), rel=1e-5)


def test_pieces_are_grouped_into_batches_of_the_configured_size():
    voice = make_voice(batch_size=4)
    list(Synthesizer(voice).stream(enumerate(["word."] * 10)))
    assert voice.vocoder.batches == [4, 4, 2]
    voice = make_voice()
    list(Synthesizer(voice, SynthesisConfig(batch_size=2)).stream(enumerate(["w."] * 5)))
    assert voice.vocoder.batches == [2, 2, 1]


def test_unspeakable_and_overlong_texts_become_error_results():
    synth = Synthesizer(make_voice(), SynthesisConfig(max_chars=100))
    results = list(synth.stream(enumerate(["fine", "☃☃☃", "", "x" * 101, "also fine"])))
    assert [r.ok for r in results] == [True, False, False, False, True]
    assert "too long" in results[3].error
    assert all(r.audio is None for r in results if not r.ok)


def test_a_decoder_that_never_stops_is_split_retried_then_reported():
    synth = Synthesizer(make_voice(steps=None), SynthesisConfig(max_decoder_steps=60))
    (result,) = synth.stream([("a", "never ending words here")])
    assert not result.ok and result.gate_failed and result.audio is None
    assert "did not stop within 60 steps" in result.error
    assert "already split once" in result.error
    with pytest.raises(SynthesisError, match="did not stop"):
        synth.synthesize("never ending")


def test_gate_firing_at_once_is_an_error_not_an_empty_file():
    synth = Synthesizer(make_voice(steps=0))
    (result,) = synth.stream([(1, "hello")])
    assert not result.ok


@pytest.mark.parametrize("steps", [None, 0, 3])  # never stops / stops at once / early
def test_fixed_decoder_steps_run_exactly_and_are_not_errors(steps):
    synth = Synthesizer(make_voice(steps=steps), SynthesisConfig(fixed_decoder_steps=7))
    (result,) = synth.stream([(1, "hello there. A second sentence that is long enough.")])
    assert result.ok and result.decoder_steps == 7 and len(result.audio) == 7 * HOP


def test_long_text_is_split_to_the_decoder_budget_never_cut():
    # budget = 60 steps * 1 frame / 8 frames per char = 8 characters per piece
    synth = Synthesizer(make_voice(), SynthesisConfig(max_decoder_steps=60))
    text = "alpha beta gamma delta epsilon"
    (result,) = synth.stream([(0, text)])
    assert result.ok and result.decoder_steps == 5 * FRAMES  # 5 pieces of <= 8 characters


def test_flush_renders_what_is_buffered_before_reading_on():
    synth = Synthesizer(make_voice(batch_size=8))
    received = []

    def source():
        yield (1, "first")
        yield FLUSH
        assert [r.id for r in received] == [1]  # rendered before the next line was read
        yield (2, "second")

    for result in synth.stream(source()):
        received.append(result)
    assert [r.id for r in received] == [1, 2]


def test_input_is_consumed_lazily_so_memory_stays_bounded():
    synth = Synthesizer(make_voice(batch_size=2))
    endless = ((i, "hi") for i in itertools.count())
    first = list(itertools.islice(synth.stream(endless), 5))
    assert [r.id for r in first] == [0, 1, 2, 3, 4]


def test_seed_makes_prenet_dropout_repeatable():
    def render(seed):
        voice = make_voice(prenet_dropout=0.5)
        return Synthesizer(voice, SynthesisConfig(seed=seed)).synthesize("hello there").audio

    assert np.array_equal(render(3), render(3))
    assert not np.array_equal(render(3), render(4))


def test_a_seed_repeats_each_call_and_leaves_the_callers_generators_alone():
    voice = make_voice(prenet_dropout=0.5)
    seeded = Synthesizer(voice, SynthesisConfig(seed=3))
    torch.manual_seed(99)
    expected_next_draw = torch.rand(3)
    torch.manual_seed(99)
    first = seeded.synthesize("hello there").audio
    assert torch.equal(torch.rand(3), expected_next_draw)  # the caller's stream is untouched
    Synthesizer(voice, SynthesisConfig(seed=4))  # another seeded synthesizer changes nothing
    assert np.array_equal(seeded.synthesize("hello there").audio, first)
    # a line's audio does not depend on what an earlier call rendered
    list(seeded.stream([(0, "something else first"), (1, "and more")]))
    assert np.array_equal(seeded.synthesize("hello there").audio, first)
    # unseeded, the draws come from the global generator, as in NVIDIA's code
    plain = Synthesizer(voice)
    torch.manual_seed(5)
    a = plain.synthesize("hello there").audio
    torch.manual_seed(5)
    assert np.array_equal(plain.synthesize("hello there").audio, a)


@pytest.mark.parametrize(
    "option, value",
    [
        ("prenet_dropout", 1.0), ("prenet_dropout", -0.5), ("prenet_dropout", 2),
        ("pause_seconds", float("inf")), ("pause_seconds", -1), ("sigma", float("nan")),
        ("sigma", -1), ("seed", "abc"), ("seed", 2**70), ("seed", 1.5), ("seed", True),
        ("batch_size", 0), ("batch_size", 2.5), ("max_decoder_steps", 2.5),
        ("gate_threshold", 5), ("denoiser_strength", -1), ("max_chars", 0),
        ("device", 3), ("precision", 16),
    ],
)  # fmt: skip
def test_bad_config_values_are_config_errors(option, value):
    with pytest.raises(ConfigError, match=option):
        SynthesisConfig(**{option: value})


def test_devices_other_than_cpu_and_cuda_are_config_errors():
    with pytest.raises(ConfigError, match="unsupported device 'mps'"):
        resolve_device("mps")


def test_text_problems_are_text_errors_and_stream_wants_pairs():
    synth = Synthesizer(make_voice())
    for bad in ("", "...", "x" * 20_001, None, 123, b"bytes"):
        with pytest.raises(TextError):
            synth.synthesize(bad)
    with pytest.raises(TextError, match=r"\(id, text\) pairs"):
        list(synth.stream(["hi", "ok"]))


def test_synthesizers_sharing_a_voice_each_render_in_their_own_dtype():
    class DtypeVocoder(FrameVocoder):
        def to(self, device, dtype):
            self.dtype = dtype
            return self

        def __call__(self, mel, **kwargs):
            self.rendered_in = self.dtype
            return super().__call__(mel, **kwargs)

    voice = make_voice()
    voice.vocoder = DtypeVocoder()
    bf16 = Synthesizer(voice, SynthesisConfig(precision="bf16"))
    fp32 = Synthesizer(voice, SynthesisConfig(precision="fp32"))  # moves the shared models
    bf16.synthesize("hello there")
    assert voice.vocoder.rendered_in == torch.bfloat16
    fp32.synthesize("hello there")
    assert voice.vocoder.rendered_in == torch.float32


def test_config_overrides_voice_defaults():
    synth = Synthesizer(make_voice(), SynthesisConfig(max_decoder_steps=10, pause_seconds=0.5))
    assert synth.max_decoder_steps == 10 and synth.pause_seconds == 0.5
    assert synth.prenet_dropout == 0.0  # from the voice


@pytest.mark.parametrize(
    "name, device, expected",
    [
        ("fp32", "cpu", (torch.float32, torch.float32)),
        (None, "cpu", (torch.float32, torch.float32)),
        ("bf16", "cpu", (torch.float32, torch.bfloat16)),
        ("fp16", "cuda", (torch.float16, torch.float16)),
    ],
)
def test_precision_resolution(name, device, expected):
    assert resolve_precision(name, torch.device(device)) == expected


@pytest.mark.parametrize("name", ["fp16", "int8"])
def test_bad_precision_on_cpu_is_refused(name):
    with pytest.raises(ConfigError, match=name):
        resolve_precision(name, torch.device("cpu"))


def test_a_device_that_cannot_be_had_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_bf16_vocoder_path_runs_on_cpu():
    voice = make_voice()
    synth = Synthesizer(voice, SynthesisConfig(precision="bf16"))
    assert next(voice.tacotron2.parameters()).dtype == torch.float32
    assert synth.synthesize("hello").ok


@pytest.mark.cuda
def test_fp16_on_cuda_runs_and_is_finite():
    voice = make_voice()
    synth = Synthesizer(voice, SynthesisConfig(precision="fp16", device="cuda"))
    result = synth.synthesize("hello world")
    assert np.isfinite(result.audio).all()


def test_text_that_grows_when_read_is_split_by_what_is_read():
    # 8 digits read digit by digit would be fine, but a 40-digit number reads as 40 words
    synth = Synthesizer(make_voice(), SynthesisConfig(max_decoder_steps=160))  # 20 chars
    (result,) = synth.stream([(0, "1234567890123456789012345678901234567890")])
    assert result.ok, result.error
    assert result.decoder_steps >= 10 * FRAMES  # ~200 characters of "one two three ..."


class Bf16NanVocoder(FrameVocoder):
    """Gives non-finite audio when run in bfloat16, like a reduced-precision overflow."""

    def to(self, device, dtype):
        self.dtype = dtype
        return self

    def __call__(self, mel, *, sigma, denoiser_strength):
        audio = super().__call__(mel, sigma=sigma, denoiser_strength=denoiser_strength)
        return audio * float("nan") if self.dtype == torch.bfloat16 else audio


def test_non_finite_reduced_precision_output_is_redone_in_fp32(caplog):
    base = make_voice()
    voice = Voice("tiny", base.tacotron2, Bf16NanVocoder(), defaults=base.defaults)
    synth = Synthesizer(voice, SynthesisConfig(precision="bf16"))
    result = synth.synthesize("hello")
    assert result.ok and np.isfinite(result.audio).all() and len(result.audio) == FRAMES * HOP
    assert "redoing" in caplog.text


def test_non_finite_fp32_output_is_an_error():
    class NanVocoder(FrameVocoder):
        def __call__(self, mel, *, sigma, denoiser_strength):
            return super().__call__(mel, sigma=sigma, denoiser_strength=denoiser_strength) * float(
                "nan"
            )

    base = make_voice()
    synth = Synthesizer(Voice("tiny", base.tacotron2, NanVocoder(), defaults=base.defaults))
    (result,) = synth.stream([(0, "hello")])
    assert not result.ok and "non-finite" in result.error


def test_a_waveglow_for_other_mels_is_a_voice_error():
    from ttscli.errors import VoiceError
    from ttscli.vocoders import WaveGlowVocoder
    from ttscli.waveglow import WaveGlow

    voice = make_voice()
    n_mel = voice.tacotron2.n_mel_channels
    wn = dict(n_layers=1, kernel_size=3, n_channels=8)
    voice.vocoder = WaveGlowVocoder(WaveGlow(n_mel + 1, 2, 8, 4, 2, wn))
    with pytest.raises(VoiceError, match=f"makes {n_mel}-channel mels, its WaveGlow reads"):
        Synthesizer(voice)
    voice.vocoder = WaveGlowVocoder(WaveGlow(n_mel, 2, 8, 4, 2, wn))
    Synthesizer(voice)  # matching channels build fine
