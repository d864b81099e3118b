"""Spool files: a source image downloaded once to local disk, verified, then uploaded from there.

When egress from the source is slow, billed or flaky, a job may spool (``spool = "auto" |
"always"``): the image's bytes go to ``<spool_dir>/<job>/<source id>.spool`` first, hashed as
they arrive; every upload, and every retry of an upload, then reads the file instead of the
source.  What this module owns:

- **Resume, within a run and across runs.**  While downloading, the file is fsynced every
  ``SYNC_EVERY`` bytes and after a failure, and only then is its length recorded in the journal
  (``Journal.save_spool``), so the journal never claims a byte the disk may lose.  The next
  attempt, or the next run, checks the record against the file (same source checksum and size,
  the file at least as long as recorded), cuts the file back to the recorded length, hashes
  that prefix again from disk and asks the source for the rest with an HTTP Range request.
  A source that ignores the Range (a 200 with the whole body) is read from the start.
- **Proof before use.**  A complete spool is hashed to the source's MD5 checksum (and its
  SHA-512, when the job hashes that in flight) before any upload reads it; a mismatch deletes
  the file and its record and raises ``IntegrityError``, so the engine retries the image.
- **Disk space.**  Before a byte is written, the free space of the spool directory (``statvfs``)
  must cover what the image still needs, plus what the other downloads of this process still
  need, plus a reserve kept free for the journal and the system (``Config.spool_reserve``,
  from ``IMAGE_TRANSFER_SPOOL_RESERVE``; default 512 MiB).  Otherwise ``SpoolError`` says how
  much is missing and nothing is written: no half-filled disk.
- **Privacy and cleanup.**  Directories are created 0700 and files 0600.  ``SpoolArea.tidy``
  (the engine calls it at the end of a run) removes every spool of the job that no failed image
  needs any more, stray files included, or all of them (``run --clean``).

A spool belongs to one host: records carry the host name, so hosts sharing one journal never
use or delete each other's files.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from pathlib import Path

import aiofiles
import anyio
import anyio.to_thread
from aiofiles.threadpool.binary import AsyncBufferedIOBase

from transfer.cloud.client import ImageClient
from transfer.config.settings import DEFAULT_SPOOL_RESERVE, SPOOL_RESERVE_ENV
from transfer.errors import IntegrityError, ProtocolError, SpoolError, TransportError
from transfer.journal import Journal
from transfer.journal.records import SpoolRecord
from transfer.log import get_logger
from transfer.models import Image
from transfer.streams import CHUNK_SIZE, Hasher, human_bytes, verify_length

log = get_logger("transfer.engine.spool")

#: Bytes written between two fsync + journal records: a crash re-reads at most this much.
SYNC_EVERY = 16 * 1024 * 1024
SUFFIX = ".spool"
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")


def free_bytes(directory: Path) -> int:
    """Bytes an unprivileged process may still write in ``directory``'s filesystem."""
    stats = os.statvfs(directory)
    return stats.f_bavail * stats.f_frsize


def _file_name(source_id: str) -> str:
    """A file name for a source id (ids are UUIDs in practice; anything else is hex-encoded)."""
    if _SAFE_NAME.fullmatch(source_id):
        return source_id + SUFFIX
    return "x-" + source_id.encode().hex()[:200] + SUFFIX


