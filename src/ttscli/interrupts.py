"""Ctrl-C held off until a step that must finish whole (an audio file and its manifest row) is done."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Run the block with SIGINT noted rather than raised; a Ctrl-C that came meanwhile is
    raised as KeyboardInterrupt when the block ends.

    Only Python's own Ctrl-C handler is replaced, and only in the main thread: elsewhere (a
    worker thread, a process that ignores SIGINT or set its own handler) the block runs as is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:
        yield
        return
    received: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, _frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt
