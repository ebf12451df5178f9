"""`ttscli serve` end to end: a real server on 127.0.0.1 called with the real openai client."""

from __future__ import annotations

import base64
import json
import signal
import statistics
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from serve_harness import RunningServer, decode  # noqa: E402

SENTENCE = "The quick brown fox jumps."
FIVE = (
    "The first sentence is here. A second one follows it. Then comes the third one. "
    "The fourth is nearly the last. And the fifth ends it."
)
SEED = 11
VOICE_RATE = 22050


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("serve")
    _install_voice_copy(home / "ttscli" / "voices" / "second-voice")
    running = RunningServer(home)
    yield running
    running.stop()


def _install_voice_copy(folder: Path) -> None:
    """The embedded voice again, installed under another name."""
    from ttscli.voices import EMBEDDED_DIR, EMBEDDED_VOICE

    source = EMBEDDED_DIR / EMBEDDED_VOICE
    folder.mkdir(parents=True)
    (folder / "tacotron2.pt").symlink_to(source / "tacotron2.pt")
    config = json.loads((source / "voice.json").read_text())
    (folder / "voice.json").write_text(json.dumps({**config, "name": folder.name}))


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def reference(client):
    """The seeded sentence as a whole WAV: (samples, rate)."""
    answer = client.audio.speech.create(
        model="tts-1", voice="alloy", input=SENTENCE, response_format="wav",
        extra_body={"seed": SEED},
    )  # fmt: skip
    return decode(answer.content, "wav")


def _formats(server) -> list[str]:
    return httpx.get(f"{server.url}/v1/audio/voices").json()["formats"]


def test_every_format_whole(server, client, reference):
    audio, rate = reference
    assert rate == VOICE_RATE
    seconds = len(audio) / rate
    assert 1.0 < seconds < 6.0
    formats = _formats(server)
    assert {"wav", "flac", "pcm"} <= set(formats)
    for fmt in formats:
        answer = client.audio.speech.create(
            model="tts-1-hd", voice="ttscli-en", input=SENTENCE, response_format=fmt,
            extra_body={"seed": SEED},
        )  # fmt: skip
        assert answer.response.headers["content-length"] == str(len(answer.content))
        got, got_rate = decode(answer.content, fmt)
        assert got_rate == {"pcm": 24000, "opus": 24000}.get(fmt, VOICE_RATE), fmt
        assert int(answer.response.headers["x-sample-rate"]) == got_rate
        slack = 0.15 if fmt in ("mp3", "opus") else 0.01  # codec delay and padding
        assert abs(len(got) / got_rate - seconds) < slack, (fmt, len(got) / got_rate, seconds)


def test_every_format_streamed(server, client, reference):
    audio, rate = reference
    seconds = len(audio) / rate
    for fmt in _formats(server):
        with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input=SENTENCE, response_format=fmt,
            stream_format="audio", extra_body={"seed": SEED},
        ) as answer:  # fmt: skip
            assert "content-length" not in answer.headers
            data = b"".join(answer.iter_bytes())
        if fmt == "wav":
            assert data[4:8] == b"\xff\xff\xff\xff" and data[40:44] == b"\xff\xff\xff\xff"
        got, got_rate = decode(data, fmt)
        slack = 0.15 if fmt in ("mp3", "opus") else 0.01
        assert abs(len(got) / got_rate - seconds) < slack, (fmt, len(got) / got_rate, seconds)


def test_sse_events_carry_the_audio(client, reference):
    audio, rate = reference
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=SENTENCE, response_format="pcm",
        stream_format="sse", extra_body={"seed": SEED},
    ) as answer:  # fmt: skip
        assert answer.headers["content-type"].startswith("text/event-stream")
        text = answer.read().decode()
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    assert [e["type"] for e in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1)
    assert events[-1]["type"] == "speech.audio.done"
    pcm = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    got, got_rate = decode(pcm, "pcm")
    assert abs(len(got) / got_rate - len(audio) / rate) < 0.01
    assert abs(events[-1]["audio_seconds"] - len(audio) / rate) < 0.01


def test_first_audio_comes_before_half_of_the_whole_time(server):
    firsts, totals = [], []
    body = {"model": "tts-1", "input": FIVE, "response_format": "pcm", "stream_format": "audio"}
    with httpx.Client(timeout=120) as http:
        for _ in range(5):
            started = time.perf_counter()
            with http.stream("POST", f"{server.url}/v1/audio/speech", json=body) as answer:
                assert answer.status_code == 200
                first = None
                for chunk in answer.iter_raw():
                    if chunk and first is None:
                        first = time.perf_counter() - started
            totals.append(time.perf_counter() - started)
            firsts.append(first)
    assert statistics.median(firsts) < 0.5 * statistics.median(totals), (firsts, totals)


