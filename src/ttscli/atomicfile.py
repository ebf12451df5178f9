"""Atomic file writing: a temporary file beside the target, synced, then renamed over it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import TTSError

TEMP_SUFFIX = ".tmp"


def temp_path(path: Path) -> Path:
    """The temporary name `atomic_write` uses for `path`: `.<name>.<pid>.tmp` beside it."""
    return path.with_name(f".{path.name}.{os.getpid()}{TEMP_SUFFIX}")


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike[str], error: type[Exception] = TTSError
) -> Iterator[BinaryIO]:
    """Open a binary file whose content replaces `path` only when the block ends without error.

    Readers see the old file or the whole new one, never a part: the data goes to a temporary
    file in the same folder, is flushed to disk, then renamed over `path`. A symbolic link is
    kept and its target replaced (as the shell's `>` does). On any exception, Ctrl-C included,
    the temporary file is removed; an OSError is raised as `error("cannot write PATH: why")`.
    """
    target = Path(path)
    if target.is_symlink():
        target = Path(os.path.realpath(target))
    if target.is_dir():
        raise error(f"{target} is a directory; expected a file name to write")
    tmp = temp_path(target)
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise error(f"cannot write {target}: {exc.strerror or exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
