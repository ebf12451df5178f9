"""The `make bench` serve section: concurrent clients against a real server vs. the library."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time

SENTENCES = [
    "The train leaves at noon from the second platform.",
    "Please remember to water the plants on Friday.",
    "A light rain is expected later this evening.",
    "Her report was finished well before the deadline.",
    "The museum opens its new wing next month.",
    "We walked along the river until the sun went down.",
    "Turn left at the bakery and the office is on your right.",
    "The meeting has been moved to the large room upstairs.",
    "Fresh bread is baked here every morning.",
    "The children built a small boat out of paper.",
    "Your package should arrive by the end of the week.",
    "The library stays open late on Thursdays.",
]
CLIENTS = 8
REQUESTS_PER_CLIENT = 20
SEED = 42
MAX_QUEUE = 16
BURST = 48  # requests sent at once to see the queue refuse them
PROBE_INTERVAL_SECONDS = 1.0  # the 9th client's requests: one per interval


def requests_for(count: int, salt: int) -> list[str]:
    """`count` texts of one or two sentences, the same for a given salt."""
    pick = random.Random(salt)
    return [" ".join(pick.sample(SENTENCES, pick.choice((1, 2)))) for _ in range(count)]


def bench_serve(quick: bool = False) -> dict:
    """8 clients x 20 requests (quick: x 2) through the server vs. the library one at a time;
    a 9th client's streamed time to first audio; 429s beyond the queue; seeded determinism."""
    import importlib.util

    for module in ("starlette", "uvicorn", "httpx"):
        if importlib.util.find_spec(module) is None:
            from .sections import Skip

            raise Skip(f"needs {module}: pip install -e '.[serve,test]'")
    per_client = 2 if quick else REQUESTS_PER_CLIENT
    loads = [requests_for(per_client, salt) for salt in range(CLIENTS)]
    figures = {"clients": CLIENTS, "requests_per_client": per_client}
    figures["library_audio_s_per_s"] = _library_rate([t for texts in loads for t in texts])
    server = _Server(["--max-queue", str(MAX_QUEUE)])
    with server as url:
        figures.update(asyncio.run(_load(url, loads)))
    if figures["errors"] or server.logged_errors:
        figures["server_log_errors"] = server.logged_errors or "none"
    figures["server_vs_library"] = figures["load_audio_s_per_s"] / figures["library_audio_s_per_s"]
    figures["server_vs_single_client"] = (
        figures["load_audio_s_per_s"] / figures["single_client_audio_s_per_s"]
    )
    return figures


def _library_rate(texts: list[str]) -> float:
    """Audio seconds per second of the library rendering texts one call each."""
    from ttscli.synthesizer import Synthesizer
    from ttscli.voices import load_voice

    synth = Synthesizer(load_voice("ttscli-en"))
    synth.synthesize("Warming up, 1, 2, 3.")
    started = time.perf_counter()
    audio_seconds = sum(synth.synthesize(text).audio_seconds for text in texts)
    return audio_seconds / (time.perf_counter() - started)


class _Server:
    """`ttscli serve` with the embedded voice on a free port, for a `with` block."""

    def __init__(self, args: list[str]) -> None:
        self.args = args

    def __enter__(self) -> str:
        import torch

        env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
        command = [sys.executable, "-m", "ttscli.cli", "serve", "--port", "0"]
        command += ["--voice", "ttscli-en", *self.args]
        self.log = tempfile.TemporaryFile()
        self.logged_errors = ""
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env
        )
        for line in self.process.stdout:
            match = re.search(r"ready at (http://\S+)", line)
            if match:
                return match.group(1)
        self.log.seek(0)
        raise RuntimeError(f"the server did not start: {self.log.read().decode()[-2000:]}")

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(120)
        self.log.seek(0)
        lines = self.log.read().decode(errors="replace").splitlines()
        self.logged_errors = " | ".join(line for line in lines if "Error" in line)[-1000:]
        self.log.close()


