"""The server's web page in a real browser: Debian's chromium driven by playwright
(`make test-browser`; skipped without them)."""

from __future__ import annotations

import os
import shutil

import pytest

pytest.importorskip("starlette")
playwright_sync = pytest.importorskip("playwright.sync_api")

from serve_harness import RunningServer  # noqa: E402

pytestmark = pytest.mark.slow  # a browser start is slow; `make test-browser` runs it


def _chromium() -> str:
    path = (
        os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    if not path:
        pytest.skip("no chromium (make test-browser installs Debian's)")
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = RunningServer(tmp_path_factory.mktemp("serve-browser"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def page(server):
    with playwright_sync.sync_playwright() as play:
        browser = play.chromium.launch(
            executable_path=_chromium(),
            args=["--autoplay-policy=no-user-gesture-required", "--no-sandbox"],
        )
        page = browser.new_page()
        page.console_errors = []
        page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
        page.on("pageerror", lambda e: page.console_errors.append(str(e)))
        page.goto(server.url)
        yield page
        browser.close()


def test_the_voice_list_loads(page):
    page.wait_for_function("document.querySelectorAll('#voice option').length > 0")
    assert page.eval_on_selector("#voice", "s => s.value") == "ttscli-en"
    page.wait_for_function("document.getElementById('preview').textContent.length > 0")


def test_speaking_streams_and_plays_audio(page):
    page.fill("#text", "Hello from the browser. A second sentence follows it.")
    page.click("#speak")
    page.wait_for_function("window.ttscli.done", timeout=120_000)
    assert page.inner_text("#error") == ""
    state = page.evaluate(
        "({first: ttscli.firstAudioSeconds, page: ttscli.audioSeconds,"
        " server: ttscli.serverAudioSeconds, context: ttscli.context.currentTime})"
    )
    assert state["first"] is not None and state["first"] > 0
    assert state["server"] > 1.0
    assert abs(state["page"] - state["server"]) < 0.01
    assert page.inner_text("#ttfa").endswith(" s") and page.inner_text("#rtf") != "..."
    # the streamed audio is playing: the audio clock moves
    page.wait_for_function(f"ttscli.context.currentTime > {state['context']} + 0.2")
    # the finished recording has the server's duration and plays
    page.wait_for_function("isFinite(document.getElementById('audio').duration)")
    duration = page.eval_on_selector("#audio", "a => a.duration")
    assert abs(duration - state["server"]) < 0.01
    page.eval_on_selector("#audio", "a => a.play()")
    page.wait_for_function("document.getElementById('audio').currentTime > 0.2")


def test_no_console_errors(page):
    assert page.console_errors == []