class SpoolArea:
    """One job's spool directory on this host: its files, their journal records, their space."""

    def __init__(
        self,
        *,
        root: Path,
        job: str,
        journal: Journal,
        host: str | None = None,
        reserve: int = DEFAULT_SPOOL_RESERVE,
        free: Callable[[Path], int] = free_bytes,
    ) -> None:
        self.root = root
        self.job = job
        self.directory = root / job
        self.journal = journal
        self.host = host or socket.gethostname()
        self.reserve = reserve
        self._free = free
        self._files: dict[str, SpoolFile] = {}
        self._records: dict[str, SpoolRecord] | None = None
        self._records_lock = anyio.Lock()
        self.downloading: set[SpoolFile] = set()

    def file(self, source: Image, client: ImageClient, algorithms: Collection[str]) -> SpoolFile:
        """The spool file of ``source`` (one object per source for the whole run)."""
        spool = self._files.get(source.id)
        if spool is None:
            spool = SpoolFile(self, source, client, algorithms)
            self._files[source.id] = spool
        return spool

    async def records(self) -> dict[str, SpoolRecord]:
        """This host's spool records of the job, by source id (read once, then kept current)."""
        async with self._records_lock:
            if self._records is None:
                self._records = {
                    r.source_id: r for r in await self.journal.spools(self.job, self.host)
                }
            return self._records

    async def save(self, spool: SpoolFile, *, bytes_done: int, complete: bool) -> None:
        source = spool.source
        await self.journal.save_spool(
            self.job,
            source.id,
            self.host,
            path=str(spool.path),
            source_checksum=source.checksum,
            size=source.size,
            bytes_done=bytes_done,
            complete=complete,
        )
        records = await self.records()
        records[source.id] = SpoolRecord(
            job=self.job,
            source_id=source.id,
            host=self.host,
            path=str(spool.path),
            source_checksum=source.checksum,
            size=source.size,
            bytes_done=bytes_done,
            complete=complete,
            updated_at="",
        )

    async def remove(self, source_id: str) -> None:
        """Delete a source's spool file and its record (the record last: a crash in between
        leaves a record whose file is gone, which the next run simply starts over)."""
        spool = self._files.pop(source_id, None)
        if spool is None and source_id not in await self.records():
            return  # never spooled here (stray files are ``tidy``'s)
        await self.delete(source_id, self.directory / _file_name(source_id))

    async def delete(self, source_id: str, path: Path) -> None:
        """Delete a spool file and forget its record."""
        await anyio.to_thread.run_sync(lambda: path.unlink(missing_ok=True))
        records = await self.records()
        if records.pop(source_id, None) is not None:
            await self.journal.forget_spool(self.job, source_id, self.host)

    async def tidy(self, keep: Collection[str] = (), *, clean: bool = False) -> list[str]:
        """Remove the job's spool files except those of ``keep`` (source ids whose images some
        target still needs); with ``clean`` remove them all.  Returns the source ids removed."""
        records = await self.records()
        doomed = [sid for sid in records if clean or sid not in keep]
        for source_id in doomed:
            await self.remove(source_id)
        kept_paths = {self.directory / _file_name(sid) for sid in records}

        def strays() -> None:
            if not self.directory.is_dir():
                return
            for path in self.directory.iterdir():
                if path.is_file() and path not in kept_paths:
                    path.unlink(missing_ok=True)
            if clean or not any(self.directory.iterdir()):
                with contextlib.suppress(OSError):
                    self.directory.rmdir()

        await anyio.to_thread.run_sync(strays)
        if doomed:
            log.info("removed spool files", job=self.job, images=len(doomed))
        return doomed

    def check_space(self, spool: SpoolFile, need: int) -> None:
        """Raise SpoolError unless ``need`` more bytes fit beside what others still need."""
        others = sum(s.remaining for s in self.downloading if s is not spool)
        try:
            free = self._free(self.directory)
        except OSError as exc:
            raise SpoolError(f"spool {self.directory}: cannot read free space: {exc}") from None
        if free - others - self.reserve < need:
            source = spool.source
            raise SpoolError(
                f"not enough disk space to spool image {source.name or source.id} "
                f"({source.id}): it needs {human_bytes(need)} in {self.directory}, "
                f"{human_bytes(free)} free, {human_bytes(others)} promised to other downloads, "
                f"{human_bytes(self.reserve)} kept free ({SPOOL_RESERVE_ENV})"
            )

    async def make_directory(self) -> None:
        def make() -> None:
            for directory in (self.root, self.directory):
                if not directory.is_dir():
                    directory.mkdir(parents=True, mode=0o700, exist_ok=True)
                    os.chmod(directory, 0o700)  # whatever the umask

        try:
            await anyio.to_thread.run_sync(make)
        except OSError as exc:
            raise SpoolError(f"spool {self.directory}: cannot create: {exc.strerror}") from None


