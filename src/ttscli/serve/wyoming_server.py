"""Home Assistant's Wyoming protocol: describe, synthesize and streamed synthesis over TCP."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from .. import __version__
from .encode import to_pcm16
from .errors import ApiError
from .parse import SpeechRequest, check_text
from .scheduler import Scheduler
from .speech import Speech

log = logging.getLogger(__name__)

SAMPLES_PER_CHUNK = 4096
MIN_STREAMED_CHARS = 20  # streamed text is spoken in pieces of at least this many characters
URL = "https://github.com/NVIDIA/DeepLearningExamples"


@dataclass
class WyomingServer:
    """A running Wyoming listener; `uri` says where (the real port when 0 was asked for)."""

    server: object  # wyoming.server.AsyncTcpServer
    uri: str

    async def stop(self) -> None:
        await self.server.stop()


async def start_wyoming(uri: str, scheduler: Scheduler, options) -> WyomingServer:
    """Listen for Wyoming clients at tcp://HOST:PORT, without blocking."""
    from wyoming.server import AsyncServer

    server = AsyncServer.from_uri(uri)

    def handler(reader, writer):
        return _Handler(reader, writer, scheduler, options)

    await server.start(handler)
    host, port = server._server.sockets[0].getsockname()[:2]
    return WyomingServer(server, f"tcp://{host}:{port}")


def _handler_base():
    from wyoming.server import AsyncEventHandler

    return AsyncEventHandler


class _Handler(_handler_base()):
    """One client's connection: events in, audio events out."""

    def __init__(self, reader, writer, scheduler: Scheduler, options) -> None:
        super().__init__(reader, writer)
        self.scheduler = scheduler
        self.options = options
        self.streaming: _Stream | None = None

    async def handle_event(self, event) -> bool:
        try:
            return await self._handle(event)
        except ConnectionError:  # the client went away; its queued pieces are dropped
            return False

    async def _handle(self, event) -> bool:
        from wyoming.info import Describe
        from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop

        if Describe.is_type(event.type):
            await self.write_event(await asyncio.to_thread(self._info))
        elif SynthesizeStart.is_type(event.type):
            start = SynthesizeStart.from_event(event)
            self.streaming = _Stream(self, start.voice.name if start.voice else None)
        elif SynthesizeChunk.is_type(event.type) and self.streaming:
            self.streaming.add(SynthesizeChunk.from_event(event).text)
        elif SynthesizeStop.is_type(event.type) and self.streaming:
            await self.streaming.finish()
            self.streaming = None
        elif Synthesize.is_type(event.type) and self.streaming is None:
            # (a client streaming text also sends the whole text in `synthesize`: ignored)
            request = Synthesize.from_event(event)
            name = request.voice.name if request.voice else None
            await self._speak([request.text], name)
        return True

    def _info(self):
        from wyoming.info import Attribution, Info, TtsProgram, TtsVoice

        attribution = Attribution(name="ttscli (Tacotron 2)", url=URL)
        voices = [
            TtsVoice(name=name, description=name, attribution=attribution, installed=True,
                     version=None, languages=["en"])
            for name in self.scheduler.engine.installed_voices()
        ]  # fmt: skip
        program = TtsProgram(
            name="ttscli", description="ttscli text to speech", attribution=attribution,
            installed=True, version=__version__, voices=voices,
            supports_synthesize_streaming=True,
        )  # fmt: skip
        return Info(tts=[program]).event()

    async def _speak(self, texts, voice: str | None, started: bool = False) -> bool:
        """Audio events for texts, in order (audio-start first unless `started`, audio-stop
        last); False after an error event."""
        from wyoming.audio import AudioChunk, AudioStart, AudioStop
        from wyoming.error import Error

        try:
            async for text in _aiter(texts):
                if not text.strip():
                    continue
                check_text(text, self.options.max_chars, "text")
                speech = Speech(
                    self.scheduler, SpeechRequest(text=text, voice=voice),
                    self.options.timeout_seconds, self.scheduler.metrics, streamed=True,
                )  # fmt: skip
                await speech.start()
                rate = speech.sample_rate
                if started:  # the pause between sentences, also between texts
                    await self.write_event(
                        AudioChunk(rate=rate, width=2, channels=1,
                                   audio=to_pcm16(speech.pause)).event()
                    )  # fmt: skip
                else:
                    await self.write_event(AudioStart(rate=rate, width=2, channels=1).event())
                    started = True
                async for chunk in speech.chunks():
                    for at in range(0, len(chunk.audio), SAMPLES_PER_CHUNK):
                        pcm = to_pcm16(chunk.audio[at : at + SAMPLES_PER_CHUNK])
                        await self.write_event(
                            AudioChunk(rate=rate, width=2, channels=1, audio=pcm).event()
                        )
        except ApiError as exc:
            await self.write_event(Error(text=exc.message, code=str(exc.status)).event())
            return False
        if started:
            await self.write_event(AudioStop().event())
        return True


async def _aiter(texts):
    if hasattr(texts, "__aiter__"):
        async for text in texts:
            yield text
    else:
        for text in texts:
            yield text


class _Stream:
    """Streamed text (synthesize-start/-chunk/-stop): each complete sentence is spoken as soon
    as it arrives, the rest at the stop."""

    def __init__(self, handler: _Handler, voice: str | None) -> None:
        self.handler = handler
        self.voice = voice
        self.buffer = ""
        self.texts: asyncio.Queue[str | None] = asyncio.Queue()
        self.task = asyncio.create_task(self._run())

    def add(self, text: str) -> None:
        from ..segment import split_sentences

        self.buffer += text
        sentences = split_sentences(self.buffer)
        if len(sentences) < 2:
            return  # the last sentence may go on in the next chunk
        done = " ".join(sentences[:-1])
        if len(done) < MIN_STREAMED_CHARS:
            return  # a word or two alone: decoders stop unreliably on them
        self.texts.put_nowait(done)
        self.buffer = self.buffer[self.buffer.rfind(sentences[-1]) :]

    async def finish(self) -> None:
        from wyoming.tts import SynthesizeStopped

        if self.buffer.strip():
            self.texts.put_nowait(self.buffer)
        self.texts.put_nowait(None)
        await self.task
        await self.handler.write_event(SynthesizeStopped().event())

    async def _run(self) -> None:
        async def texts():
            while (text := await self.texts.get()) is not None:
                yield text

        await self.handler._speak(texts(), self.voice)