async def _load(url: str, loads: list[list[str]]) -> dict:
    import httpx

    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        seeded_alone = await _seeded(http)
        single_rate, _ = await _clients(http, loads[:1])
        stop = asyncio.Event()
        ninth = asyncio.create_task(_streaming_client(http, stop))
        seeded_loaded = asyncio.create_task(_later(_seeded(http), 1.0))
        load_rate, errors = await _clients(http, loads)
        stop.set()
        probes = await ninth
        first_audio = [first for first in probes if isinstance(first, float)]
        errors += [f"{status} (a streamed request)" for status in probes if isinstance(status, int)]
        loaded = await seeded_loaded
        identical = isinstance(loaded, bytes) and loaded == seeded_alone
        if not isinstance(loaded, bytes) or not isinstance(seeded_alone, bytes):
            identical = f"failed: status {seeded_alone} alone, {loaded} under load"
        refused, refused_seconds, burst_errors = await _burst(http)
    return {
        "single_client_audio_s_per_s": single_rate,
        "load_audio_s_per_s": load_rate,
        "errors": len(errors + burst_errors),
        "error_examples": "; ".join(sorted(set(errors + burst_errors))[:3]) or "none",
        "ninth_client_first_audio_median_s": statistics.median(first_audio or [float("nan")]),
        "ninth_client_requests": len(first_audio),
        "burst_requests": BURST,
        "burst_429": refused,
        "burst_429_slowest_s": refused_seconds,
        "seeded_identical_under_load": identical,
    }


async def _clients(http, loads: list[list[str]]) -> tuple[float, list[str]]:
    """Audio seconds per second of clients each sending its texts one after another, and
    what each failed request answered."""
    errors: list[str] = []

    async def client(texts: list[str]) -> float:
        seconds = 0.0
        for text in texts:
            answer = await http.post("/v1/audio/speech", json={"input": text})
            if answer.status_code != 200:
                errors.append(f"{answer.status_code} {answer.text[:160]}")
                continue
            seconds += float(answer.headers["x-audio-seconds"])
        return seconds

    started = time.perf_counter()
    audio_seconds = sum(await asyncio.gather(*(client(texts) for texts in loads)))
    return audio_seconds / (time.perf_counter() - started), errors


async def _streaming_client(http, stop: asyncio.Event) -> list[float | int]:
    """A streamed request every PROBE_INTERVAL_SECONDS until `stop`: each one's time to first
    audio, or its status when it failed. Open loop, as latency probes are: a client that asked
    again as soon as it was answered would load the server the more, the faster it was
    answered; one that waited for its audio to be played would ask only a few times."""
    texts = requests_for(1000, salt=99)

    async def probe(text: str) -> float | int:
        body = {"input": text, "response_format": "pcm", "stream_format": "audio"}
        started = time.perf_counter()
        first = None
        async with http.stream("POST", "/v1/audio/speech", json=body) as answer:
            async for chunk in answer.aiter_raw():
                if chunk and first is None:
                    first = time.perf_counter() - started
        return first if answer.status_code == 200 and first is not None else answer.status_code

    probes = []
    for text in texts:
        probes.append(asyncio.create_task(probe(text)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PROBE_INTERVAL_SECONDS)
        if stop.is_set():
            break
    return await asyncio.gather(*probes)


async def _seeded(http) -> bytes | int:
    """The seeded request's WAV, or its status when it failed."""
    body = {"input": SENTENCES[0] + " " + SENTENCES[1], "seed": SEED}
    answer = await http.post("/v1/audio/speech", json=body)
    return answer.content if answer.status_code == 200 else answer.status_code


async def _later(coroutine, seconds: float):
    await asyncio.sleep(seconds)
    return await coroutine


async def _burst(http) -> tuple[int, float, list[str]]:
    """BURST requests at once: how many were refused (429), the slowest refusal, errors."""

    async def one() -> tuple[int, float, str]:
        started = time.perf_counter()
        answer = await http.post("/v1/audio/speech", json={"input": SENTENCES[2]})
        return answer.status_code, time.perf_counter() - started, answer.text[:160]

    answers = await asyncio.gather(*(one() for _ in range(BURST)))
    refused = [seconds for status, seconds, _ in answers if status == 429]
    errors = [f"{status} {text}" for status, _, text in answers if status not in (200, 429)]
    return len(refused), max(refused, default=0.0), errors