class _Fill:
    """One download in progress, which concurrent callers of ``fill`` wait for."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.error: BaseException | None = None


class SpoolFile:
    """The spool file of one source image."""

    def __init__(
        self, area: SpoolArea, source: Image, client: ImageClient, algorithms: Collection[str]
    ) -> None:
        self.area = area
        self.source = source
        self.client = client
        # MD5 always: the file is proven against the source's checksum before use.
        self.algorithms = ("md5", *sorted(set(algorithms) - {"md5"}))
        self.path = area.directory / _file_name(source.id)
        self.written = 0  # bytes of the file that hold the source's body so far
        self.size: int | None = source.size
        self.digests: dict[str, str] | None = None  # set once complete and verified
        self.downloads = 0  # requests made to the source (for tests and logs)
        self._fill: _Fill | None = None

    def __repr__(self) -> str:
        return f"SpoolFile({self.source.id!r}, {self.path})"

    @property
    def remaining(self) -> int:
        return max(0, (self.size or 0) - self.written)

    async def fill(self) -> dict[str, str]:
        """Make the file complete and verified (resuming what is there); returns its digests.

        Concurrent callers share one download: if it fails, each of them gets its error.
        """
        while True:
            if self.digests is not None:
                return self.digests
            running = self._fill
            if running is None:
                break
            await running.done.wait()
            if running.error is not None:
                raise running.error
        fill = self._fill = _Fill()
        try:
            self.digests = await self._download()
        except Exception as exc:
            fill.error = exc
            raise
        except BaseException:
            # A cancelled download is not the waiters' cancellation: they may try again.
            fill.error = TransportError(f"the spool download of image {self.source.id} stopped")
            raise
        finally:
            self._fill = None
            fill.done.set()
        return self.digests

    async def chunks(self, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        """The complete file, in chunks (call ``fill`` first)."""
        if self.digests is None:
            raise RuntimeError("the spool file is not complete")
        async with aiofiles.open(self.path, "rb") as handle:
            while True:
                chunk = await handle.read(chunk_size)
                if not chunk:
                    return
                yield chunk

    # -- the download ----------------------------------------------------------------------

    async def _start_offset(self) -> int:
        """Where the download resumes: the journal's length, if the file agrees with it."""
        record = (await self.area.records()).get(self.source.id)

        def length() -> int | None:
            try:
                return self.path.stat().st_size
            except FileNotFoundError:
                return None

        on_disk = await anyio.to_thread.run_sync(length)
        if (
            record is None
            or on_disk is None
            or record.path != str(self.path)
            or record.source_checksum != self.source.checksum
            or record.size != self.source.size
            or on_disk < record.bytes_done
        ):
            return 0
        return record.bytes_done

    async def _download(self) -> dict[str, str]:
        source = self.source
        area = self.area
        await area.make_directory()
        offset = await self._start_offset()
        if self.size is not None and offset < self.size:
            area.check_space(self, self.size - offset)  # before a byte, or a file, is made
        try:
            handle = await aiofiles.open(self.path, "r+b", opener=_private_opener)
        except OSError as exc:
            raise SpoolError(f"spool {self.path}: cannot open: {exc.strerror}") from None
        try:
            await handle.truncate(offset)
            hasher = Hasher(self.algorithms)
            await self._rehash(handle, hasher, offset)
            self.written = offset
            if offset:
                log.info("resuming spool", image=source.id, offset=offset, size=source.size)
            if self.size is None or offset < self.size:
                hasher = await self._receive(handle, hasher)
            digests = await hasher.hexdigests()
        finally:
            with anyio.CancelScope(shield=True):
                await handle.close()
        problem = _mismatch(source, digests, self.written)
        if problem is not None:
            await area.delete(source.id, self.path)
            self.written = 0
            raise IntegrityError(f"spooled image {source.id}: {problem}; the spool was discarded")
        await area.save(self, bytes_done=self.written, complete=True)
        log.info("spooled", image=source.id, bytes=self.written, path=str(self.path))
        return digests

    async def _rehash(self, handle: AsyncBufferedIOBase, hasher: Hasher, upto: int) -> None:
        """Hash the first ``upto`` bytes already in the file (hashes cannot be saved)."""
        await handle.seek(0)
        left = upto
        while left > 0:
            chunk = await handle.read(min(CHUNK_SIZE, left))
            if not chunk:
                raise SpoolError(f"spool {self.path}: shorter than the {upto} bytes recorded")
            await hasher.update(chunk)
            left -= len(chunk)

    async def _receive(self, handle: AsyncBufferedIOBase, hasher: Hasher) -> Hasher:
        """One request for the rest of the body, written at the end of the file."""
        source, area = self.source, self.area
        await area.save(self, bytes_done=self.written, complete=False)
        synced = self.written
        area.downloading.add(self)
        self.downloads += 1
        try:
            async with self.client.download_image(source.id, offset=self.written) as download:
                if download.status == 204 and source.size:
                    raise ProtocolError(
                        f"source served no data for image {source.id} of size {source.size}"
                    )
                if (
                    download.content_md5
                    and source.checksum
                    and download.content_md5.lower() != source.checksum.lower()
                ):
                    raise IntegrityError(
                        f"source image {source.id}: Content-MD5 {download.content_md5} differs "
                        f"from its checksum {source.checksum}"
                    )
                if download.offset != self.written:
                    # The source ignored the Range: its body starts at byte 0.
                    log.info("source ignored the range; spooling from the start", image=source.id)
                    self.written = synced = 0
                    await handle.truncate(0)
                    hasher = Hasher(self.algorithms)
                if self.size is None:
                    self.size = download.total_size
                    if download.length is not None:
                        area.check_space(self, download.length)
                await handle.seek(self.written)
                expected = None if self.size is None else self.size - self.written
                async for chunk in verify_length(download.chunks(), expected):
                    await handle.write(chunk)
                    await hasher.update(chunk)
                    self.written += len(chunk)
                    if self.written - synced >= SYNC_EVERY:
                        await self._sync(handle)
                        synced = self.written
        except OSError as exc:
            raise SpoolError(f"spool {self.path}: cannot write: {exc.strerror}") from None
        finally:
            area.downloading.discard(self)
            if self.written != synced:
                # Keep what arrived before the failure: the next attempt resumes after it.
                with anyio.CancelScope(shield=True), contextlib.suppress(OSError):
                    await self._sync(handle)
        if self.size is None:
            self.size = self.written
        return hasher

    async def _sync(self, handle: AsyncBufferedIOBase) -> None:
        await handle.flush()
        fd = handle.fileno()
        await anyio.to_thread.run_sync(os.fsync, fd)
        await self.area.save(self, bytes_done=self.written, complete=False)


def _private_opener(path: str, flags: int) -> int:
    # r+b without O_CREAT fails on a new file; 0600 applies when the file is created.
    fd = os.open(path, flags | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)
    return fd


def _mismatch(source: Image, digests: Mapping[str, str], written: int) -> str | None:
    if source.size is not None and written != source.size:
        return f"{written} bytes, the source declares {source.size}"
    md5 = digests.get("md5")
    if source.checksum and md5 != source.checksum.lower():
        return f"the bytes hash to md5 {md5}, the source declares {source.checksum}"
    sha512 = digests.get("sha512")
    if (
        sha512 is not None
        and source.os_hash_algo == "sha512"
        and source.os_hash_value
        and sha512 != source.os_hash_value.lower()
    ):
        return "the bytes hash to a sha512 the source does not declare"
    return None