def test_speed_scales_the_duration(client, reference):
    audio, rate = reference
    answer = client.audio.speech.create(
        model="tts-1", voice="alloy", input=SENTENCE, response_format="wav", speed=2.0,
        extra_body={"seed": SEED},
    )  # fmt: skip
    fast, fast_rate = decode(answer.content, "wav")
    assert 0.4 < (len(fast) / fast_rate) / (len(audio) / rate) < 0.65


def test_seeded_audio_is_the_same_alone_and_under_load(server, reference):
    audio, _ = reference
    answers = {}

    def ask(name, payload):
        answers[name] = httpx.post(f"{server.url}/v1/audio/speech", json=payload, timeout=120)

    seeded = {"input": SENTENCE, "response_format": "wav", "seed": SEED}
    others = [{"input": f"Request {n} is rendered meanwhile."} for n in range(3)]
    threads = [threading.Thread(target=ask, args=(n, p)) for n, p in enumerate(others)]
    threads.append(threading.Thread(target=ask, args=("seeded", seeded)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(a.status_code == 200 for a in answers.values())
    loaded, _ = decode(answers["seeded"].content, "wav")
    assert loaded.tobytes() == audio.tobytes()


def test_another_installed_voice_is_loaded_on_first_use(server):
    voices = [v["id"] for v in httpx.get(f"{server.url}/v1/audio/voices").json()["voices"]]
    assert voices[0] == "ttscli-en" and "second-voice" in voices
    body = {"input": SENTENCE, "voice": "second-voice"}
    answer = httpx.post(f"{server.url}/v1/audio/speech", json=body, timeout=120)
    assert answer.status_code == 200, answer.text
    audio, rate = decode(answer.content, "wav")
    assert rate == VOICE_RATE and len(audio) > rate


def test_api_tts_answers_a_wav(server):
    answer = httpx.get(f"{server.url}/api/tts", params={"text": SENTENCE}, timeout=120)
    assert answer.status_code == 200 and answer.headers["content-type"] == "audio/wav"
    audio, rate = decode(answer.content, "wav")
    assert rate == VOICE_RATE and len(audio) > rate


def test_voices_models_health_ready_metrics(server):
    voices = httpx.get(f"{server.url}/v1/audio/voices").json()["voices"]
    assert {"id": "ttscli-en", "name": "ttscli-en"} in voices
    models = [m["id"] for m in httpx.get(f"{server.url}/v1/models").json()["data"]]
    assert "tts-1" in models
    assert httpx.get(f"{server.url}/health").status_code == 200
    assert httpx.get(f"{server.url}/ready").status_code == 200
    metrics = httpx.get(f"{server.url}/metrics").text
    for name in (
        "ttscli_requests_total",
        "ttscli_queue_pieces",
        "ttscli_batch_size_count",
        "ttscli_time_to_first_audio_seconds_count",
        "ttscli_real_time_factor_count",
    ):
        assert name in metrics  # fmt: skip
    batches = float(metrics.split("ttscli_batch_size_count ")[1].split()[0])
    assert batches >= 1


def test_normalize_previews_what_is_read(server):
    answer = httpx.post(f"{server.url}/api/normalize", json={"input": "Dr. Smith paid $3."})
    assert answer.status_code == 200
    assert "doctor" in answer.json()["normalized"].lower()
    assert "dollars" in answer.json()["normalized"].lower()


def test_the_page_and_its_icon(server):
    page = httpx.get(f"{server.url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    icon = httpx.get(f"{server.url}/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"


@pytest.mark.parametrize(
    "payload, status, named",
    [
        ({"input": SENTENCE, "voice": "nobody"}, 400, "ttscli-en"),
        ({"input": SENTENCE, "response_format": "aac"}, 400, "wav, flac, pcm"),
        ({"input": SENTENCE, "speed": 9}, 400, "speed"),
        ({"input": SENTENCE, "speed": "fast"}, 400, "speed"),
        ({"input": SENTENCE, "seed": -1}, 400, "seed"),
        ({"input": SENTENCE, "stream_format": "chunks"}, 400, "stream_format"),
        ({"input": 5}, 400, "input"),
        ({"voice": "alloy"}, 400, "input"),
        ({"input": "  "}, 400, "input"),
        ({"input": "!!! ???"}, 400, "nothing to say"),
        ({"input": "word " * 1000}, 413, "4,096"),
    ],
)
def test_wrong_requests_get_their_status(server, payload, status, named):
    answer = httpx.post(f"{server.url}/v1/audio/speech", json=payload, timeout=60)
    assert answer.status_code == status, answer.text
    assert named in answer.json()["error"]["message"]


def test_malformed_and_oversized_bodies(server):
    url = f"{server.url}/v1/audio/speech"
    bad = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and "JSON" in bad.json()["error"]["message"]
    big = httpx.post(url, json={"input": "a", "padding": "x" * 70_000})
    assert big.status_code == 413 and "64 KiB" in big.json()["error"]["message"]
    assert httpx.get(f"{server.url}/nowhere").status_code == 404


def test_cors_is_off_without_an_origin(server):
    preflight = {"Access-Control-Request-Method": "POST", "Origin": "http://any.test"}
    answer = httpx.options(f"{server.url}/v1/audio/speech", headers=preflight)
    assert "access-control-allow-origin" not in answer.headers


def test_unknown_fields_and_voice_objects_are_accepted(client):
    answer = client.audio.speech.create(
        model="gpt-4o-mini-tts", voice={"id": "ttscli-en"}, input="Fine.",
        instructions="Speak cheerfully.", response_format="wav",
    )  # fmt: skip
    audio, rate = decode(answer.content, "wav")
    assert rate == VOICE_RATE and len(audio) > 0


def test_a_client_that_goes_away_frees_its_queued_pieces(server):
    long_text = " ".join(f"This is sentence number {n}." for n in range(40))
    body = {"input": long_text, "response_format": "pcm", "stream_format": "audio"}
    with httpx.Client(timeout=120) as http:
        with http.stream("POST", f"{server.url}/v1/audio/speech", json=body) as answer:
            stream = answer.iter_raw()
            next(stream)  # the first sentence arrived; the rest is queued
            assert "ttscli_queue_pieces 0" not in httpx.get(f"{server.url}/metrics").text
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        metrics = httpx.get(f"{server.url}/metrics").text
        if "ttscli_queue_pieces 0" in metrics:
            break
        time.sleep(0.1)
    assert "ttscli_queue_pieces 0" in metrics


def test_sigterm_drains_the_request_in_flight_and_exits_0(server):
    body = {"input": FIVE, "response_format": "pcm", "stream_format": "audio", "seed": 5}
    with httpx.Client(timeout=120) as http:
        with http.stream("POST", f"{server.url}/v1/audio/speech", json=body) as answer:
            stream = answer.iter_raw()
            chunks = [next(stream)]
            server.process.send_signal(signal.SIGTERM)
            chunks += list(stream)
    audio, _ = decode(b"".join(chunks), "pcm")
    assert len(audio) / 24000 > 5.0  # all five sentences came (over a second each)
    assert server.process.wait(60) == 0
    assert "Traceback" not in server.log()


def test_two_render_threads_under_load_keep_seeded_audio_and_streams_whole(
    tmp_path_factory, reference
):
    audio, _ = reference  # from the one-thread server
    running = RunningServer(tmp_path_factory.mktemp("two"), "--render-threads", "2")
    try:
        answers = {}

        def ask(name, payload):
            url = f"{running.url}/v1/audio/speech"
            answers[name] = httpx.post(url, json=payload, timeout=120)

        jobs = {f"whole{n}": {"input": f"Request {n} is rendered. It has two parts."}
                for n in range(4)}  # fmt: skip
        jobs |= {f"streamed{n}": {"input": FIVE, "response_format": "pcm",
                                  "stream_format": "audio"} for n in range(2)}  # fmt: skip
        jobs["seeded"] = {"input": SENTENCE, "response_format": "wav", "seed": SEED}
        threads = [threading.Thread(target=ask, args=item) for item in jobs.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        statuses = {name: a.status_code for name, a in answers.items()}
        assert statuses == dict.fromkeys(jobs, 200), running.log()[-3000:]
        loaded, _ = decode(answers["seeded"].content, "wav")
        assert loaded.tobytes() == audio.tobytes()
        five, rate = decode(answers["streamed0"].content, "pcm")
        assert 6.0 < len(five) / rate < 20.0  # five sentences, none lost to interruptions
    finally:
        running.stop()
