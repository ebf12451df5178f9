"""Downloading checkpoints: resumable (HTTP Range), atomic, size- and sha256-verified."""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .atomicfile import atomic_write
from .errors import DownloadError

CHUNK_BYTES = 1 << 20
HASHES_FILE = "sha256.json"


_SCHEMES = ("http://", "https://", "file://", "ftp://")


def mirror_url(url: str) -> str:
    """Apply TTSCLI_DOWNLOAD_BASE: it replaces everything before the file name."""
    base = os.environ.get("TTSCLI_DOWNLOAD_BASE")
    if not base:
        return url
    if not base.lower().startswith(_SCHEMES):
        raise DownloadError(
            f"TTSCLI_DOWNLOAD_BASE={base!r} is not a URL (expected http://, https://, "
            "ftp:// or file://)"
        )
    return base.rstrip("/") + "/" + url.rsplit("/", 1)[1]


def _known_hashes(folder: Path) -> dict[str, str]:
    try:
        data = json.loads((folder / HASHES_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _record_hash(folder: Path, name: str, digest: str) -> None:
    hashes = _known_hashes(folder)
    hashes[name] = digest
    with atomic_write(folder / HASHES_FILE, error=DownloadError) as f:
        f.write(json.dumps(hashes, indent=1, sort_keys=True).encode("utf-8"))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(
    url: str,
    folder: Path,
    *,
    progress: Callable[[int, int | None], None] | None = None,
    verify: Callable[[Path], None] | None = None,
    timeout_seconds: float = 30.0,
) -> Path:
    """Fetch url into folder/<file name>; resume a partial download; return the final path.

    The partial file is `.<name>.part` in the same folder; it is renamed into place only once
    its size matches what the server announced, (when known from an earlier download) its
    sha256 matches, and `verify(part_path)` returns without raising (any exception it raises
    removes the part file and becomes a DownloadError; no hash is recorded).
    `progress(done_bytes, total_bytes)` is called as bytes arrive.
    """
    url = mirror_url(url)
    name = url.rsplit("/", 1)[1]
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / name
    part = folder / f".{name}.part"
    done = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "ttscli"})
    if done:
        request.add_header("Range", f"bytes={done}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout_seconds)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and done:  # nothing left to fetch: the part file is complete
            return _finish(part, final, folder, name, done, done, verify)
        raise DownloadError(f"{url}: the server answered HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:  # ValueError: malformed URL
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"cannot reach {url}: {reason}") from exc
    with response:
        if done and response.status != 206:  # server ignored Range: start over
            done = 0
        length = response.headers.get("Content-Length")
        total = done + int(length) if length is not None else None
        mode = "ab" if done else "wb"
        try:
            with open(part, mode) as out:
                if progress:
                    progress(done, total)
                for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
                out.flush()
                os.fsync(out.fileno())
        except (OSError, urllib.error.URLError) as exc:
            raise DownloadError(
                f"the download of {url} broke off after {done:,} bytes ({exc}); "
                "run the same command again to resume"
            ) from exc
    return _finish(part, final, folder, name, done, total, verify)


def _finish(
    part: Path,
    final: Path,
    folder: Path,
    name: str,
    done: int,
    total: int | None,
    verify: Callable[[Path], None] | None,
) -> Path:
    if total is not None and done != total:
        raise DownloadError(
            f"{name}: got {done:,} of {total:,} bytes; run the same command again to resume"
        )
    digest = sha256_of(part)
    expected = _known_hashes(folder).get(name)
    if expected and expected != digest:
        part.unlink()
        raise DownloadError(
            f"{name}: sha256 {digest} does not match the one recorded earlier ({expected}) in "
            f"{folder / HASHES_FILE}; the partial file was removed (delete that entry to accept "
            "a new file)"
        )
    if verify is not None:
        try:
            verify(part)
        except Exception as exc:
            part.unlink()
            raise DownloadError(
                f"{name}: the downloaded file is not usable ({exc}); it was removed"
            ) from exc
    os.replace(part, final)
    if not expected:
        _record_hash(folder, name, digest)
    return final
