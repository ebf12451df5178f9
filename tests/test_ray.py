"""`ttscli batch --ray`: a local Ray runtime with 2 CPUs, worker deaths, gather mode, parsing."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner
from voicekit import write_voice

from ttscli.cli import cli

N_LINES = 200


def run(*args, input=None):
    return CliRunner().invoke(cli, ["batch", *map(str, args)], input=input, catch_exceptions=False)


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def lines_file(tmp_path: Path, n: int = N_LINES) -> Path:
    src = tmp_path / "in.txt"
    src.write_text("".join(f"Line {i} of the corpus, said once.\n" for i in range(n)))
    return src


def assert_each_line_once(out: Path, n: int = N_LINES) -> None:
    manifest = rows(out)
    ids = [r["id"] for r in manifest]
    assert sorted(ids) == [f"{i:06d}" for i in range(1, n + 1)]  # exactly once each
    assert ids == sorted(ids)  # in input order
    assert {r["status"] for r in manifest} == {"ok"}
    for r in manifest:
        audio, rate = soundfile.read(out / r["file"])
        assert rate == 22050 and len(audio) > 0
    leftovers = [p.name for p in out.iterdir() if p.suffix not in (".wav", ".jsonl")]
    assert leftovers == []


# -- parsing (no Ray needed) ------------------------------------------------------------------
def test_ray_flag_does_not_swallow_the_next_option(tmp_path, monkeypatch):
    seen = {}

    def fake_pool(params, out_dir, ext):
        seen.update(params)
        raise SystemExit(0)

    monkeypatch.setattr("ttscli.cli.batch.build_ray_pool", fake_pool)
    src = lines_file(tmp_path, 2)
    result = run(src, "-o", tmp_path / "out", "--ray", "-q")
    assert result.exit_code == 0, result.output
    assert seen["ray_address"] == "local" and seen["quiet"] is True
    result = run(src, "-o", tmp_path / "out", "--ray", "auto", "--workers", "3")
    assert seen["ray_address"] == "auto" and seen["workers"] == 3


def test_ray_address_that_is_a_file_name_is_a_usage_error(tmp_path):
    result = run("--ray", "book.txt", "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert "not a Ray address" in result.output and "--ray=ADDRESS" in result.output


def test_ray_only_options_without_ray_are_usage_errors(tmp_path):
    src = lines_file(tmp_path, 1)
    for extra, named in (
        (["--workers", "2"], "--workers needs --ray"),
        (["--gather", "--worker-threads", "1"], "--worker-threads and --gather need --ray"),
    ):
        result = run(src, "-o", tmp_path / "out", *extra)
        assert result.exit_code == 2 and named in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_an_unreachable_ray_address_fails_fast(tmp_path):
    pytest.importorskip("ray")
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    voice = write_voice(tmp_path / "voice")
    result = run(  # Ray alone would retry this address for ever
        lines_file(tmp_path, 2), "-o", tmp_path / "out", f"--ray=127.0.0.1:{port}", "--voice", voice
    )
    assert (
        result.exit_code == 1
        and f"cannot reach the Ray cluster at 127.0.0.1:{port}" in result.output
    )


def test_missing_ray_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    voice = write_voice(tmp_path / "voice")
    result = run(lines_file(tmp_path, 2), "-o", tmp_path / "out", "--ray", "--voice", voice)
    assert result.exit_code == 1
    assert "pip install 'ttscli[ray]'" in result.output
    assert "Traceback" not in result.output


# -- a real local Ray runtime ------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_runtime():
    ray = pytest.importorskip("ray")
    import logging

    ray.init(
        num_cpus=2,
        address="local",
        _node_ip_address="127.0.0.1",
        include_dashboard=False,
        namespace="ttscli",
        logging_level=logging.WARNING,
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def slow_voice(tmp_path_factory):
    """A tiny voice whose decoder runs 150 steps per line, so a run lasts a few seconds."""
    return write_voice(tmp_path_factory.mktemp("voice") / "tiny", steps=150)


def kill_first_worker_when(out: Path, ray, min_rows: int, killed: list) -> None:
    deadline = time.time() + 120
    while time.time() < deadline:
        manifest = out / "manifest.jsonl"
        if manifest.exists() and manifest.read_text().count("\n") >= min_rows:
            for entry in ray.util.list_named_actors(all_namespaces=True):
                if entry["namespace"] == "ttscli" and entry["name"].startswith("worker-0."):
                    ray.kill(ray.get_actor(entry["name"], namespace="ttscli"), no_restart=True)
                    killed.append(entry["name"])
                    return
        time.sleep(0.01)


def test_worker_killed_mid_run_loses_and_duplicates_nothing(ray_runtime, slow_voice, tmp_path):
    out = tmp_path / "out"
    killed: list[str] = []
    killer = threading.Thread(target=kill_first_worker_when, args=(out, ray_runtime, 16, killed))
    killer.start()
    args = ["--voice", slow_voice, "--ray", "--workers", "2", "--batch-size", "4"]
    result = run(lines_file(tmp_path), "-o", out, *args)
    killer.join()
    assert result.exit_code == 0, result.output
    assert killed, "the run ended before a worker could be killed"
    assert "worker-0" in result.output and "(died)" in result.output
    assert "retried after a worker died" in result.output
    assert_each_line_once(out)
    # the replacement worker took part: three workers are reported
    assert "worker-2" in result.output


def test_gather_mode_writes_the_same_audio_as_shared_folder_mode(ray_runtime, slow_voice, tmp_path):
    src = lines_file(tmp_path, 40)
    args = ["--voice", slow_voice, "--ray", "--workers", "2", "--batch-size", "4", "-q"]
    shared, gathered = tmp_path / "shared", tmp_path / "gathered"
    assert run(src, "-o", shared, *args).exit_code == 0
    assert run(src, "-o", gathered, *args, "--gather").exit_code == 0
    assert_each_line_once(shared, 40)
    assert_each_line_once(gathered, 40)
    for r in rows(shared):
        a, _ = soundfile.read(shared / r["file"])
        b, _ = soundfile.read(gathered / r["file"])
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_ray_output_matches_local_lengths_and_resume_skips_done_lines(
    ray_runtime, slow_voice, tmp_path
):
    src = lines_file(tmp_path, 30)
    local, remote = tmp_path / "local", tmp_path / "remote"
    common = ["--voice", slow_voice, "--batch-size", "4", "-q"]
    assert run(src, "-o", local, *common).exit_code == 0
    assert run(src, "-o", remote, *common, "--ray", "--workers", "2").exit_code == 0
    for a, b in zip(rows(local), rows(remote), strict=True):
        assert (a["id"], a["decoder_steps"], a["audio_seconds"]) == (
            b["id"],
            b["decoder_steps"],
            b["audio_seconds"],
        )
    # resume: drop the last 10 files, run again, only those are redone
    for r in rows(remote)[20:]:
        (remote / r["file"]).unlink()
    result = run(src, "-o", remote, *common[:-1], "--ray", "--workers", "2")
    assert result.exit_code == 0, result.output
    assert "10 ok, 20 done before" in result.output
    manifest = rows(remote)
    assert len(manifest) == 40
    redone = [r["id"] for r in manifest[30:]]
    assert redone == [f"{i:06d}" for i in range(21, 31)] and all(
        r["status"] == "ok" and (remote / r["file"]).exists() for r in manifest[30:]
    )


def test_bad_lines_become_error_rows_on_workers_too(ray_runtime, slow_voice, tmp_path):
    src = tmp_path / "in.txt"
    src.write_bytes(b"A good line.\n!!! ???\nAnother good one.\n\xff\xfe bad bytes\n")
    out = tmp_path / "out"
    result = run(src, "-o", out, "--voice", slow_voice, "--ray", "--workers", "1", "-q")
    assert result.exit_code == 1
    statuses = [r["status"] for r in rows(out)]
    assert statuses == ["ok", "error", "ok", "error"]
    assert "nothing to say" in rows(out)[1]["error"]
    assert "UTF-8" in rows(out)[3]["error"]


def test_standard_input_works_on_workers(ray_runtime, slow_voice, tmp_path):
    out = tmp_path / "out"
    text = "".join(f"Streamed line {i}.\n" for i in range(12))
    result = run("-", "-o", out, "--voice", slow_voice, "--ray", "--workers", "2", input=text)
    assert result.exit_code == 0, result.output
    assert_each_line_once(out, 12)
    assert "12 ok" in result.output


# -- the driver's bookkeeping, with a stand-in for Ray (no runtime needed) ---------------------
class _FakeRay:
    """Just enough of Ray's API for RayPool: actors run in-process; some of them 'die'."""

    class exceptions:  # noqa: N801 - mirrors ray.exceptions
        class RayActorError(Exception):
            pass

        class RayTaskError(Exception):
            cause = None

    def __init__(self, dies):
        self.dies = dies  # dies(actor_serial, payload) -> True: that call finds the actor dead
        self.started = 0
        self.killed = 0
        self.free = {"CPU": 1.0}  # room for one more worker
        self.load_errors = {}  # actor serial -> the error its ready() reports
        self.never_ready = set()  # actor serials whose ready() never returns

    def is_initialized(self):
        return True

    def cluster_resources(self):
        return {"CPU": 2.0}

    def available_resources(self):
        return dict(self.free)

    def remote(self, cls):
        fake = self

        class Handle:
            def __init__(self, *args):
                self.serial = fake.started
                fake.started += 1
                self.body = cls(*args)
                error = fake.load_errors.get(self.serial)
                self.ready = _Method(lambda: (error, "fake", self.serial))
                if self.serial in fake.never_ready:
                    self.ready = _Method(lambda: _PENDING)
                self.render = _Method(self._render)

            def _render(self, payload):
                if fake.dies(self.serial, payload):
                    raise fake.exceptions.RayActorError(f"actor {self.serial} died")
                return self.body.render(payload)

        class ActorClass:
            def options(self, **_):
                return self

            def remote(self, *args):
                return Handle(*args)

        return ActorClass()

    def wait(self, refs, num_returns=1, timeout=None):
        ready = [r for r in refs if r.value is not _PENDING]
        return ready[:num_returns], [r for r in refs if r not in ready[:num_returns]]

    def get(self, ref):
        if isinstance(ref.value, BaseException):
            raise ref.value
        return ref.value

    def kill(self, handle, no_restart=True):
        self.killed += 1


