"""The cross-request scheduler, with a stand-in engine that records each batch."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from ttscli.errors import TextError
from ttscli.pausing import pause_point
from ttscli.serve.engine import Rendered, VoiceFacts
from ttscli.serve.scheduler import Job, QueueFull, Scheduler

RATE = 1000


class RecordingEngine:
    """Splits at '|', renders each piece as len(text) ms of audio; `gate` holds batches, which
    wait for it step by step, with a pause point at each step as a decoder has (a render
    within a render, an interruption, is not held)."""

    default_voice = "v"

    def __init__(self, batch_size: int = 4) -> None:
        self.batch_size = batch_size
        self.batches: list[tuple[list[str], int | None]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.rendering = threading.Event()
        self.lanes: list[int] = []
        self.active = 0
        self.seeded_running = False
        self.seeded_beside: list[int] = []  # per seeded render: others under way (-1: began after)
        self._lock = threading.Lock()
        self._thread = threading.local()

    def facts(self, name):
        return VoiceFacts(name, RATE, self.batch_size, 0.0, 100, "dle")

    def warm_up(self, name, lane=0):
        pass

    def split(self, text, facts):
        pieces = [p for p in text.split("|") if p]
        if not pieces:
            raise TextError("nothing to say")
        return pieces

    def render(self, name, texts, speed, seed, lane=0):
        with self._lock:
            self.active += 1
            if seed is not None:
                self.seeded_beside.append(self.active - 1)  # other renders under way
            elif self.seeded_running:
                self.seeded_beside.append(-1)
            self.seeded_running = self.seeded_running or seed is not None
        self.rendering.set()
        deadline = time.monotonic() + 10
        nested = getattr(self._thread, "inside", False)  # an interruption: not held
        self._thread.inside = True
        while not nested and not self.gate.wait(0.002) and time.monotonic() < deadline:
            pause_point()  # a decoder step
        self._thread.inside = nested
        with self._lock:
            self.active -= 1
            self.seeded_running = self.seeded_running and seed is None
            self.batches.append((list(texts), seed))
            self.lanes.append(lane)
        return [Rendered(np.zeros(len(t), np.float32)) for t in texts]


class Collector:
    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.done = threading.Event()
        self.count = None

    def __call__(self, event):
        self.events.append(event)
        if event[0] == "split":
            self.count = event[1]
        if event[0] == "error" or sum(e[0] == "piece" for e in self.events) == self.count:
            self.done.set()


@pytest.fixture
def engine():
    return RecordingEngine()


@pytest.fixture
def scheduler(engine):
    scheduler = Scheduler(engine, max_queue=3)
    scheduler.start()
    assert scheduler.ready.wait(5)
    yield scheduler
    engine.gate.set()
    scheduler.stop(timeout=10)


def _job(text, seed=None, **kwargs):
    collector = Collector()
    return Job(voice="v", text=text, emit=collector, seed=seed, **kwargs), collector


def _hold(engine, scheduler, seed=None):
    """Keep the scheduler busy rendering a blocker batch until engine.gate is set (a seeded
    one is not interrupted)."""
    engine.gate.clear()
    engine.rendering.clear()
    job, _ = _job("blocker", seed=seed)
    scheduler.submit(job)
    assert engine.rendering.wait(5)
    return job


def test_streamed_first_sentences_go_first_and_alone(engine, scheduler):
    _hold(engine, scheduler, seed=1)
    whole, whole_out = _job("w" * 10 + "|" + "x" * 10)
    long_job, long_out = _job("a" * 40 + "|" + "b" * 40 + "|" + "c" * 5, streamed=True)
    short_job, short_out = _job("e" * 6 + "|" + "f" * 7, streamed=True)
    for job in (whole, long_job, short_job):
        scheduler.submit(job)
    time.sleep(0.05)
    engine.gate.set()
    assert all(out.done.wait(5) for out in (whole_out, long_out, short_out))
    # the streamed requests' first sentences together, before anything else
    assert engine.batches[1] == (["a" * 40, "e" * 6], None)


def test_similar_lengths_are_batched_together():
    engine = RecordingEngine(batch_size=2)
    scheduler = Scheduler(engine)
    scheduler.start()
    try:
        _hold(engine, scheduler)
        jobs = [_job(text) for text in ("a" * 40 + "|" + "a" * 5, "b" * 6 + "|" + "b" * 38,
                                        "c" * 7)]  # fmt: skip
        for job, _ in jobs:
            scheduler.submit(job)
        time.sleep(0.05)
        engine.gate.set()
        assert all(out.done.wait(5) for _, out in jobs)
        batches = [texts for texts, _ in engine.batches[1:]]
        # the oldest request's first piece leads, with the piece closest to it in length
        assert batches == [["a" * 40, "b" * 38], ["a" * 5, "b" * 6], ["c" * 7]]
    finally:
        engine.gate.set()
        scheduler.stop(timeout=10)


def test_a_streamed_request_gets_more_pieces_per_batch_as_it_goes(engine, scheduler):
    job, out = _job("|".join(f"p{n}" for n in range(7)), streamed=True)
    scheduler.submit(job)
    assert out.done.wait(5)
    assert [texts for texts, _ in engine.batches[-4:]] == [
        ["p0"],
        ["p1"],
        ["p2", "p3"],
        ["p4", "p5", "p6"],
    ]


def test_a_whole_request_fills_batches_at_once(engine, scheduler):
    job, out = _job("|".join(f"p{n}" for n in range(6)))
    scheduler.submit(job)
    assert out.done.wait(5)
    assert [texts for texts, _ in engine.batches[-2:]] == [["p0", "p1", "p2", "p3"], ["p4", "p5"]]


def test_pieces_come_back_with_their_index_and_audio(engine, scheduler):
    job, out = _job("xx|yyy|z")
    scheduler.submit(job)
    assert out.done.wait(5)
    split = out.events[0]
    assert split[0] == "split" and split[1] == 3 and split[2].sample_rate == RATE
    got = {e[1]: len(e[2].audio) for e in out.events if e[0] == "piece"}
    assert got == {0: 2, 1: 3, 2: 1}


def test_a_batch_waits_briefly_for_more_pieces(engine, scheduler):
    first, out1 = _job("one")
    second, out2 = _job("two")
    scheduler.submit(first)
    scheduler.submit(second)  # within the 10 ms wait: the same batch
    assert out1.done.wait(5) and out2.done.wait(5)
    assert engine.batches[-1][0] == ["one", "two"]


def test_after_a_batch_the_next_waits_for_the_requests_its_answers_bring():
    engine = RecordingEngine()
    scheduler = Scheduler(engine, batch_wait_seconds=0.3)
    scheduler.start()
    try:
        _hold(engine, scheduler)
        early, early_out = _job("early")  # waits through the blocker: older than 0.3 s
        scheduler.submit(early)
        time.sleep(0.35)
        engine.gate.set()
        time.sleep(0.05)  # the blocker's answer came back; a client sends its next text
        late, late_out = _job("late")
        scheduler.submit(late)
        assert early_out.done.wait(5) and late_out.done.wait(5)
        assert engine.batches[-1][0] == ["early", "late"]
    finally:
        engine.gate.set()
        scheduler.stop(timeout=10)


def test_a_streamed_first_sentence_does_not_wait_for_the_batch_in_progress(engine, scheduler):
    _hold(engine, scheduler)
    streamed, out = _job("first|second", streamed=True)
    scheduler.submit(streamed)
    first_piece = lambda: [e for e in out.events if e[0] == "piece"]  # noqa: E731
    deadline = time.monotonic() + 5
    while not first_piece() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [e[1] for e in first_piece()] == [0]  # rendered between the blocker's steps
    assert not any(texts == ["blocker"] for texts, _ in engine.batches)  # still going
    engine.gate.set()
    assert out.done.wait(5)
    assert engine.lanes[0] == 1 and engine.batches[0][0] == ["first"]  # the interruption lane


def test_a_seeded_batch_is_never_interrupted(engine, scheduler):
    engine.gate.clear()
    seeded, out = _job("s1|s2", seed=3)
    scheduler.submit(seeded)
    assert engine.rendering.wait(5)
    streamed, streamed_out = _job("now", streamed=True)
    scheduler.submit(streamed)
    time.sleep(0.1)
    assert not [e for e in streamed_out.events if e[0] == "piece"]
    engine.gate.set()
    assert out.done.wait(5) and streamed_out.done.wait(5)
    assert [texts for texts, _ in engine.batches] == [["s1", "s2"], ["now"]]


def test_a_seeded_job_is_batched_alone(engine, scheduler):
    _hold(engine, scheduler)
    seeded, out = _job("s1|s2|s3", seed=4)
    other, other_out = _job("o1|o2")
    scheduler.submit(seeded)
    scheduler.submit(other)
    time.sleep(0.05)
    engine.gate.set()
    assert out.done.wait(5) and other_out.done.wait(5)
    for texts, seed in engine.batches[1:]:
        kinds = {t[0] for t in texts}
        assert kinds == {"s"} and seed == 4 or kinds == {"o"} and seed is None, (texts, seed)
    assert (["s1", "s2", "s3"], 4) in engine.batches


def test_two_render_threads_share_the_work_and_a_seeded_batch_renders_alone():
    engine = RecordingEngine(batch_size=4)  # 2 pieces per batch on each of 2 threads
    scheduler = Scheduler(engine, workers=2)
    scheduler.start()
    try:
        assert scheduler.ready.wait(5)
        engine.gate.clear()
        jobs = [_job(f"a{n}|b{n}|c{n}") for n in range(4)]
        jobs.append(_job("s1|s2", seed=9))
        jobs += [_job(f"d{n}|e{n}") for n in range(4)]
        for job, _ in jobs:
            scheduler.submit(job)
        time.sleep(0.1)
        assert engine.active == 2  # both threads render at once
        engine.gate.set()
        assert all(out.done.wait(10) for _, out in jobs)
        assert {0, 1} <= set(engine.lanes)
        assert max(len(texts) for texts, _ in engine.batches) == 2
        assert engine.seeded_beside == [0]  # nothing rendered beside the seeded batch
    finally:
        engine.gate.set()
        scheduler.stop(timeout=10)


def test_a_cancelled_job_frees_its_queued_pieces(engine, scheduler):
    _hold(engine, scheduler)
    job, out = _job("|".join(f"piece{n}" for n in range(10)))
    scheduler.submit(job)
    time.sleep(0.05)
    assert scheduler.metrics.queued_pieces == 10
    scheduler.cancel(job)
    assert scheduler.metrics.queued_pieces == 0
    engine.gate.set()
    time.sleep(0.1)
    assert not any(t.startswith("piece") for texts, _ in engine.batches for t in texts)
    assert not [e for e in out.events if e[0] == "piece"]


def test_a_full_queue_refuses_at_once(engine, scheduler):
    _hold(engine, scheduler)
    for _ in range(3):
        scheduler.submit(_job("waiting")[0])
    started = time.monotonic()
    with pytest.raises(QueueFull):
        scheduler.submit(_job("one too many")[0])
    assert time.monotonic() - started < 0.1
    engine.gate.set()


def test_a_late_job_is_dropped(engine, scheduler):
    _hold(engine, scheduler)
    job, out = _job("late|later", deadline=time.monotonic() + 0.05)
    scheduler.submit(job)
    time.sleep(0.1)
    engine.gate.set()
    time.sleep(0.1)
    assert not [e for e in out.events if e[0] == "piece"]
    assert scheduler.waiting == 0


def test_nothing_to_say_is_an_error_event(engine, scheduler):
    job, out = _job("||")
    scheduler.submit(job)
    assert out.done.wait(5)
    assert out.events[0][0] == "error" and isinstance(out.events[0][1], TextError)
    assert scheduler.waiting == 0
