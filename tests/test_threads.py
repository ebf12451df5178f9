"""ttscli.threads: torch's intra-op thread count for a block, put back after it."""

from __future__ import annotations

import pytest
import torch

from ttscli.threads import intra_op_threads


def test_intra_op_threads_sets_the_count_and_puts_it_back_also_on_errors() -> None:
    torch.set_num_threads(2)
    with intra_op_threads(1) as before:
        assert before == 2 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(KeyError), intra_op_threads(1):
        raise KeyError("x")
    assert torch.get_num_threads() == 2
    reused = intra_op_threads(1)
    for _ in range(2):
        with reused:
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    with pytest.raises(ValueError):
        intra_op_threads(0)
