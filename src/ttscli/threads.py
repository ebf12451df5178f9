"""torch's intra-op thread count set for a block of code and put back after it."""

from __future__ import annotations

import torch

__all__ = ["IntraOpThreads", "intra_op_threads"]


class IntraOpThreads:
    """Context manager: inside, torch runs with ``count`` intra-op threads; on leaving (also on
    an error) the count it found on entering is put back. Nothing is called when the count is
    already right. One instance may be entered again and again (not nested, not from two
    threads at once): the hot loops keep one instead of building one per use."""

    __slots__ = ("_count", "_before")

    def __init__(self, count: int) -> None:
        if count < 1:
            raise ValueError(f"intra-op threads must be at least 1, not {count}")
        self._count = int(count)
        self._before = self._count

    def __enter__(self) -> int:
        """Returns the thread count found on entering."""
        self._before = torch.get_num_threads()
        if self._before != self._count:
            torch.set_num_threads(self._count)
        return self._before

    def __exit__(self, *exc_info: object) -> None:
        if self._before != self._count:
            torch.set_num_threads(self._before)


def intra_op_threads(count: int) -> IntraOpThreads:
    """``with intra_op_threads(1): ...`` runs the block with one intra-op thread."""
    return IntraOpThreads(count)
