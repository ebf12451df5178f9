"""Speech speed: mels time-scaled before the vocoder (SynthesisConfig.speed)."""

from __future__ import annotations

import math

import pytest
import torch

from ttscli.audio import time_scale_mels
from ttscli.errors import ConfigError
from ttscli.synthesizer import SynthesisConfig, Synthesizer
from ttscli.voices import load_voice


def test_time_scale_mels_scales_each_row_and_pads():
    mel = torch.arange(2 * 3 * 8, dtype=torch.float32).reshape(2, 3, 8)
    counts = torch.tensor([8, 4])
    out, new_counts = time_scale_mels(mel, counts, 2.0, pad_value=-11.5)
    assert new_counts.tolist() == [4, 2]
    assert out.shape == (2, 3, 4)
    # the ends are kept, the middle interpolated along frames
    assert out[0, :, 0].tolist() == mel[0, :, 0].tolist()
    assert out[0, :, 3].tolist() == mel[0, :, 7].tolist()
    assert out[1, :, 2:].eq(-11.5).all()
    slow, slow_counts = time_scale_mels(mel, counts, 0.5, pad_value=-11.5)
    assert slow_counts.tolist() == [16, 8]
    assert slow[0, 0, 0] == mel[0, 0, 0] and slow[0, 0, 15] == mel[0, 0, 7]


def test_speed_outside_its_range_is_refused():
    for bad in (0.2, 4.5, math.nan):
        with pytest.raises(ConfigError, match="speed"):
            SynthesisConfig(speed=bad)


def test_faster_speech_is_shorter():
    voice = load_voice("ttscli-en")
    text = "A sentence spoken at two speeds."
    normal = Synthesizer(voice, SynthesisConfig(seed=3)).synthesize(text)
    fast = Synthesizer(voice, SynthesisConfig(seed=3, speed=2.0)).synthesize(text)
    ratio = fast.audio_seconds / normal.audio_seconds
    assert 0.4 < ratio < 0.65, ratio  # edge silence is trimmed after scaling: not exactly 0.5
