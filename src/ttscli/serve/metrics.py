"""The server's counters and histograms, written in Prometheus' text format for GET /metrics."""

from __future__ import annotations

import threading
from collections import defaultdict

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_RTF_BUCKETS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.total += value
        self.n += 1

    def lines(self, name: str) -> list[str]:
        out = [
            f'{name}_bucket{{le="{bound:g}"}} {count}'
            for bound, count in zip(self.buckets, self.counts, strict=True)
        ]
        out += [f'{name}_bucket{{le="+Inf"}} {self.n}', f"{name}_sum {self.total:.6g}"]
        return out + [f"{name}_count {self.n}"]


class Metrics:
    """Thread-safe figures: requests and errors, queue depth, batch sizes, time to first audio
    and real-time factor (compute seconds per second of audio)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.queued_requests = 0
        self.queued_pieces = 0
        self.batch_sizes = _Histogram(_BATCH_BUCKETS)
        self.first_audio = _Histogram(_SECONDS_BUCKETS)
        self.real_time_factor = _Histogram(_RTF_BUCKETS)
        self.audio_seconds = 0.0

    def request_done(self, route: str, status: int) -> None:
        with self._lock:
            self.requests[(route, status)] += 1

    def set_queue(self, requests: int, pieces: int) -> None:
        with self._lock:
            self.queued_requests, self.queued_pieces = requests, pieces

    def batch_done(self, size: int, compute_seconds: float, audio_seconds: float) -> None:
        with self._lock:
            self.batch_sizes.observe(size)
            self.audio_seconds += audio_seconds
            if audio_seconds > 0:
                self.real_time_factor.observe(compute_seconds / audio_seconds)

    def first_audio_after(self, seconds: float) -> None:
        with self._lock:
            self.first_audio.observe(seconds)

    def render(self) -> str:
        """Every figure in Prometheus' text exposition format."""
        with self._lock:
            lines = _header("ttscli_requests_total", "counter", "HTTP requests by route and status")
            lines += [
                f'ttscli_requests_total{{route="{route}",status="{status}"}} {count}'
                for (route, status), count in sorted(self.requests.items())
            ]
            errors = sum(c for (_, status), c in self.requests.items() if status >= 400)
            lines += _header("ttscli_errors_total", "counter", "answers with status 400 or more")
            lines.append(f"ttscli_errors_total {errors}")
            lines += _header("ttscli_queue_requests", "gauge", "requests waiting to start")
            lines.append(f"ttscli_queue_requests {self.queued_requests}")
            lines += _header("ttscli_queue_pieces", "gauge", "sentence pieces waiting to render")
            lines.append(f"ttscli_queue_pieces {self.queued_pieces}")
            lines += _header("ttscli_batch_size", "histogram", "pieces per rendered batch")
            lines += self.batch_sizes.lines("ttscli_batch_size")
            lines += _header(
                "ttscli_time_to_first_audio_seconds", "histogram", "request to its first audio"
            )
            lines += self.first_audio.lines("ttscli_time_to_first_audio_seconds")
            lines += _header(
                "ttscli_real_time_factor", "histogram", "compute seconds per audio second, by batch"
            )
            lines += self.real_time_factor.lines("ttscli_real_time_factor")
            lines += _header("ttscli_audio_seconds_total", "counter", "audio rendered")
            lines.append(f"ttscli_audio_seconds_total {self.audio_seconds:.3f}")
        return "\n".join(lines) + "\n"


def _header(name: str, kind: str, help_text: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
