"""Pause points: a render lets its thread render something more urgent between two steps."""

from __future__ import annotations

import threading

import numpy as np
import torch

from ttscli.audio import GriffinLim
from ttscli.pausing import pause_point, work_between_steps
from ttscli.synthesizer import SynthesisConfig, Synthesizer
from ttscli.voices import load_voice


def test_pause_points_call_the_handler_of_their_thread_only_and_not_within_itself():
    calls = []

    def handler():
        calls.append("handler")
        pause_point()  # the handler's own loops: not called again

    pause_point()  # no handler: nothing happens
    with work_between_steps(handler):
        pause_point()
        other = threading.Thread(target=pause_point)  # another thread: its own (none)
        other.start()
        other.join()
        pause_point()
    pause_point()
    assert calls == ["handler", "handler"]


def test_griffin_lim_has_a_pause_point_per_iteration():
    calls = []
    with work_between_steps(lambda: calls.append(1)):
        GriffinLim(n_iter=5)(torch.full((1, 80, 12), -4.0))
    assert len(calls) == 5


def test_a_render_interrupted_by_another_gives_both_their_own_audio():
    voice = load_voice("ttscli-en")  # the embedded voice: Tacotron2 and Griffin-Lim
    config = SynthesisConfig(prenet_dropout=0.0)  # no draws: the same audio every time
    outer, inner = Synthesizer(voice, config), Synthesizer(voice, config)
    first, second = "The museum opens its new wing next month.", "Fresh bread, every day."
    first_alone, second_alone = outer.synthesize(first).audio, inner.synthesize(second).audio
    calls, inner_audio = [], []

    def handler():
        calls.append(1)
        if len(calls) == 20:  # in the middle of the decoder's steps
            inner_audio.append(inner.synthesize(second).audio)

    with work_between_steps(handler):
        interrupted = outer.synthesize(first).audio
    assert len(calls) > 40  # every decoder step and Griffin-Lim iteration
    np.testing.assert_array_equal(interrupted, first_alone)
    np.testing.assert_array_equal(inner_audio[0], second_alone)
