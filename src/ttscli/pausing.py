"""Pause points: a long loop lets its own thread do more urgent work between two steps.

``with work_between_steps(handler):`` makes every `pause_point()` the block's loops reach (each
decoder step, each Griffin-Lim iteration) call ``handler()`` on this thread, which may render
something more urgent and return; the interrupted work then goes on where it stopped and
computes the same numbers. The handler is not called again from within itself. Threads with
no handler pay one thread-local lookup per pause point.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

_local = threading.local()


@contextlib.contextmanager
def work_between_steps(handler: Callable[[], None]) -> Iterator[None]:
    """Within the block, this thread's pause points call `handler` (not re-entrantly)."""
    before = getattr(_local, "handler", None)
    _local.handler = handler
    try:
        yield
    finally:
        _local.handler = before


def pause_point() -> None:
    """Where a long loop may stop for a moment: runs this thread's handler, if any."""
    handler = getattr(_local, "handler", None)
    if handler is not None:
        _local.handler = None  # the handler's own loops do not call it again
        try:
            handler()
        finally:
            _local.handler = handler
