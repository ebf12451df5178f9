"""Shared fixtures: isolated caches and environment, fixture-data paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory, monkeypatch):
    """Tests never read or write the user's real caches (ttscli's or torch.hub's), and no
    TTSCLI_* variable of the developer's (TTSCLI_RAY, TTSCLI_SEED...) reaches them."""
    for name in [n for n in os.environ if n.startswith("TTSCLI_")]:
        monkeypatch.delenv(name)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("TTSCLI_HOME", str(home / "ttscli"))
    monkeypatch.setenv("TORCH_HOME", str(home / "torch"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))


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
