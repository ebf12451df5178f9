"""Starting a real `ttscli serve` process for the server's tests, and decoding its answers."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

READY = re.compile(r"ready at (http://\S+)")


class RunningServer:
    """`ttscli serve --port 0 ARGS...` on 127.0.0.1 with the embedded voice, until stop()."""

    def __init__(self, home: Path, *args: str, start_timeout: float = 180.0) -> None:
        env = dict(os.environ)
        env["TTSCLI_HOME"] = str(home / "ttscli")
        env["TORCH_HOME"] = str(home / "torch")
        env["XDG_CACHE_HOME"] = str(home / "cache")
        env.pop("TTSCLI_API_KEY", None)
        # one torch thread, as every test (conftest): two OpenMP threads on a busy 2-core
        # machine wait on each other at every step (one sentence: 0.05 s -> 3 s)
        env["OMP_NUM_THREADS"] = "1"
        self.log_path = home / "server.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        command = [sys.executable, "-m", "ttscli.cli", "serve", "--host", "127.0.0.1"]
        command += ["--port", "0", "--voice", "ttscli-en", *args]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=self._log, env=env, text=True
        )
        self.lines: list[str] = []
        self.url = self._wait_for_url(start_timeout)
        self.wyoming = None
        if "--wyoming" in args:
            line = self.process.stdout.readline()
            self.lines.append(line)
            self.wyoming = line.rsplit(" ", 1)[-1].strip()

    def _wait_for_url(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            match = READY.search(line)
            if match:
                return match.group(1)
        self.stop()
        raise RuntimeError(f"the server did not start: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Signal the server and wait for its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def decode(data: bytes, fmt: str) -> tuple[np.ndarray, int]:
    """Audio samples and sample rate of an answer in `fmt` (pcm: 24 kHz s16le)."""
    import soundfile

    if fmt == "pcm":
        return np.frombuffer(data, "<i2").astype(np.float32) / 32768.0, 24_000
    with soundfile.SoundFile(io.BytesIO(data)) as file:
        rate = file.samplerate
        if file.frames < 2**62:
            return file.read(dtype="float32"), rate
        # a streamed FLAC says "length unknown" (allowed by the format); soundfile's reader
        # then cannot read to the end, libsndfile itself can
        return _read_to_end(file), rate


def _read_to_end(file) -> np.ndarray:
    import soundfile

    parts = []
    block = np.zeros(4096, np.float32)
    pointer = soundfile._ffi.cast("float*", block.ctypes.data)
    while True:
        count = soundfile._snd.sf_readf_float(file._file, pointer, len(block))
        if count <= 0:
            break
        parts.append(block[:count].copy())
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)
