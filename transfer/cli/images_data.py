"""The ``images`` command's data calls: ``upload`` and ``download`` as a shell user needs them
(progress on a terminal, resumable downloads, the MD5 checked both ways)."""

from __future__ import annotations

import asyncio
import hashlib
import sys
import time
from pathlib import Path
from typing import IO, Any

from transfer.cli.main import ExitCode
from transfer.cloud.client import ImageClient
from transfer.errors import ConfigError, IntegrityError, TransportError
from transfer.models import Image
from transfer.streams import human_bytes


def err(message: str) -> None:
    print(f"image-transfer: {message}", file=sys.stderr)


class _Progress:
    """One status line on a terminal, redrawn at most five times a second."""

    def __init__(self, label: str, total: int | None, start: int = 0) -> None:
        self._stream: IO[str] = sys.stderr
        self._label = label
        self._total = total
        self._done = start
        self._start = start
        self._began = time.monotonic()
        self._drawn = 0.0

    @classmethod
    def on_terminal(cls, label: str, total: int | None, start: int = 0) -> _Progress | None:
        return cls(label, total, start) if sys.stderr.isatty() else None

    def advance(self, count: int) -> None:
        self._done += count
        now = time.monotonic()
        if now - self._drawn >= 0.2:
            self._drawn = now
            self._draw(now)

    def finish(self) -> None:
        self._draw(time.monotonic())
        self._stream.write("\n")
        self._stream.flush()

    def _draw(self, now: float) -> None:
        rate = (self._done - self._start) / max(now - self._began, 1e-6)
        total = f" / {human_bytes(self._total)}" if self._total else ""
        pct = f" ({100 * self._done / self._total:.0f}%)" if self._total else ""
        line = f"{self._label}: {human_bytes(self._done)}{total}{pct}  {human_bytes(int(rate))}/s"
        self._stream.write(f"\r{line:<72}")
        self._stream.flush()


def _md5_file(path: Path, length: int | None = None) -> str:
    """MD5 of the file's first ``length`` bytes (all of it when None); runs in a thread."""
    digest = hashlib.md5()
    remaining = length
    with path.open("rb") as handle:
        while remaining is None or remaining > 0:
            want = 1 << 20 if remaining is None else min(1 << 20, remaining)
            chunk = handle.read(want)
            if not chunk:
                break
            digest.update(chunk)
            if remaining is not None:
                remaining -= len(chunk)
    return digest.hexdigest()


async def upload(client: ImageClient, image_id: str, path: Path) -> None:
    """Send ``path`` into a queued image and check the MD5 the server computed."""
    size = (await asyncio.to_thread(path.stat)).st_size
    progress = _Progress.on_terminal("upload", size)
    # The server reports the MD5 it computed; hash the file alongside to check it.
    local_md5 = asyncio.ensure_future(asyncio.to_thread(_md5_file, path))
    try:
        await client.upload_image(
            image_id, path, size=size, progress=progress.advance if progress else None
        )
    except BaseException:
        local_md5.cancel()
        raise
    if progress is not None:
        progress.finish()
    local = await local_md5
    image = await client.get_image(image_id)
    if image.checksum is not None and image.checksum != local:
        raise IntegrityError(
            f"image {image_id} reports checksum {image.checksum} after the upload, "
            f"but {path} has MD5 {local}"
        )


async def download(client: ImageClient, image: Image, path: Path) -> int:
    """Write the image into ``path``, resuming a partial file, and check its MD5."""
    have = await asyncio.to_thread(_existing_size, path)
    digest = hashlib.md5()
    if have and image.size is not None and have >= image.size:
        local = await asyncio.to_thread(_md5_file, path)
        if have == image.size and image.checksum in (None, local):
            print(f"{path} is already complete ({have} bytes, MD5 {local})")
            return ExitCode.OK
        err(
            f"error: {path} already holds {have} bytes that do not match image "
            f"{image.id} ({image.size} bytes, checksum {image.checksum}); refusing to "
            "overwrite it: remove it or choose another path"
        )
        return ExitCode.ERROR
    if have:
        # Resume: the part already on disk goes into the hash first.
        await asyncio.to_thread(_hash_prefix, path, have, digest)
    try:
        received, content_md5, local = await _fetch(client, image, path, have, digest)
    except TransportError as exc:
        raise type(exc)(f"{exc}; {path} keeps the bytes so far: run again to resume") from exc
    problems = []
    if image.size is not None and received != image.size:
        problems.append(f"{received} bytes instead of {image.size}")
    if image.checksum is not None and local != image.checksum:
        problems.append(f"MD5 {local} differs from the image's checksum {image.checksum}")
    if content_md5 is not None and local != content_md5:
        problems.append(f"MD5 {local} differs from the server's Content-MD5 {content_md5}")
    if problems:
        raise IntegrityError(
            f"downloaded {path} does not match image {image.id}: " + "; ".join(problems)
        )
    print(f"downloaded image {image.id} to {path}: {received} bytes, MD5 {local} verified")
    return ExitCode.OK


def _existing_size(path: Path) -> int:
    """How many bytes a previous download left in ``path`` (0 when there is no such file)."""
    if path.is_dir():
        raise ConfigError(f"{path} is a directory: give a file path")
    return path.stat().st_size if path.exists() else 0


def _hash_prefix(path: Path, length: int, digest: Any) -> None:
    with path.open("rb") as handle:
        remaining = length
        while remaining > 0:
            chunk = handle.read(min(1 << 20, remaining))
            if not chunk:
                break
            digest.update(chunk)
            remaining -= len(chunk)


async def _fetch(
    client: ImageClient, image: Image, path: Path, offset: int, digest: Any
) -> tuple[int, str | None, str]:
    """Write the image's bytes from ``offset`` on into ``path`` (``digest`` holds the MD5 of
    the bytes before it); returns the file's size, the Content-MD5 and the file's MD5."""
    async with client.download_image(image.id, offset=offset) as download:
        if download.status == 204:
            raise IntegrityError(f"image {image.id} has no data (status {image.status})")
        if offset and download.offset == 0:
            err("note: the server ignored the range; downloading from the start")
            digest = hashlib.md5()
            offset = 0
        handle = await asyncio.to_thread(path.open, "ab" if offset else "wb")
        progress = _Progress.on_terminal("download", image.size, offset)
        written = offset
        try:
            async for chunk in download.chunks():
                digest.update(chunk)
                await asyncio.to_thread(handle.write, chunk)
                written += len(chunk)
                if progress is not None:
                    progress.advance(len(chunk))
        finally:
            await asyncio.to_thread(handle.close)
            if progress is not None:
                progress.finish()
        return written, download.content_md5, digest.hexdigest()


_INT_FIELDS = frozenset({"min_disk", "min_ram"})
_BOOL_FIELDS = frozenset({"protected", "os_hidden"})