_PENDING = object()  # the value of a call that never returns


class _Ref:
    def __init__(self, value):
        self.value = value


class _Method:
    def __init__(self, fn):
        self.fn = fn

    def remote(self, *args):
        try:
            return _Ref(self.fn(*args))
        except Exception as exc:  # delivered by get(), as Ray does
            return _Ref(exc)


class _EchoWorker:
    """Stands in for SynthesisWorker: one second of silence per line, or an error."""

    def __init__(self, *args):
        pass

    def render(self, chunk):
        from ttscli.rendering import Result

        results = [
            Result(key, None, np.zeros(10), 10, 1, compute_seconds=0.1) for key, _, _ in chunk
        ]
        return results, 0.1


@pytest.fixture
def fake_ray(monkeypatch):
    import ttscli.ray as ray_module

    def install(dies):
        fake = _FakeRay(dies)
        monkeypatch.setattr(ray_module, "_import_ray", lambda: fake)
        monkeypatch.setattr(ray_module, "SynthesisWorker", _EchoWorker)
        monkeypatch.setattr(ray_module, "ROOM_POLL_SECONDS", 0.2)
        return fake

    return install


def _pool(workers=2, max_attempts=3, **more):
    from ttscli.ray import RayOptions, RayPool

    options = RayOptions(workers=workers, lines_per_task=4, max_attempts=max_attempts, **more)
    return RayPool((None, None, None), None, options, None, ".wav", name_of=str, batch_size=2)


