"""Shared fixtures: isolated caches, fixture-data paths."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory, monkeypatch):
    """Tests never read or write the user's real caches (ttscli's or torch.hub's)."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("TTSCLI_HOME", str(home / "ttscli"))
    monkeypatch.setenv("TORCH_HOME", str(home / "torch"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    for name in ("TTSCLI_VOICE", "TTSCLI_DEVICE", "TTSCLI_PRECISION", "TTSCLI_BATCH_SIZE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
