"""The video store in S3-compatible object storage (``GRAVITEX_STORAGE_URL=s3://bucket[/prefix]``).

* A video streams into a **multipart upload under a temporary key**
  (``<prefix>_uploads/<stem>.<random>.part``) while it is hashed: the writer hands
  what it is given to obstore's writer :data:`HANDOFF_BYTES` at a time; obstore's
  writer fills one part (:data:`PART_BYTES`) while at most
  :data:`UPLOAD_CONCURRENCY` go up, and makes the writer wait meanwhile. So a save
  holds about two parts, whatever the video's size and however slow the storage is.
* :meth:`ObjectWriter.commit` completes that upload, then **copies it create-only** to
  the first free ``stem-N.mp4`` key (obstore's ``copy(..., overwrite=False)``: a
  multipart copy completed with ``If-None-Match: *``, so an existing object is never
  replaced, by this server or by any replica), and deletes the temporary key. obstore
  cannot complete a streamed upload with ``If-None-Match`` itself (its create-only put
  buffers the whole body), hence the copy. A failed or cancelled write aborts the
  upload (obstore's writer, left with an error) and deletes the temporary key: nothing
  ever appears under a final key.
* Saved videos are read back (probe, contact sheet, frames, joins) from a **local temp
  copy** fetched in chunks and hashed on the way (:meth:`ObjectVideoStore.open_checked`),
  unlinked at once so it lives only while it is held; contact sheets and frames are
  small objects put create-only beside the video (:mod:`.object_stills`).
* Links are presigned GETs (:meth:`ObjectVideoStore.media_url`): the storage serves
  them, Range requests included.

Every key is under the configured prefix. Storage errors become a
:class:`~gravitex_mcp.errors.StorageError` saying the task stays downloadable.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import hashlib
import logging
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, Final

import anyio
import anyio.lowlevel
import anyio.to_thread
import obstore
from obstore.exceptions import AlreadyExistsError, BaseError, PreconditionError
from obstore.store import S3Store

from ..domain import LOCAL_USER, USERS_FOLDER
from ..errors import StorageError
from ..settings import ObjectStorage
from .ondisk import Changed, FileIdentity, HeldFile
from .seam import StoredFile
from .storage import VIDEO_SUFFIX, safe_filename
from .tempfiles import candidate_names

if TYPE_CHECKING:
    from obstore import AsyncWritableFile, ObjectMeta

logger = logging.getLogger(__name__)

#: The size of each uploaded part: S3's smallest (but for the last), as each part a
#: save fills or sends is held in memory (service/saves.py bounds the saves at once).
PART_BYTES: Final = 5 * 1024 * 1024
#: Parts uploaded at once by one writer, while the next one fills.
UPLOAD_CONCURRENCY: Final = 1
#: What the writer gathers before handing it to obstore's writer (one call per piece).
HANDOFF_BYTES: Final = 1024 * 1024
#: The chunk a saved object is read back in.
READ_CHUNK: Final = 1024 * 1024
#: Where writers' temporary objects live, under the prefix.
#: (Not a dot folder: S3 listings through obstore leave out keys with a dot segment.)
UPLOADS: Final = "_uploads/"
#: A temporary object older than this belongs to a writer that died (a save takes
#: minutes at most); :meth:`ObjectVideoStore.recover` deletes it.
STALE_UPLOAD: Final = timedelta(hours=6)

#: Longest a failed writer spends aborting its upload and deleting its temporary key.
CLEANUP_SECONDS: Final = 15.0

UNREACHABLE: Final = "storage unreachable; the task stays downloadable; call download_video again"


def storage_error(exc: BaseException, what: str) -> StorageError:
    """The one message a failing object store gives (the cause kept for the log)."""
    logger.warning("object storage failed while %s: %s", what, exc)
    return StorageError(f"Could not {what}: {UNREACHABLE}. Nothing was saved under a final name.")


class ObjectVideoStore:
    """Videos, contact sheets and frames as objects under one prefix of one bucket."""

    def __init__(
        self, config: ObjectStorage, *, temp_dir: Path | None = None, part_bytes: int = PART_BYTES
    ) -> None:
        self.config = config
        self.bucket = config.bucket
        self.prefix = config.prefix
        self.part_bytes = part_bytes
        self.temp_dir = temp_dir
        options: dict[str, object] = {
            "allow_http": config.allow_http,
            "connect_timeout": config.connect_timeout,
            "timeout": config.timeout,
        }
        self.store: S3Store | None = S3Store(
            config.bucket,
            endpoint=config.endpoint,
            region=config.region,
            access_key_id=config.access_key_id,
            secret_access_key=config.secret_access_key,
            copy_if_not_exists=config.copy_if_not_exists,
            virtual_hosted_style_request=False,
            client_options=options,  # type: ignore[arg-type]
            retry_config={
                "max_retries": config.max_retries,
                "retry_timeout": config.retry_timeout,
            },
        )
        self._writing: set[ObjectWriter] = set()

    def for_user(self, storage_name: str) -> ObjectVideoStore:
        """The objects of ``storage_name`` (this store for the local user), under
        ``<prefix>users/<storage name>/`` on the same client. Keys are owned only
        directly under a store's prefix, so no user's store reaches another's objects,
        nor the local one theirs."""
        if storage_name == LOCAL_USER:
            return self
        view = copy.copy(self)
        view.prefix = f"{self.prefix}{USERS_FOLDER}/{storage_name}/"
        return view

    # --- names ------------------------------------------------------------------

    def _s3(self) -> S3Store:
        if self.store is None:
            raise StorageError("The object store is closed (the server is shutting down).")
        return self.store

    def key(self, name: str) -> str:
        """The key of ``name`` (a base name) under the prefix."""
        if not name or "/" in name or name.startswith("."):
            raise StorageError(f"Refusing to store {name!r}: not a plain name.")
        return self.prefix + name

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def key_of(self, location: str | Path) -> str | None:
        """The key an ``s3://`` URI of this store names, directly under its prefix (a
        video's or a still's); ``None`` for any other location."""
        text = str(location)
        for scheme in ("s3://", "s3:/"):  # a URI that went through Path lost a slash
            if text.startswith(scheme + self.bucket + "/"):
                key = text[len(scheme) + len(self.bucket) + 1 :]
                break
        else:
            return None
        name = key[len(self.prefix) :]
        if not key.startswith(self.prefix) or not name or "/" in name or name.startswith("."):
            return None
        return key

    # --- the VideoStore protocol -------------------------------------------------

    def reserve(self, filename: str | None, *, default_stem: str) -> ObjectWriter:
        """A writer for one video; ``async with``; :meth:`ObjectWriter.commit`."""
        return ObjectWriter(self, safe_filename(filename, default_stem=default_stem))

    def bytes_so_far(self, filename: str | None, *, default_stem: str) -> int | None:
        name = safe_filename(filename, default_stem=default_stem)
        sizes = [w.bytes_written for w in self._writing if w.name == name]
        return max(sizes) if sizes else None

    def open_checked(
        self, path: str | Path, *, size: int, sha256: str, recorded: FileIdentity | None
    ) -> HeldFile | Changed | None:
        """The saved object at ``path`` (its ``s3://`` URI), fetched in chunks into a local
        temp file (unlinked at once: it lives while held) and checked by its size and
        sha256 on the way (blocking). ``None`` when it is gone; :class:`Changed` when
        it is not the one saved, or not this store's.

        Its identity is its size, time and ETag (a HEAD): when it is ``recorded`` (an
        earlier check hashed these very bytes), nothing is fetched until it is read."""
        key = self.key_of(path)
        if key is None:
            shown = Path(str(path))
            return Changed(shown, f"is not under this server's storage {self.config.url}.")
        shown = Path(key.rsplit("/", 1)[-1])  # its name, for messages and stills' names
        store = self._s3()
        try:
            meta = obstore.head(store, key)
        except FileNotFoundError:
            return None
        except BaseError as exc:
            raise storage_error(exc, f"read {key}") from exc
        if meta["size"] != size:
            return Changed(shown, f"changed since it was saved ({meta['size']} bytes, not {size}).")
        etag = meta["e_tag"]
        identity = identity_of(meta)
        if etag and identity == recorded:
            return _CheckedObject(self, key, etag, shown, identity, size=size, sha256=sha256)
        fd, digest, got = self._fetch(key, if_match=etag)
        if got != size or digest != sha256:
            os.close(fd)
            return Changed(
                shown, "changed since it was saved (same size, other bytes: its sha256 differs)."
            )
        return HeldFile(shown, fd, identity, location=self.uri(key))

    def _fetch(self, key: str, *, if_match: str | None) -> tuple[int, str, int]:
        """``key`` copied into an unlinked local temp file in :data:`READ_CHUNK`
        pieces: its descriptor (at 0), sha256 and size."""
        fd, name = tempfile.mkstemp(prefix=".gravitex-s3-", suffix=".part", dir=self.temp_dir)
        os.unlink(name)  # the space is the holder's until it closes the descriptor
        digest = hashlib.sha256()
        got = 0
        try:
            options = {"if_match": if_match} if if_match else {}
            result = obstore.get(self._s3(), key, options=options)  # type: ignore[arg-type]
            for chunk in result.stream(min_chunk_size=READ_CHUNK):
                view = memoryview(chunk)
                digest.update(view)
                while view:
                    view = view[os.write(fd, view) :]
                got += len(chunk)
            os.lseek(fd, 0, os.SEEK_SET)
        except (FileNotFoundError, PreconditionError):
            os.close(fd)
            raise StorageError(
                f"{self.uri(key)} was removed or replaced while it was read; call again."
            ) from None
        except BaseError as exc:
            os.close(fd)
            raise storage_error(exc, f"read {self.uri(key)}") from exc
        except OSError as exc:
            os.close(fd)
            where = self.temp_dir or tempfile.gettempdir()
            raise StorageError(
                f"Could not copy {self.uri(key)} to a local temp file to read it: "
                f"{exc.strerror or exc}. Free some space in {where}."
            ) from exc
        except BaseException:
            os.close(fd)
            raise
        return fd, digest.hexdigest(), got

    @contextlib.contextmanager
    def scratch(self, stem: str) -> Iterator[Path]:
        """A local temp file for work written by path (the join's encoder); removed on
        exit. Blocking."""
        fd, name = tempfile.mkstemp(prefix=f".{stem}.", suffix=".part", dir=self.temp_dir)
        os.close(fd)
        try:
            yield Path(name)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)

    def recover(self) -> list[Path]:
        """At start-up (blocking): delete the temporary objects of writers that died
        (older than :data:`STALE_UPLOAD`); their keys. Unfinished multipart uploads (a process
        killed mid-part) are invisible and cannot be listed through obstore: a bucket
        lifecycle rule aborting incomplete uploads after a day removes them."""
        removed: list[Path] = []
        cutoff = datetime.now(UTC) - STALE_UPLOAD
        try:
            for batch in obstore.list(self._s3(), self.prefix + UPLOADS, chunk_size=1000):
                for meta in batch:
                    if meta["last_modified"] < cutoff:
                        with contextlib.suppress(FileNotFoundError):
                            obstore.delete(self._s3(), meta["path"])
                        removed.append(Path(meta["path"]))  # the key
        except BaseError as exc:  # reported again by the first save
            logger.warning("could not look for leftover uploads in %s: %s", self.config.url, exc)
        return removed

    # --- links and small objects ---------------------------------------------------

    def media_url(self, location: str | Path) -> str | None:
        """A presigned GET of the object at ``location`` (an ``s3://`` URI of this
        store), valid for the configured TTL; ``None`` for any other location."""
        key = self.key_of(location)
        if key is None:
            return None
        ttl = timedelta(seconds=self.config.media_ttl_seconds)
        return obstore.sign(self._s3(), "GET", key, ttl)

    def owns(self, location: str) -> bool:
        """Whether ``location`` is an ``s3://`` URI directly under this store's prefix."""
        return self.key_of(location) is not None

    def size_of(self, location: str) -> int | None:
        key = self.key_of(location)
        if key is None:
            return None
        try:
            return int(obstore.head(self._s3(), key)["size"])
        except FileNotFoundError:
            return None
        except BaseError as exc:
            raise storage_error(exc, f"read {location}") from exc

    def read_saved(self, location: str, *, limit: int) -> bytes | None:
        key = self.key_of(location)
        return None if key is None else self.read_small(key, limit=limit)

    def read_small(self, key: str, *, limit: int) -> bytes | None:
        """The bytes of a small object (at most ``limit``); ``None`` when missing or larger."""
        try:
            meta = obstore.head(self._s3(), key)
            if meta["size"] > limit:
                return None
            return bytes(obstore.get(self._s3(), key).bytes())
        except FileNotFoundError:
            return None
        except BaseError as exc:
            raise storage_error(exc, f"read {self.uri(key)}") from exc

    def save_still(self, video: Path | str, name: str, data: bytes, *, reuse: bool = False) -> str:
        """Put ``data`` under the first free ``name`` / ``stem-N.ext`` key beside the
        video (create-only, never replacing; a still is small, so one request); with
        ``reuse``, a copy already holding exactly ``data`` is returned instead (two
        callers at once: the loser of the create finds the winner's bytes). Its URI.
        Blocking."""
        if self.key_of(video) is None:
            raise StorageError(f"{video} is not under this server's storage {self.config.url}.")
        for candidate in candidate_names(name):
            key = self.key(candidate)
            if reuse:
                held = self.read_small(key, limit=len(data))
                if held == data:
                    return self.uri(key)
                if held is not None or self._exists(key):
                    continue  # another file: not ours to reuse
            try:
                obstore.put(self._s3(), key, data, mode="create")
            except AlreadyExistsError:
                if reuse and self.read_small(key, limit=len(data)) == data:
                    return self.uri(key)  # made by a caller at once
                continue
            except BaseError as exc:
                raise storage_error(exc, f"save {name}") from exc
            return self.uri(key)
        raise StorageError(f"Could not find a free name for {name}; pass another filename.")

    def _exists(self, key: str) -> bool:
        try:
            obstore.head(self._s3(), key)
        except FileNotFoundError:
            return False
        except BaseError as exc:
            raise storage_error(exc, f"read {self.uri(key)}") from exc
        return True

    def find_still(
        self,
        video: Path | str,
        name: str,
        *,
        made_ns: int,
        limit: int,
        usable: Callable[[bytes], bool],
    ) -> tuple[Path | str, bytes] | None:
        """The newest still saved as ``name`` (or ``stem-N``) beside ``video`` since
        ``made_ns``: the names are looked at in order up to the first free one."""
        if self.key_of(video) is None:
            return None
        found: list[tuple[int, str]] = []
        for candidate in candidate_names(name):
            key = self.key(candidate)
            try:
                meta = obstore.head(self._s3(), key)
            except FileNotFoundError:
                break
            except BaseError as exc:
                raise storage_error(exc, f"read {self.uri(key)}") from exc
            made = int(meta["last_modified"].timestamp() * 1e9)
            if made >= made_ns and meta["size"] <= limit:
                found.append((made, key))
        for _, key in sorted(found, reverse=True):
            data = self.read_small(key, limit=limit)
            if data is not None and usable(data):
                return self.uri(key), data
        return None

    def close(self) -> None:
        """Drop the client (its connections) at shutdown."""
        self.store = None


def identity_of(meta: ObjectMeta) -> FileIdentity:
    """An object's identity: its size, time and ETag (which changes with its bytes),
    the ETag standing where a file's ctime would."""
    etag = meta["e_tag"]
    tag = int(hashlib.sha256(etag.encode()).hexdigest()[:15], 16) if etag else 0
    return FileIdentity(0, 0, meta["size"], int(meta["last_modified"].timestamp() * 1e9), tag)


def _cleanup_scope() -> anyio.CancelScope:
    """Shielded from an outer cancellation, ended after :data:`CLEANUP_SECONDS`."""
    return anyio.CancelScope(shield=True, deadline=anyio.current_time() + CLEANUP_SECONDS)


class _CheckedObject(HeldFile):
    """A saved object whose identity (size, time, ETag) is the one an earlier check
    hashed: fetched into a local temp copy at its first read (only that ETag's bytes,
    hashed again on the way), not to answer whether it is still there."""

    def __init__(
        self,
        out: ObjectVideoStore,
        key: str,
        etag: str,
        shown: Path,
        identity: FileIdentity,
        *,
        size: int,
        sha256: str,
    ) -> None:
        super().__init__(shown, -1, identity, location=out.uri(key))
        self._fd = None  # none yet: see reader
        self._source = (out, key, etag, size, sha256)
        self._closed = False

    def reader(self) -> BinaryIO:
        if self._fd is None and not self._closed:
            out, key, etag, size, sha256 = self._source
            try:
                fd, digest, got = out._fetch(key, if_match=etag)
            except StorageError as exc:  # what reading a file raises: a note, not a crash
                raise OSError(errno.EIO, str(exc)) from exc
            if got != size or digest != sha256:
                os.close(fd)
                raise OSError(errno.EIO, f"{out.uri(key)} changed since it was checked")
            self._fd = fd
        return super().reader()

    def close(self) -> None:
        self._closed = True
        super().close()


class ObjectWriter:
    """One video being uploaded: ``async with store.reserve(...) as w: w.put(b) ...;
    await w.drain() ...; await w.commit()``. Leaving without a successful commit aborts
    the upload and deletes the temporary key."""

    def __init__(self, out: ObjectVideoStore, name: str) -> None:
        self._out = out
        self.name = name
        stem = name[: -len(VIDEO_SUFFIX)]
        self.temp_key = f"{out.prefix}{UPLOADS}{stem}.{secrets.token_hex(8)}.part"
        self._file: AsyncWritableFile | None = None
        self._pending = bytearray()
        self._hash = hashlib.sha256()
        self._size = 0
        self._started = False

    @property
    def bytes_written(self) -> int:
        return self._size

    async def __aenter__(self) -> ObjectWriter:
        self._out._writing.add(self)
        self._file = obstore.open_writer_async(
            self._out._s3(),
            self.temp_key,
            buffer_size=self._out.part_bytes,
            max_concurrency=UPLOAD_CONCURRENCY,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._discard(exc or RuntimeError("left without commit"))

    async def _discard(self, why: BaseException) -> None:
        self._out._writing.discard(self)
        self._pending = bytearray()
        file, self._file = self._file, None
        if file is None:
            return
        # Shielded (it runs while a cancellation unwinds) but bounded: a store that does
        # not answer must not hold the error back (the sweep and the lifecycle rule
        # remove what is left).
        with _cleanup_scope():
            # Left with an error, obstore's writer aborts its multipart upload.
            with contextlib.suppress(Exception):
                await file.__aexit__(type(why), why, why.__traceback__)
            if self._started:  # nothing is there unless a part went or a close ran
                with contextlib.suppress(Exception):
                    await obstore.delete_async(self._out._s3(), self.temp_key)

    def put(self, data: bytes | bytearray | memoryview) -> None:
        """Hash ``data`` and gather it for obstore's writer (:meth:`drain` hands it on)."""
        if self._file is None:
            raise StorageError("The video upload is not open.")
        with memoryview(data).cast("B") as view:
            self._hash.update(view)
            self._pending += view
            self._size += len(view)

    async def drain(self) -> None:
        """Hand the gathered bytes to obstore's writer once there are enough (waiting
        while the storage is busy: the download slows down rather than the memory
        growing)."""
        if len(self._pending) >= HANDOFF_BYTES:
            await self._send()
        else:
            await anyio.lowlevel.checkpoint()

    async def _send(self) -> None:
        file = self._file
        if file is None:
            raise StorageError("The video upload is not open.")
        # Handed over as it is (no copy); a fresh buffer gathers the next piece.
        data, self._pending = self._pending, bytearray()
        self._started = True
        try:
            await file.write(data)
        except (BaseError, OSError) as exc:  # obstore's writer reports some as OSError
            raise storage_error(exc, f"upload {self.name}") from exc

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """:meth:`put`, then :meth:`drain`."""
        self.put(data)
        await self.drain()

    async def commit(self) -> StoredFile:
        """Finish the upload and copy it create-only to the first free name."""
        file = self._file
        if file is None:
            raise StorageError("The video upload is not open.")
        if self._pending:
            await self._send()
        self._started = True
        try:
            await file.close()
        except (BaseError, OSError) as exc:  # a body under a part: one put, its error an OSError
            raise storage_error(exc, f"upload {self.name}") from exc
        self._file = None
        try:
            key = await self._publish()
        finally:
            with _cleanup_scope(), contextlib.suppress(Exception):
                await obstore.delete_async(self._out._s3(), self.temp_key)
            self._out._writing.discard(self)
        try:  # what later checks know it by without fetching it
            identity: FileIdentity | None = identity_of(
                await obstore.head_async(self._out._s3(), key)
            )
        except (BaseError, FileNotFoundError):
            identity = None  # checked by its sha256 when reused
        return StoredFile(
            path=None,
            uri=self._out.uri(key),
            size_bytes=self._size,
            sha256=self._hash.hexdigest(),
            identity=identity,
        )

    async def _publish(self) -> str:
        store = self._out._s3()
        for candidate in candidate_names(self.name):
            key = self._out.key(candidate)
            try:
                await obstore.copy_async(store, self.temp_key, key, overwrite=False)
            except AlreadyExistsError:
                continue
            except BaseError as exc:
                raise storage_error(exc, f"save {self.name}") from exc
            return key
        raise StorageError(f"Could not find a free name for {self.name}; pass another filename.")


def storage_reachable(config: ObjectStorage) -> None:
    """``/readyz``'s check (blocking): one listing under the prefix answers, within a
    few seconds and with no retries; raises otherwise (the reason goes to the log)."""
    quick = replace(
        config,
        max_retries=0,
        retry_timeout=timedelta(seconds=3),
        connect_timeout=timedelta(seconds=2),
        timeout=timedelta(seconds=4),
    )
    probe = ObjectVideoStore(quick)
    try:
        obstore.list_with_delimiter(probe._s3(), probe.prefix or None)
    finally:
        probe.close()
