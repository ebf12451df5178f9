"""The HTTP application: OpenAI's speech routes, voices, health, metrics, /api/tts and the page."""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import uuid
from dataclasses import dataclass, field
from importlib import resources

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from .encode import CONTENT_TYPES, StreamEncoder, available_formats, encode_whole, output_rate_hz
from .errors import ApiError
from .metrics import Metrics
from .parse import MAX_BODY_BYTES, check_text, parse_json_body, parse_query, parse_speech
from .scheduler import Scheduler
from .speech import Speech

log = logging.getLogger(__name__)

MODELS = ("tts-1", "tts-1-hd", "ttscli")
ROUTES = frozenset(
    "/ /favicon.ico /favicon.svg /health /ready /metrics /v1/models /v1/audio/voices "
    "/v1/audio/speech /api/tts /api/normalize".split()
)


@dataclass
class Settings:
    """What `ttscli serve` was asked for that the routes need."""

    api_key: str | None = None
    cors_origins: list[str] = field(default_factory=list)
    max_chars: int = 4096
    timeout_seconds: float = 120.0


def build_app(scheduler: Scheduler, settings: Settings) -> Starlette:
    """The Starlette application serving a scheduler."""
    service = _Service(scheduler, settings)
    routes = [
        Route("/", service.page),
        Route("/favicon.ico", service.favicon),
        Route("/favicon.svg", service.favicon),
        Route("/health", service.health),
        Route("/ready", service.ready),
        Route("/metrics", service.metrics_text),
        Route("/v1/models", service.models),
        Route("/v1/audio/voices", service.voices),
        Route("/v1/audio/speech", service.speech, methods=["POST"]),
        Route("/api/tts", service.api_tts),
        Route("/api/normalize", service.normalize, methods=["POST"]),
    ]
    middleware = []
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=["Authorization", "Content-Type"],
                expose_headers=["X-Sample-Rate", "X-Request-Id"],
            )
        )
    handlers = {ApiError: _api_error, HTTPException: _http_error, Exception: _server_error}
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=handlers)
    return _CountRequests(app, scheduler.metrics)


class _Service:
    """The routes, sharing the scheduler and the settings."""

    def __init__(self, scheduler: Scheduler, settings: Settings) -> None:
        self.scheduler = scheduler
        self.engine = scheduler.engine
        self.settings = settings
        self.metrics: Metrics = scheduler.metrics
        self.formats = available_formats()

    # -- open routes ----------------------------------------------------------------------------
    async def page(self, request: Request) -> Response:
        html = resources.files(__package__).joinpath("static/index.html").read_text("utf-8")
        return Response(html, media_type="text/html; charset=utf-8")

    async def favicon(self, request: Request) -> Response:
        svg = resources.files(__package__).joinpath("static/favicon.svg").read_bytes()
        return Response(svg, media_type="image/svg+xml")

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(self, request: Request) -> Response:
        if self.scheduler.ready.is_set():
            return JSONResponse({"status": "ready", "voice": self.engine.default_voice})
        status = "failed" if self.scheduler.failure else "loading"
        return JSONResponse({"status": status, "voice": self.engine.default_voice}, 503)

    # -- behind the key -------------------------------------------------------------------------
    async def metrics_text(self, request: Request) -> Response:
        self._check_key(request)
        return PlainTextResponse(self.metrics.render(), media_type="text/plain; version=0.0.4")

    async def models(self, request: Request) -> Response:
        self._check_key(request)
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "ttscli"} for m in MODELS]
        return JSONResponse({"object": "list", "data": data})

    async def voices(self, request: Request) -> Response:
        self._check_key(request)
        names = await asyncio.to_thread(self.engine.installed_voices)
        default = self.engine.default_voice
        return JSONResponse(
            {
                "voices": [{"id": n, "name": n} for n in names],
                "default": default,
                "formats": list(self.formats),
            }
        )

    async def normalize(self, request: Request) -> Response:
        self._check_key(request)
        data = parse_json_body(await _read_body(request))
        text = data.get("input", data.get("text"))
        if not isinstance(text, str):
            raise ApiError(400, "'input' must be a string (the text to read)", "input")
        check_text(text, self.settings.max_chars, "input")
        return JSONResponse({"input": text, "normalized": self.engine.normalize(text)})

    async def speech(self, request: Request) -> Response:
        self._check_key(request)
        data = parse_json_body(await _read_body(request))
        spoken = parse_speech(data, self.formats, self.settings.max_chars)
        return await self._answer(request, spoken)

    async def api_tts(self, request: Request) -> Response:
        self._check_key(request, allow_query=True)
        spoken = parse_query(request.query_params, self.formats, self.settings.max_chars)
        return await self._answer(request, spoken)

    # -- answers --------------------------------------------------------------------------------
    async def _answer(self, request: Request, spoken) -> Response:
        speech = Speech(
            self.scheduler, spoken, self.settings.timeout_seconds, self.metrics,
            streamed=spoken.stream_format is not None,
        )  # fmt: skip
        await speech.start()
        watcher = asyncio.create_task(_cancel_on_disconnect(request, speech))
        rate = output_rate_hz(spoken.response_format, speech.sample_rate)
        headers = {"X-Sample-Rate": str(rate)}
        try:
            if spoken.stream_format is None:
                audio = await speech.whole()
                body = await asyncio.to_thread(
                    encode_whole, audio, speech.sample_rate, spoken.response_format
                )
                headers["X-Audio-Seconds"] = f"{speech.audio_seconds:.3f}"
                return Response(body, media_type=CONTENT_TYPES[spoken.response_format],
                                headers=headers)  # fmt: skip
            stream = _stream(speech, spoken.response_format, spoken.stream_format == "sse")
            first = await anext(stream)  # errors before any audio still get their status
        except BaseException:
            watcher.cancel()
            speech.cancel()
            raise
        media_type = (
            "text/event-stream" if spoken.stream_format == "sse"
            else CONTENT_TYPES[spoken.response_format]
        )  # fmt: skip
        return StreamingResponse(_prepend(first, stream, watcher), media_type=media_type,
                                 headers=headers)  # fmt: skip

    def _check_key(self, request: Request, allow_query: bool = False) -> None:
        """401 unless the request carries the server's key (compared in constant time)."""
        key = self.settings.api_key
        if not key:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer":
            token = ""
        if not token and allow_query:
            token = request.query_params.get("api_key", "")
        if not hmac.compare_digest(token.strip().encode(), key.encode()):
            raise ApiError(
                401, "a valid API key is needed: send 'Authorization: Bearer KEY'",
                headers={"WWW-Authenticate": "Bearer"},
            )  # fmt: skip


