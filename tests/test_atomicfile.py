"""atomic_write: all or nothing, links kept, errors named."""

from __future__ import annotations

import os

import pytest

from ttscli.atomicfile import atomic_write
from ttscli.errors import CheckpointError, TTSError


def test_replaces_the_file_only_when_the_block_succeeds(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(target) as f:
            f.write(b"half of the new")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    with atomic_write(target) as f:
        f.write(b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_new_files_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        with atomic_write(tmp_path / "a") as f:
            f.write(b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o640


def test_a_symbolic_link_is_kept_and_its_target_replaced(tmp_path):
    real = tmp_path / "real.bin"
    real.write_bytes(b"old")
    link = tmp_path / "link.bin"
    link.symlink_to(real)
    with atomic_write(link) as f:
        f.write(b"new")
    assert link.is_symlink()
    assert real.read_bytes() == b"new"


def test_os_errors_become_the_callers_error_naming_the_file(tmp_path):
    with pytest.raises(TTSError, match="cannot write .*missing"):
        with atomic_write(tmp_path / "missing" / "x.bin") as f:
            f.write(b"x")
    with pytest.raises(CheckpointError, match="is a directory"):
        with atomic_write(tmp_path, error=CheckpointError) as f:
            f.write(b"x")
