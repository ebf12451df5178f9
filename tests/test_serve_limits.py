"""`ttscli serve`'s limits and safety: API key, CORS, 413, 429, 504, 500 with an error id."""

from __future__ import annotations

import logging
import signal
import threading
import time

import pytest
import torch

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from serve_harness import RunningServer, decode  # noqa: E402

KEY = "open-sesame"
AUTH = {"Authorization": f"Bearer {KEY}"}
ORIGIN = "http://allowed.test"
LONG = " ".join(f"Sentence number {n} is here to take time." for n in range(7))
VERY_LONG = " ".join(f"This is sentence {n}, which takes its time too." for n in range(80))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = RunningServer(
        tmp_path_factory.mktemp("serve-limits"),
        "--api-key", KEY, "--max-queue", "1", "--max-chars", "4000", "--timeout", "1.5",
        "--cors-origin", ORIGIN,
    )  # fmt: skip
    yield running
    running.stop()


def test_the_key_is_needed_except_for_health_and_ready(server):
    url = server.url
    body = {"input": "Hello there, friend."}
    assert httpx.post(f"{url}/v1/audio/speech", json=body).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert httpx.post(f"{url}/v1/audio/speech", json=body, headers=wrong).status_code == 401
    basic = {"Authorization": f"Basic {KEY}"}
    assert httpx.post(f"{url}/v1/audio/speech", json=body, headers=basic).status_code == 401
    for path in ("/v1/audio/voices", "/v1/models", "/metrics"):
        assert httpx.get(f"{url}{path}").status_code == 401, path
        assert httpx.get(f"{url}{path}", headers=AUTH).status_code == 200, path
    assert httpx.get(f"{url}/health").status_code == 200
    assert httpx.get(f"{url}/ready").status_code == 200
    answer = httpx.post(f"{url}/v1/audio/speech", json=body, headers=AUTH, timeout=60)
    assert answer.status_code in (200, 504)  # 1.5 s is short on a busy machine


def test_api_tts_takes_the_key_in_its_query(server):
    params = {"text": "Hi there, friend."}
    assert httpx.get(f"{server.url}/api/tts", params=params).status_code == 401
    answer = httpx.get(f"{server.url}/api/tts", params={**params, "api_key": KEY}, timeout=60)
    assert answer.status_code in (200, 504)
    if answer.status_code == 200:
        assert decode(answer.content, "wav")[1] == 22050


def test_cors_answers_only_the_allowed_origin(server):
    preflight = {"Access-Control-Request-Method": "POST", "Origin": ORIGIN}
    allowed = httpx.options(f"{server.url}/v1/audio/speech", headers=preflight)
    assert allowed.headers.get("access-control-allow-origin") == ORIGIN
    other = httpx.options(
        f"{server.url}/v1/audio/speech", headers={**preflight, "Origin": "http://evil.test"}
    )
    assert other.headers.get("access-control-allow-origin") is None


def test_text_over_max_chars_is_413_naming_the_limit(server):
    answer = httpx.post(f"{server.url}/v1/audio/speech", json={"input": "a" * 4001}, headers=AUTH)
    assert answer.status_code == 413 and "4,000" in answer.json()["error"]["message"]


def test_a_full_queue_answers_429_at_once(server):
    answers = []
    together = threading.Barrier(6)

    def ask():
        with httpx.Client(timeout=60, headers=AUTH) as http:
            http.get(f"{server.url}/health")  # connected before the clock starts
            together.wait()
            started = time.monotonic()
            answer = http.post(f"{server.url}/v1/audio/speech", json={"input": LONG})
            answers.append((answer, time.monotonic() - started))

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(a.status_code for a, _ in answers)
    assert set(statuses) <= {200, 429, 504}, statuses
    refused = [(a, t) for a, t in answers if a.status_code == 429]
    assert refused, statuses
    for answer, seconds in refused:
        assert answer.headers["retry-after"].isdigit()
        assert seconds < 1.0, seconds


def test_the_deadline_is_504(server):
    assert len(VERY_LONG) < 4000
    answer = httpx.post(
        f"{server.url}/v1/audio/speech", json={"input": VERY_LONG}, headers=AUTH, timeout=60
    )
    assert answer.status_code == 504, answer.text
    assert "longer" in answer.json()["error"]["message"]


def test_ctrl_c_exits_0(server):
    assert server.stop(signal.SIGINT) == 0
    assert "Traceback" not in server.log()


def test_an_unexpected_error_is_500_with_an_id_and_no_traceback(caplog):
    from starlette.testclient import TestClient

    from ttscli.serve.app import Settings, build_app
    from ttscli.serve.scheduler import Scheduler

    class BrokenEngine:
        default_voice = "v"

        def resolve_voice(self, name):
            raise RuntimeError("secret internals")

    app = build_app(Scheduler(BrokenEngine()), Settings())
    with caplog.at_level(logging.ERROR), TestClient(app, raise_server_exceptions=False) as http:
        answer = http.post("/v1/audio/speech", json={"input": "Hello."})
    assert answer.status_code == 500
    message = answer.json()["error"]["message"]
    assert "secret" not in answer.text and "Traceback" not in answer.text
    error_id = answer.headers["x-error-id"]
    assert error_id in message and error_id in caplog.text


def test_cli_refuses_a_wrong_wyoming_address():
    from click.testing import CliRunner

    from ttscli.cli import cli

    result = CliRunner().invoke(cli, ["serve", "--wyoming", "localhost:10200"])
    assert result.exit_code == 2 and "tcp://HOST:PORT" in result.output


def test_cli_says_when_the_port_is_taken():
    import socket

    from click.testing import CliRunner

    from ttscli.cli import cli

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["serve", "--port", str(port), "--voice", "ttscli-en"])
    assert result.exit_code == 1 and f"cannot listen on 127.0.0.1:{port}" in result.output


def test_cli_exits_1_when_the_default_voice_cannot_be_loaded():
    from click.testing import CliRunner

    from ttscli.cli import cli

    result = CliRunner().invoke(cli, ["serve", "--port", "0", "--voice", "no-such-voice"])
    assert result.exit_code == 1 and "no-such-voice" in result.output


@pytest.mark.skipif(torch.cuda.device_count() > 1, reason="needs a machine without cuda:1")
def test_a_gpu_this_machine_lacks_is_one_line_without_a_traceback(capfd):
    from click.testing import CliRunner

    from ttscli.cli import cli

    result = CliRunner().invoke(cli, ["serve", "--port", "0", "--device", "cuda:1"])
    logged = capfd.readouterr().err
    assert result.exit_code == 1
    assert "cuda:1" in result.output and "CUDA" in result.output
    assert "Traceback" not in result.output + logged


def test_ready_is_503_until_the_voice_is_warm():
    from starlette.testclient import TestClient

    from ttscli.serve.app import Settings, build_app
    from ttscli.serve.scheduler import Scheduler

    class ColdEngine:
        default_voice = "v"

    scheduler = Scheduler(ColdEngine())  # never started: the voice is not loaded
    with TestClient(build_app(scheduler, Settings(api_key=KEY))) as http:
        assert http.get("/ready").status_code == 503
        assert http.get("/health").status_code == 200
        scheduler.ready.set()
        assert http.get("/ready").status_code == 200
