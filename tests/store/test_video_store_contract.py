"""The VideoStore contract, once, for every store: the output folder and S3 (SeaweedFS).

reserve / write / commit; no clobber (``stem-N``); a failed write leaves nothing under a
final name; open_checked verifies (gone, changed); links. Real storage, never a mock.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from gravitex_mcp.errors import StorageError
from gravitex_mcp.settings import load_settings
from gravitex_mcp.store.objects import HANDOFF_BYTES, ObjectVideoStore
from gravitex_mcp.store.ondisk import Changed, HeldFile
from gravitex_mcp.store.seam import StoredFile, VideoStore
from gravitex_mcp.store.storage import OutputDir
from tests.clips import make_clip
from tests.conftest import S3Bucket

pytestmark = pytest.mark.slow  # a real SeaweedFS server

#: Small parts so a test video spans several of them.
PART = 5 * 1024 * 1024


@dataclass
class Subject:
    """A store under test, with how to peek at what it holds (outside the protocol)."""

    store: VideoStore
    bucket: S3Bucket | None = None

    def listing(self) -> set[str]:
        store = self.store
        if isinstance(store, OutputDir):
            return {p.name for p in store.path.iterdir()}
        assert isinstance(store, ObjectVideoStore)
        import obstore

        assert store.store is not None
        return {m["path"] for batch in obstore.list(store.store) for m in batch}

    def final_names(self) -> set[str]:
        """Names a reader sees (no temp files or uploads)."""
        return {
            n.rsplit("/", 1)[-1]
            for n in self.listing()
            if "/_uploads/" not in n and not n.rsplit("/", 1)[-1].startswith(".")
        }

    def open_uploads(self) -> int:
        """Multipart uploads begun and neither completed nor aborted (S3's own listing:
        obstore has none); 0 for the folder."""
        if self.bucket is None:
            return 0
        answer = self.bucket.server.credentials.signed_request(
            "GET", f"/{self.bucket.bucket}", query={"uploads": ""}
        )
        assert answer.status_code == 200, answer.text
        return answer.text.count("<Upload>")

    def tamper(self, stored: StoredFile, data: bytes) -> None:
        store = self.store
        if isinstance(store, OutputDir):
            assert stored.path is not None
            stored.path.write_bytes(data)
            return
        assert isinstance(store, ObjectVideoStore)
        import obstore

        key = store.key_of(stored.uri)
        assert key is not None
        assert store.store is not None
        obstore.put(store.store, key, data)

    def remove(self, stored: StoredFile) -> None:
        store = self.store
        if isinstance(store, OutputDir):
            assert stored.path is not None
            stored.path.unlink()
            return
        assert isinstance(store, ObjectVideoStore)
        import obstore

        key = store.key_of(stored.uri)
        assert key is not None
        assert store.store is not None
        obstore.delete(store.store, key)


def object_store(bucket: S3Bucket, prefix: str = "team/videos", **kw: object) -> ObjectVideoStore:
    settings = load_settings(bucket.storage_env(prefix))
    assert settings.storage is not None
    return ObjectVideoStore(settings.storage, part_bytes=PART, **kw)  # type: ignore[arg-type]


@pytest.fixture(params=["folder", "s3"])
async def subject(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Subject]:
    if request.param == "folder":
        yield Subject(OutputDir(tmp_path / "out"))
        return
    bucket: S3Bucket = request.getfixturevalue("s3_bucket")
    store = object_store(bucket, temp_dir=tmp_path)
    try:
        yield Subject(store, bucket)
    finally:
        store.close()


async def save(
    store: VideoStore, data: bytes, name: str | None, chunk: int = 64 * 1024
) -> StoredFile:
    async with store.reserve(name, default_stem="task") as writer:
        for i in range(0, len(data), chunk):
            writer.put(data[i : i + chunk])
            await writer.drain()
        return await writer.commit()


def blob(size: int, seed: int = 1) -> bytes:
    return hashlib.shake_256(seed.to_bytes(4, "big")).digest(size)


def opened(
    store: VideoStore, stored: StoredFile
) -> AbstractContextManager[HeldFile | Changed | None]:
    found = store.open_checked(
        stored.location, size=stored.size_bytes, sha256=stored.sha256, recorded=stored.identity
    )

    @contextmanager
    def holding() -> Iterator[HeldFile | Changed | None]:
        try:
            yield found
        finally:
            if isinstance(found, HeldFile):
                found.close()

    return holding()


async def test_a_video_is_written_hashed_and_published(subject: Subject) -> None:
    data = blob(12 * 1024 * 1024 + 123)  # over two parts, and a short last one
    stored = await save(subject.store, data, "My clip")
    assert stored.size_bytes == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert subject.final_names() == {"My clip.mp4"}
    if isinstance(subject.store, ObjectVideoStore):
        assert stored.path is None
        assert stored.uri == f"s3://{subject.store.bucket}/team/videos/My clip.mp4"
        assert subject.listing() == {"team/videos/My clip.mp4"}  # the upload is gone
    else:
        assert stored.path is not None
        assert stored.uri == stored.path.as_uri()
    with opened(subject.store, stored) as found:
        assert isinstance(found, HeldFile)
        with found.reader() as reader:
            assert hashlib.sha256(reader.read()).hexdigest() == stored.sha256


async def test_a_taken_name_moves_on_and_nothing_is_clobbered(subject: Subject) -> None:
    first = await save(subject.store, b"first", "clip")
    second = await save(subject.store, b"second", "clip.mp4")
    results = []

    async def one(i: int) -> None:
        results.append(await save(subject.store, f"racer {i}".encode(), "clip"))

    async with anyio.create_task_group() as group:
        for i in range(8):  # racing for the same free names: each gets its own
            group.start_soon(one, i)
    assert subject.final_names() == {"clip.mp4"} | {f"clip-{n}.mp4" for n in range(1, 10)}
    assert {r.location for r in results} | {first.location, second.location} == {
        s.location for s in [first, second, *results]
    }
    assert len({str(r.location) for r in [first, second, *results]}) == 10
    for stored in results:  # each racer's bytes are under its own name, none replaced
        with opened(subject.store, stored) as found:
            assert isinstance(found, HeldFile)
    for stored, data in [(first, b"first"), (second, b"second")]:
        with opened(subject.store, stored) as found:
            assert isinstance(found, HeldFile)
            assert found.reader().read() == data


async def test_a_failed_write_leaves_nothing(subject: Subject) -> None:
    async def cut() -> None:
        async with subject.store.reserve("broken", default_stem="t") as writer:
            await writer.write(blob(6 * 1024 * 1024))  # a part is on its way
            assert subject.store.bytes_so_far("broken", default_stem="t") == 6 * 1024 * 1024
            raise RuntimeError("cut")

    with pytest.raises(RuntimeError, match="cut"):
        await cut()
    assert subject.store.bytes_so_far("broken", default_stem="t") is None
    assert subject.listing() == set()
    assert subject.open_uploads() == 0  # the multipart upload was aborted
    # Left without a commit: discarded too.
    async with subject.store.reserve("uncommitted", default_stem="t") as writer:
        await writer.write(b"x")
    assert subject.listing() == set()


async def test_open_checked_says_gone_or_changed(subject: Subject) -> None:
    stored = await save(subject.store, b"original bytes", "v")
    subject.tamper(stored, b"other bytes!!!")  # same size
    with opened(subject.store, stored) as found:
        assert isinstance(found, Changed)
        assert "sha256 differs" in found.sentence()
    subject.tamper(stored, b"short")
    with opened(subject.store, stored) as found:
        assert isinstance(found, Changed)
        assert "bytes, not" in found.why
    subject.remove(stored)
    with opened(subject.store, stored) as found:
        assert found is None


async def test_a_real_clip_is_looked_at_through_the_checked_copy(
    subject: Subject, tmp_path: Path
) -> None:
    from gravitex_mcp.service.looks import extract, look_at
    from gravitex_mcp.video.probe import probe_video

    clip = make_clip(tmp_path / "src.mp4", 2)
    stored = await save(subject.store, clip.read_bytes(), "clip", chunk=4096)
    with opened(subject.store, stored) as found:
        assert isinstance(found, HeldFile)
        assert found.location == stored.location
        probe = probe_video(found)
        assert probe.duration_seconds == pytest.approx(2.0, abs=0.2)
        seen = look_at(found, {}, stills=subject.store)
        assert seen.preview is not None, seen.notes
        # The sheet sits beside the video, and a second look reuses it.
        assert look_at(found, {}, stills=subject.store).preview == seen.preview
        [frame] = extract(found, [0.5], stills=subject.store)
        [again] = extract(found, [0.5], stills=subject.store)
        assert again.frame == frame.frame
    assert subject.final_names() == {
        "clip.mp4",
        "clip.contact.jpg",
        "clip.frame-0.500s.png",
    }
    if isinstance(subject.store, ObjectVideoStore):
        sheet = f"s3://{subject.store.bucket}/team/videos/clip.contact.jpg"
        assert (seen.preview.path, seen.preview.uri) == (sheet, sheet)
        assert frame.frame.uri.endswith("/team/videos/clip.frame-0.500s.png")


async def test_scratch_is_a_local_file_removed_on_exit(subject: Subject) -> None:
    with subject.store.scratch("join") as tmp:
        tmp.write_bytes(b"work")
        assert tmp.is_file()
    assert not tmp.exists()
    assert subject.final_names() == set()


async def test_recover_leaves_finished_videos(subject: Subject) -> None:
    stored = await save(subject.store, b"kept", "kept")
    await anyio.to_thread.run_sync(subject.store.recover)
    with opened(subject.store, stored) as found:
        assert isinstance(found, HeldFile)


# --- S3 only: the prefix, links, a failing store ----------------------------------------


async def test_other_locations_are_refused(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    store = object_store(s3_bucket, temp_dir=tmp_path)
    try:
        stored = await save(store, b"v", "v")
        assert store.key_of(stored.uri) == "team/videos/v.mp4"
        for other in [
            f"s3://{store.bucket}/v.mp4",  # outside the prefix
            f"s3://{store.bucket}/team/videos/sub/v.mp4",
            f"s3://{store.bucket}/team/videos/_uploads/v.part",
            "s3://other-bucket/team/videos/v.mp4",
            "/etc/passwd",
        ]:
            assert store.key_of(other) is None, other
            assert store.media_url(other) is None
            found = store.open_checked(other, size=1, sha256="0", recorded=None)
            assert isinstance(found, Changed)
    finally:
        store.close()


async def test_a_media_url_is_a_presigned_get_with_ranges(
    s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    import httpx2

    data = blob(300_000)
    store = object_store(s3_bucket, temp_dir=tmp_path)
    try:
        stored = await save(store, data, "watch me")
        url = store.media_url(stored.uri)
        assert url is not None
        assert "X-Amz-Signature=" in url
        assert "X-Amz-Expires=3600" in url
        async with httpx2.AsyncClient() as http:
            whole = await http.get(url)
            assert whole.status_code == 200
            assert whole.content == data
            part = await http.get(url, headers={"Range": "bytes=100-199"})
            assert part.status_code == 206
            assert part.content == data[100:200]
            assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
            forged = await http.get(url.replace("watch%20me", "other"))
            assert forged.status_code in (403, 404)
    finally:
        store.close()


async def test_a_failing_store_loses_nothing_and_a_later_save_finishes(
    s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    store = object_store(s3_bucket, temp_dir=tmp_path)
    store_settings = store.config
    data = blob(7 * 1024 * 1024)
    try:
        # The storage goes away mid-upload: a clear error, nothing under a final key.
        async def cut_off() -> None:
            async with store.reserve("late", default_stem="t") as writer:
                writer.put(data[: PART + 1])
                s3_bucket.server.stop()
                await writer.drain()
                await writer.commit()

        with pytest.raises(StorageError, match="storage unreachable; the task stays downloadable"):
            await cut_off()
        s3_bucket.server.start()
        import obstore

        assert store.store is not None
        keys = {m["path"] for b in obstore.list(store.store) for m in b}
        assert not {k for k in keys if not k.startswith("team/videos/_uploads/")}
        # A later call finishes the save.
        stored = await save(store, data, "late")
        assert stored.uri.endswith("/team/videos/late.mp4")
        assert store_settings.max_retries >= 0
    finally:
        s3_bucket.server.start()
        store.close()


async def test_a_stalled_store_fails_the_save_in_bounded_time_and_keeps_nothing(
    s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    settings = load_settings(s3_bucket.storage_env("team/videos")).storage
    assert settings is not None
    quick = replace(
        settings,
        timeout=timedelta(seconds=2),
        retry_timeout=timedelta(seconds=3),
        max_retries=1,
    )
    store = ObjectVideoStore(quick, part_bytes=PART, temp_dir=tmp_path)
    data = blob(PART + 1000)
    try:
        s3_bucket.server.pause()
        try:
            with anyio.fail_after(60), pytest.raises(StorageError, match="storage unreachable"):
                await save(store, data, "stalled")
        finally:
            s3_bucket.server.resume()
        assert Subject(store).final_names() == set()  # nothing under a final key
        stored = await save(store, data, "stalled")
        assert stored.uri.endswith("/team/videos/stalled.mp4")
    finally:
        store.close()


async def test_the_writer_holds_at_most_a_handoff_whatever_the_video_size(
    s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    store = object_store(s3_bucket, temp_dir=tmp_path)
    most = 0
    chunk = 256 * 1024
    try:
        async with store.reserve("big", default_stem="t") as writer:
            for i in range(96):  # 24 MiB in 256 KiB pieces
                writer.put(blob(chunk, seed=i))
                most = max(most, len(writer._pending))
                await writer.drain()
            stored = await writer.commit()
        assert stored.size_bytes == 96 * chunk
        # Obstore's writer holds the part it fills and the one going up (PART_BYTES,
        # UPLOAD_CONCURRENCY); this one only what it has not handed over yet.
        assert most <= HANDOFF_BYTES + chunk
    finally:
        store.close()


async def test_recover_deletes_the_stale_uploads_of_dead_writers_only(
    s3_bucket: S3Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import obstore

    from gravitex_mcp.store import objects

    store = object_store(s3_bucket, temp_dir=tmp_path)
    try:
        assert store.store is not None
        kept = await save(store, b"video", "kept")
        obstore.put(store.store, "team/videos/_uploads/dead.0123.part", b"half a video")
        obstore.put(store.store, "elsewhere/_uploads/other.part", b"not ours")
        assert store.recover() == []  # young: a live writer's, perhaps
        monkeypatch.setattr(objects, "STALE_UPLOAD", timedelta(seconds=-60))
        removed = store.recover()
        assert removed == [Path("team/videos/_uploads/dead.0123.part")]
        keys = {m["path"] for batch in obstore.list(store.store) for m in batch}
        assert keys == {"team/videos/kept.mp4", "elsewhere/_uploads/other.part"}
        assert store.key_of(kept.uri) == "team/videos/kept.mp4"
    finally:
        store.close()


async def test_a_checked_object_is_fetched_again_only_when_read(
    s3_bucket: S3Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = object_store(s3_bucket, temp_dir=tmp_path)
    try:
        stored = await save(store, b"the saved bytes", "v")
        subject = Subject(store, s3_bucket)
        with opened(store, stored) as first:
            assert isinstance(first, HeldFile)
            identity = first.identity
        fetches: list[str] = []
        real = store._fetch

        def counting(key: str, *, if_match: str | None) -> tuple[int, str, int]:
            fetches.append(key)
            return real(key, if_match=if_match)

        monkeypatch.setattr(store, "_fetch", counting)
        again = store.open_checked(
            stored.uri, size=stored.size_bytes, sha256=stored.sha256, recorded=identity
        )
        assert isinstance(again, HeldFile)
        with again:
            assert again.identity == identity
            assert fetches == []  # known by its ETag: nothing fetched to say so
            assert again.reader().read() == b"the saved bytes"
            assert fetches == ["team/videos/v.mp4"]
        subject.tamper(stored, b"other bytes, same size!"[: stored.size_bytes])
        changed = store.open_checked(
            stored.uri, size=stored.size_bytes, sha256=stored.sha256, recorded=identity
        )
        assert isinstance(changed, Changed)  # a new ETag: hashed again, and it differs
    finally:
        store.close()


async def test_racing_create_only_copies_have_one_winner(
    s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    """What no-clobber rests on: of copies racing to one key, exactly one lands (with
    the default multipart mode, SeaweedFS lets several land in most rounds)."""
    import obstore
    from obstore.exceptions import AlreadyExistsError

    store = object_store(s3_bucket, temp_dir=tmp_path)
    s3 = store.store
    assert s3 is not None
    try:
        for round_ in range(6):
            for i in range(6):
                await obstore.put_async(s3, f"src/{round_}-{i}", str(i).encode())
            wins: list[int] = []

            async def copy(i: int, round_: int = round_, wins: list[int] = wins) -> None:
                try:
                    await obstore.copy_async(
                        s3, f"src/{round_}-{i}", f"dst/{round_}", overwrite=False
                    )
                except AlreadyExistsError:
                    return
                wins.append(i)

            async with anyio.create_task_group() as group:
                for i in range(6):
                    group.start_soon(copy, i)
            assert len(wins) == 1, f"round {round_}: copies {wins} all landed"
            landed = bytes(await (await obstore.get_async(s3, f"dst/{round_}")).bytes_async())
            assert landed == str(wins[0]).encode()
    finally:
        store.close()


async def test_readiness_asks_the_storage(s3_bucket: S3Bucket) -> None:
    from gravitex_mcp.store.objects import storage_reachable

    config = load_settings(s3_bucket.storage_env("team/videos")).storage
    assert config is not None
    storage_reachable(config)
    s3_bucket.server.stop()
    try:
        with pytest.raises(Exception, match=r"(?i)error|connect"):
            storage_reachable(config)
    finally:
        s3_bucket.server.start()
    storage_reachable(config)