def test_pool_retries_a_dead_workers_chunk_and_keeps_input_order(fake_ray):
    died = set()

    def dies(serial, payload):  # actor 0 dies on its second chunk, once
        if serial == 0 and payload[0][2] == "line 4" and not died:
            died.add(serial)
            return True
        return False

    fake = fake_ray(dies)
    with _pool() as pool:
        out = list(pool.stream((i, f"line {i}") for i in range(20)))
    assert [r.id for r in out] == list(range(20))
    assert all(r.error is None for r in out)
    assert pool.retried_lines == 4
    assert [s.died for s in pool.stats] == [True, False, False]
    assert fake.started == 3  # two workers and one replacement
    assert sum(s.lines for s in pool.stats) == 20


def test_pool_gives_up_on_a_chunk_after_max_attempts_with_error_rows(fake_ray):
    fake_ray(lambda serial, payload: payload[0][2] == "line 4")  # any worker dies on that chunk
    with _pool(max_attempts=3) as pool:
        out = list(pool.stream((i, f"line {i}") for i in range(12)))
    assert [r.id for r in out] == list(range(12))
    errors = [r.id for r in out if r.error]
    assert errors == [4, 5, 6, 7]
    assert "died" in out[4].error and "3 time(s)" in out[4].error
    assert pool.retried_lines == 8  # two retries of four lines