async def _stream(speech: Speech, fmt: str, sse: bool):
    """The body of a streamed answer: container bytes, or server-sent events carrying them."""
    encoder = StreamEncoder(fmt, speech.sample_rate)
    pending = encoder.start()
    async for chunk in speech.chunks():
        data = pending + await asyncio.to_thread(encoder.encode, chunk.audio)
        pending = b""
        if data:
            yield _sse_delta(data) if sse else data
    data = pending + encoder.finish()
    if data:
        yield _sse_delta(data) if sse else data
    if sse:
        done = {
            "type": "speech.audio.done",
            "usage": {"input_tokens": len(speech.request.text), "output_tokens": 0,
                      "total_tokens": len(speech.request.text)},
            "audio_seconds": round(speech.audio_seconds, 3),
            "first_audio_seconds": round(speech.first_audio_seconds or 0.0, 3),
        }  # fmt: skip
        yield f"data: {json.dumps(done)}\n\n".encode()


def _sse_delta(data: bytes) -> bytes:
    event = {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode("ascii")}
    return f"data: {json.dumps(event)}\n\n".encode()


async def _prepend(first: bytes, rest, watcher: asyncio.Task):
    try:
        yield first
        async for data in rest:
            yield data
    except ApiError as exc:  # the status is sent already: end the stream early
        log.warning("streamed answer cut short: %s", exc.message)
    finally:
        watcher.cancel()
        await rest.aclose()


async def _cancel_on_disconnect(request: Request, speech: Speech) -> None:
    """Stop a request's rendering as soon as its client disconnects."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            speech.cancel()
            return


async def _read_body(request: Request) -> bytes:
    """The request's body, or a 413 as soon as it passes MAX_BODY_BYTES."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiError(413, f"the request body is over {MAX_BODY_BYTES // 1024} KiB")
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(413, f"the request body is over {MAX_BODY_BYTES // 1024} KiB")
    return bytes(body)


# -- errors -----------------------------------------------------------------------------------
async def _api_error(request: Request, exc: ApiError) -> Response:
    return JSONResponse(exc.body(), exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    error = ApiError(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))
    return JSONResponse(error.body(), exc.status_code, headers=error.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    error_id = uuid.uuid4().hex[:12]
    log.error("error %s on %s %s", error_id, request.method, request.url.path, exc_info=exc)
    error = ApiError(500, f"internal server error (error id {error_id}; see the server's log)")
    return JSONResponse(error.body(), 500, headers={"X-Error-Id": error_id})


class _CountRequests:
    """ASGI wrapper counting answers by route and status for the metrics."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [500]

        async def counting_send(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            path = scope.get("path", "")
            self.metrics.request_done(path if path in ROUTES else "other", status[0])
