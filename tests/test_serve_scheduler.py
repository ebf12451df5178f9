"""The cross-request scheduler, with a stand-in engine that records each batch."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from ttscli.errors import TextError
from ttscli.serve.engine import Rendered, VoiceFacts
from ttscli.serve.scheduler import Job, QueueFull, Scheduler

RATE = 1000


class RecordingEngine:
    """Splits at '|', renders each piece as len(text) ms of audio; `gate` holds batches."""

    default_voice = "v"

    def __init__(self, batch_size: int = 4) -> None:
        self.batch_size = batch_size
        self.batches: list[tuple[list[str], int | None]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.rendering = threading.Event()

    def facts(self, name):
        return VoiceFacts(name, RATE, self.batch_size, 0.0, 100, "dle")

    def warm_up(self, name):
        pass

    def split(self, text, facts):
        pieces = [p for p in text.split("|") if p]
        if not pieces:
            raise TextError("nothing to say")
        return pieces

    def render(self, name, texts, speed, seed):
        self.rendering.set()
        self.gate.wait(10)
        self.batches.append((list(texts), seed))
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


def _hold(engine, scheduler):
    """Keep the scheduler busy rendering a blocker batch until engine.gate is set."""
    engine.gate.clear()
    engine.rendering.clear()
    job, _ = _job("blocker")
    scheduler.submit(job)
    assert engine.rendering.wait(5)
    return job


def test_first_sentences_go_first(engine, scheduler):
    _hold(engine, scheduler)
    long_job, long_out = _job("a" * 40 + "|" + "b" * 40 + "|" + "c" * 5 + "|" + "d" * 38)
    short_job, short_out = _job("e" * 6 + "|" + "f" * 7)
    scheduler.submit(long_job)
    scheduler.submit(short_job)
    time.sleep(0.05)
    engine.gate.set()
    assert long_out.done.wait(5) and short_out.done.wait(5)
    assert engine.batches[1][0] == ["a" * 40, "e" * 6]  # each request's first sentence alone


def test_similar_lengths_are_batched_together():
    engine = RecordingEngine(batch_size=2)
    scheduler = Scheduler(engine)
    scheduler.start()
    try:
        _hold(engine, scheduler)
        jobs = [_job(text) for text in ("a" * 5 + "|" + "a" * 40, "b" * 6 + "|" + "b" * 38,
                                        "c" * 7 + "|" + "c" * 6)]  # fmt: skip
        for job, _ in jobs:
            scheduler.submit(job)
        time.sleep(0.05)
        engine.gate.set()
        assert all(out.done.wait(5) for _, out in jobs)
        batches = [texts for texts, _ in engine.batches[1:]]
        assert batches[:2] == [["a" * 5, "b" * 6], ["c" * 7]]  # first sentences, oldest first
        assert batches[2] == ["a" * 40, "b" * 38] and batches[3] == ["c" * 6]
    finally:
        engine.gate.set()
        scheduler.stop(timeout=10)


def test_a_request_gets_more_pieces_per_batch_as_it_goes(engine, scheduler):
    job, out = _job("|".join(f"p{n}" for n in range(7)))
    scheduler.submit(job)
    assert out.done.wait(5)
    assert [texts for texts, _ in engine.batches[-4:]] == [
        ["p0"],
        ["p1"],
        ["p2", "p3"],
        ["p4", "p5", "p6"],
    ]


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
    assert (["s1"], 4) in engine.batches and (["s2"], 4) in engine.batches


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
