"""`ttscli serve --wyoming`: Home Assistant's protocol, spoken to with the wyoming package's
own client."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("starlette")
pytest.importorskip("wyoming")
httpx = pytest.importorskip("httpx")

from serve_harness import RunningServer, decode  # noqa: E402
from wyoming.audio import AudioChunk, AudioStart, AudioStop  # noqa: E402
from wyoming.client import AsyncClient  # noqa: E402
from wyoming.info import Describe, Info  # noqa: E402
from wyoming.tts import (  # noqa: E402
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

TEXT = "Home Assistant asked for this sentence. And then for a second one."


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = RunningServer(
        tmp_path_factory.mktemp("serve-wyoming"), "--wyoming", "tcp://127.0.0.1:0"
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http_seconds(server):
    """How long the HTTP API's rendering of TEXT lasts (unseeded: a little varies)."""
    answer = httpx.post(f"{server.url}/v1/audio/speech", json={"input": TEXT}, timeout=120)
    audio, rate = decode(answer.content, "wav")
    return len(audio) / rate


async def _exchange(uri: str, events, until: str) -> list:
    async with AsyncClient.from_uri(uri) as client:
        for event in events:
            await client.write_event(event.event())
        received = []
        while True:
            event = await asyncio.wait_for(client.read_event(), 120)
            assert event is not None, "the server closed the connection"
            received.append(event)
            if event.type in (until, "error"):
                return received


def _audio_seconds(events) -> float:
    start = AudioStart.from_event(events[0])
    chunks = [AudioChunk.from_event(e) for e in events if AudioChunk.is_type(e.type)]
    assert start.width == 2 and start.channels == 1 and start.rate == 22050
    assert all(c.rate == start.rate for c in chunks)
    return sum(len(c.audio) for c in chunks) / 2 / start.rate


def test_describe_lists_the_voices(server):
    events = asyncio.run(_exchange(server.wyoming, [Describe()], "info"))
    info = Info.from_event(events[-1])
    (program,) = info.tts
    assert "ttscli-en" in [v.name for v in program.voices]
    assert program.supports_synthesize_streaming


def test_synthesize_sends_audio(server, http_seconds):
    request = Synthesize(text=TEXT, voice=SynthesizeVoice(name="ttscli-en"))
    events = asyncio.run(_exchange(server.wyoming, [request], "audio-stop"))
    assert AudioStart.is_type(events[0].type) and AudioStop.is_type(events[-1].type)
    seconds = _audio_seconds(events)
    assert abs(seconds - http_seconds) < 0.3 * http_seconds, (seconds, http_seconds)


def test_streamed_text_is_spoken(server, http_seconds):
    parts = ["Home Assistant asked ", "for this sentence. And then", " for a second one."]
    requests = [SynthesizeStart(voice=SynthesizeVoice(name="ttscli-en"))]
    requests += [SynthesizeChunk(text=p) for p in parts]
    requests += [Synthesize(text=TEXT), SynthesizeStop()]  # as Home Assistant sends them
    events = asyncio.run(_exchange(server.wyoming, requests, "synthesize-stopped"))
    kinds = [e.type for e in events]
    assert kinds[0] == "audio-start" and kinds.count("audio-start") == 1
    assert kinds[-2:] == ["audio-stop", SynthesizeStopped().event().type]
    seconds = _audio_seconds(events[:-1])
    assert abs(seconds - http_seconds) < 0.3 * http_seconds, (seconds, http_seconds)


def test_an_unknown_voice_is_an_error_event(server):
    request = Synthesize(text=TEXT, voice=SynthesizeVoice(name="nobody"))
    events = asyncio.run(_exchange(server.wyoming, [request], "audio-stop"))
    assert events[-1].type == "error" and "ttscli-en" in events[-1].data["text"]


def test_sigterm_stops_both_and_exits_0(server):
    assert server.stop() == 0
    assert "Traceback" not in server.log()