def test_a_worker_that_cannot_load_stops_every_actor_and_the_runtime_it_started(fake_ray):
    from ttscli.errors import TTSError

    fake = fake_ray(lambda serial, payload: False)
    fake.initialized = False
    fake.shutdowns = 0
    fake.is_initialized = lambda: fake.initialized
    fake.init = lambda **kwargs: setattr(fake, "initialized", True)
    fake.shutdown = lambda: setattr(fake, "shutdowns", fake.shutdowns + 1)
    fake.load_errors = {1: "voice 'x' is not installed"}  # the second worker cannot load
    pool = _pool(workers=3)
    with pytest.raises(TTSError, match="not installed"):
        pool.__enter__()
    assert fake.started == 3 and fake.killed == 3  # none left running
    assert fake.shutdowns == 1  # the local runtime it started is gone too


def _lines(n):
    return [(i, f"line {i}") for i in range(n)]


def test_a_dead_worker_with_no_room_for_a_replacement_leaves_its_lines_to_the_others(fake_ray):
    fake = fake_ray(lambda serial, payload: serial == 0 and payload[0][2] == "line 4")
    fake.free = {"CPU": 0.0}  # its machine is gone: nowhere to put another worker
    with _pool() as pool:
        out = list(pool.stream(_lines(20)))
    assert [r.id for r in out] == list(range(20)) and all(r.error is None for r in out)
    assert fake.started == 2  # no replacement was tried
    assert [s.died for s in pool.stats] == [True, False]
    assert pool.stats[1].lines == 20 - pool.stats[0].lines
    assert pool.not_replaced and "no 1 free CPU" in pool.not_replaced[0]


def test_a_replacement_that_is_never_placed_is_given_up_after_its_deadline(fake_ray):
    fake = fake_ray(lambda serial, payload: serial == 0 and payload[0][2] == "line 4")
    fake.never_ready = {2}  # Ray lists it as a pending demand for ever
    with _pool(replace_timeout_seconds=0.5) as pool:
        out = list(pool.stream(_lines(20)))
    assert [r.id for r in out] == list(range(20)) and all(r.error is None for r in out)
    assert fake.started == 3 and fake.killed >= 1  # the unplaced replacement was stopped
    assert "not ready within 0.5 s" in pool.not_replaced[0]


def test_when_every_worker_is_gone_the_stream_fails_with_a_clear_message(fake_ray):
    from ttscli.errors import TTSError

    fake = fake_ray(lambda serial, payload: True)  # every worker dies on its first chunk
    fake.free = {"CPU": 0.0}
    with _pool() as pool, pytest.raises(TTSError, match="every Ray worker died.*resume"):
        list(pool.stream(_lines(20)))


def test_losing_a_worker_whose_cpu_is_taken_goes_on_with_the_other(
    ray_runtime, slow_voice, tmp_path, monkeypatch
):
    """The issue's lost node, on 127.0.0.1: 2 CPUs, 2 workers, one killed while an actor that
    was waiting for a CPU takes its place, so that no replacement fits."""
    monkeypatch.setattr("ttscli.ray.REPLACE_TIMEOUT_SECONDS", 5.0)
    out = tmp_path / "out"
    killed: list[str] = []
    blockers: list = []

    @ray_runtime.remote(num_cpus=1)
    class Blocker:
        def ping(self):
            return True

    def kill_and_block():
        deadline = time.time() + 60
        while time.time() < deadline:
            manifest = out / "manifest.jsonl"
            if manifest.exists() and manifest.read_text().count("\n") >= 8:
                blockers.append(Blocker.remote())  # pending: both CPUs are taken
                kill_first_worker_when(out, ray_runtime, 8, killed)
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_and_block)
    killer.start()
    started = time.perf_counter()
    args = ["--voice", slow_voice, "--ray", "--workers", "2", "--batch-size", "2"]
    try:
        result = run(lines_file(tmp_path, 60), "-o", out, *args)
        killer.join()
        assert result.exit_code == 0, result.output
        assert killed, "the run ended before a worker could be killed"
        assert time.perf_counter() - started < 120
        assert "(died)" in result.output and "not replaced" in result.output
        assert_each_line_once(out, 60)
        assert ray_runtime.get(blockers[0].ping.remote(), timeout=30)  # it got the CPU
    finally:
        for blocker in blockers:
            ray_runtime.kill(blocker)
