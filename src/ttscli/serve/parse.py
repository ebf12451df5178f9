"""Reading and checking speech requests: OpenAI's JSON body and the /api/tts query."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from .errors import ApiError

MAX_BODY_BYTES = 64 * 1024
SPEED_RANGE = (0.25, 4.0)
STREAM_FORMATS = ("audio", "sse")


@dataclass(frozen=True)
class SpeechRequest:
    """One request for speech, checked; `voice` is the name asked for (None: the default)."""

    text: str
    voice: str | None = None
    response_format: str = "wav"
    speed: float = 1.0
    stream_format: str | None = None
    seed: int | None = None


def parse_json_body(body: bytes) -> dict:
    """The JSON object in a request body, or a 400 (or 413 when over MAX_BODY_BYTES)."""
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(413, f"the request body is over {MAX_BODY_BYTES // 1024} KiB")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return data


def parse_speech(data: dict, formats: tuple[str, ...], max_chars: int) -> SpeechRequest:
    """OpenAI's /v1/audio/speech fields; unknown fields are ignored, a known one with a wrong
    type or value is a 400 naming it, text over max_chars a 413."""
    text = data.get("input")
    if not isinstance(text, str):
        raise ApiError(400, "'input' must be a string (the text to speak)", "input")
    check_text(text, max_chars, "input")
    if "model" in data and not isinstance(data["model"], str):
        raise ApiError(400, "'model' must be a string", "model")
    response_format = _optional(data, "response_format", str) or "wav"
    if response_format not in formats:
        raise ApiError(
            400,
            f"response_format {response_format!r} is not supported here; "
            f"choose one of {', '.join(formats)}",
            "response_format",
        )
    stream_format = _optional(data, "stream_format", str)
    if stream_format is not None and stream_format not in STREAM_FORMATS:
        raise ApiError(400, "'stream_format' must be 'audio' or 'sse'", "stream_format")
    return SpeechRequest(
        text=text,
        voice=_voice_name(data.get("voice")),
        response_format=response_format,
        speed=_speed(data.get("speed")),
        stream_format=stream_format,
        seed=_seed(data.get("seed")),
    )


def check_text(text: str, max_chars: int, param: str) -> None:
    """A 400 for text with nothing in it, a 413 for text over max_chars."""
    if not text.strip():
        raise ApiError(400, f"'{param}' is empty: give something to say", param)
    if len(text) > max_chars:
        raise ApiError(
            413,
            f"'{param}' has {len(text):,} characters; this server takes at most {max_chars:,}",
            param,
        )


def _optional(data: dict, name: str, kind: type):
    value = data.get(name)
    if value is not None and not isinstance(value, kind):
        raise ApiError(400, f"'{name}' must be a {kind.__name__}", name)
    return value


def _voice_name(value: object) -> str | None:
    """A voice given as a name or as {"id": name}."""
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get("id")
    if not isinstance(value, str):
        raise ApiError(400, "'voice' must be a voice name or an object {\"id\": name}", "voice")
    return value


def _speed(value: object) -> float:
    if value is None:
        return 1.0
    low, high = SPEED_RANGE
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or not low <= value <= high:
        raise ApiError(400, f"'speed' must be a number from {low} to {high}", "speed")
    return float(value)


def _seed(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise ApiError(400, "'seed' must be an integer from 0 to 2**63 - 1", "seed")
    return value


def parse_query(params, formats: tuple[str, ...], max_chars: int) -> SpeechRequest:
    """Coqui's GET /api/tts?text=...&voice=... (a WAV unless `format` names another)."""
    text = params.get("text")
    if text is None:
        raise ApiError(400, "'text' is missing from the query", "text")
    check_text(text, max_chars, "text")
    response_format = params.get("format") or "wav"
    if response_format not in formats:
        raise ApiError(
            400, f"format {response_format!r} is not supported; choose one of "
            f"{', '.join(formats)}", "format",
        )  # fmt: skip
    speed = params.get("speed")
    seed = params.get("seed")
    try:
        speed = _speed(float(speed)) if speed is not None else 1.0
    except ValueError as exc:
        raise ApiError(400, "'speed' must be a number from 0.25 to 4.0", "speed") from exc
    try:
        seed = _seed(int(seed)) if seed is not None else None
    except ValueError as exc:
        raise ApiError(400, "'seed' must be an integer", "seed") from exc
    return SpeechRequest(
        text=text,
        voice=params.get("voice") or None,
        response_format=response_format,
        speed=speed,
        seed=seed,
    )
