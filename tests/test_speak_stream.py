"""Synthesizer.speak: a text's audio sentence by sentence, as the whole-text path cuts it."""

from __future__ import annotations

import numpy as np
import pytest
from test_synthesizer import FRAMES, HOP, PAUSE, make_voice

from ttscli.errors import SynthesisError, TextError
from ttscli.rendering import AudioChunk
from ttscli.synthesizer import SynthesisConfig, Synthesizer

TEXT = "alpha beta gamma delta epsilon"  # five pieces at a budget of 8 characters


def test_chunks_are_the_pieces_of_the_whole_text_path_in_order():
    synth = Synthesizer(make_voice(), SynthesisConfig(max_decoder_steps=60, batch_size=2))
    chunks = list(synth.speak(TEXT))
    assert all(isinstance(c, AudioChunk) for c in chunks)
    assert [c.text for c in chunks] == ["alpha", "beta", "gamma", "delta", "epsilon"]
    assert all(c.sample_rate == 22050 and c.audio.dtype == np.float32 for c in chunks)
    # the first chunk is its sentence; each later one starts with the pause before it
    assert [len(c.audio) for c in chunks] == [FRAMES * HOP] + [PAUSE + FRAMES * HOP] * 4
    assert not chunks[1].audio[:PAUSE].any()
    whole = synth.synthesize(TEXT).audio
    assert sum(len(c.audio) for c in chunks) == len(whole)


def test_one_sentence_streams_exactly_what_synthesize_returns():
    synth = Synthesizer(make_voice(), SynthesisConfig(seed=3))
    (chunk,) = synth.speak("Just one sentence.")
    np.testing.assert_array_equal(chunk.audio, synth.synthesize("Just one sentence.").audio)


def test_chunks_arrive_before_the_whole_text_is_rendered():
    voice = make_voice()
    synth = Synthesizer(voice, SynthesisConfig(max_decoder_steps=60, batch_size=2))
    chunks = synth.speak(TEXT)
    next(chunks)
    assert voice.vocoder.batches == [2]  # one batch rendered for the first chunk


def test_text_longer_than_max_chars_is_spoken_in_pieces_that_fit():
    synth = Synthesizer(make_voice(), SynthesisConfig(max_chars=12))
    chunks = list(synth.speak("First one. Second one."))
    assert [c.text for c in chunks] == ["First one.", "Second one."]


def test_nothing_to_say_is_a_text_error_before_any_audio():
    synth = Synthesizer(make_voice())
    with pytest.raises(TextError):
        next(synth.speak("☃☃☃"))
    with pytest.raises(TextError):
        next(synth.speak(None))


def test_a_failed_sentence_is_reported_after_the_others():
    synth = Synthesizer(make_voice(steps=None), SynthesisConfig(max_decoder_steps=60))
    with pytest.raises(SynthesisError, match="sentence\\(s\\) failed"):
        list(synth.speak("never ending words"))


def test_stream_refuses_a_text_that_is_not_a_string_with_a_text_error():
    synth = Synthesizer(make_voice())
    for item in [("a", None), ("b", 3), ("c", b"bytes")]:
        with pytest.raises(TextError, match="must be a str"):
            list(synth.stream([item]))
