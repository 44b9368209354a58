"""Generating a video: validate, translate, journal and submit, then follow."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from ..catalog.models import ModelSpec
from ..errors import GravitexError, JournalError, SubmitOutcomeUnknownError
from ..request.arguments import GenerateVideoInput
from ..results import GenerateVideoResult
from ..settings import Settings
from ..store.records import TaskRecord
from ..store.seam import TaskStore
from ..upstream.answers import TaskSnapshot
from ..upstream.client import GravitexClient
from ..upstream.waiting import Clock
from .follow import Follow, TaskOutcome
from .progress import ProgressFn
from .saves import OnDisk, Saves

if TYPE_CHECKING:  # checking and preparing a request: loaded by the first generate
    from ..request.prepare import PreparedRequest

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Submission:
    """A task submitted by this call, or found again by its idempotency key."""

    task_id: str
    spec: ModelSpec
    initial: TaskSnapshot | None
    """The submit's answer; ``None`` for a task found again (its status is queried)."""
    notes: tuple[str, ...] = ()
    replayed: bool = False
    on_disk: OnDisk | None = None


class Generate:
    """Generating: check and build the request, journal and send it (or find it again
    by its idempotency key), then follow it."""

    def __init__(
        self,
        *,
        settings: Settings,
        client: GravitexClient,
        journal: TaskStore,
        clock: Clock,
        saves: Saves,
        follower: Follow,
    ) -> None:
        self._settings = settings
        self._client = client
        self._journal = journal
        self._clock = clock
        self._saves = saves
        self._follower = follower

    async def generate(
        self, arguments: Mapping[str, Any], progress: ProgressFn | None = None
    ) -> GenerateVideoResult:
        """Validate, translate and (unless ``dry_run``) submit; then wait and download."""
        request, prepared = await self.prepare(arguments)
        if request.dry_run:
            return GenerateVideoResult(
                task_id="",
                status="dry_run",
                model=prepared.spec.id,
                dry_run=True,
                payload=prepared.body,
                notes=list(prepared.notes),
                next_step="Nothing was sent. Call generate_video without dry_run to submit.",
            )
        submission = await self.submit(prepared, idempotency_key=request.idempotency_key)
        outcome = await self.follow_submission(
            submission,
            wait_seconds=request.wait_seconds,
            download=request.download,
            progress=progress,
        )
        return outcome.result(GenerateVideoResult, replayed=submission.replayed)

    async def prepare(
        self, arguments: Mapping[str, Any]
    ) -> tuple[GenerateVideoInput, PreparedRequest]:
        """The one entry of every check: the raw ``generate_video`` arguments (``null``
        meaning not given) parsed, checked against the model, their media resolved and
        the upstream body built. Raises one InvalidArgumentsError naming every problem."""
        from ..request.prepare import prepare_request
        from ..request.validation import parse_request

        request = parse_request({k: v for k, v in arguments.items() if v is not None})
        # Reading local images is file I/O: keep it off the event loop.
        prepared = await anyio.to_thread.run_sync(
            lambda: prepare_request(
                request,
                input_dirs=self._settings.input_dirs,
                saved_dir=self._settings.output_dir,
                saved_objects=self._saves.output,
            )
        )
        return request, prepared

    async def submit(
        self, prepared: PreparedRequest, *, idempotency_key: str | None = None
    ) -> Submission:
        """Journal and send ``prepared``; with a key already used, find its task instead."""
        from .idempotency import arguments_digest, claim_or_find, repeat_notes, replay_note

        # The body may hold ~27 MB of inline images: hash it off the event loop.
        digest = await anyio.to_thread.run_sync(arguments_digest, prepared)
        notes = list(prepared.notes)
        if idempotency_key is not None:
            found = await claim_or_find(
                self._journal, idempotency_key, prepared, digest=digest, clock=self._clock
            )
            if isinstance(found, TaskRecord) and found.task_id is not None:
                return Submission(
                    task_id=found.task_id,
                    spec=prepared.spec,
                    initial=None,
                    notes=(*notes, replay_note(idempotency_key, found)),
                    replayed=True,
                    on_disk=await self._saves.on_disk(found),
                )
            assert isinstance(found, str)  # claim_or_find: a local id or a task's record
            local_id = found
        else:
            try:
                notes.extend(await repeat_notes(self._journal, digest))
            except JournalError:
                logger.exception("could not look for earlier submissions of these arguments")
            local_id = await self._journal.begin_submission(
                model=prepared.spec.id,
                family=prepared.spec.family.value,
                arguments=prepared.journal_arguments,
                arguments_hash=digest,
            )
        # Once the POST may have left, its answer must reach the journal and the agent:
        # a client cancel here would otherwise lose the id of a paid task. The client's
        # own time-outs bound this.
        with anyio.CancelScope(shield=True):
            submitted = await self._submit(local_id, prepared.body)
        logger.info("submitted task %s (%s)", submitted.task_id, prepared.spec.id)
        return Submission(
            task_id=submitted.task_id, spec=prepared.spec, initial=submitted, notes=tuple(notes)
        )

    async def follow_submission(
        self,
        submission: Submission,
        *,
        wait_seconds: float,
        download: bool,
        progress: ProgressFn | None = None,
    ) -> TaskOutcome:
        """Wait at most ``wait_seconds`` for a submitted task (and save it if asked)."""
        return await self._follower.follow(
            submission.task_id,
            model=submission.spec.id,
            delivery=submission.spec.delivery,
            wait_seconds=wait_seconds,
            download=download,
            progress=progress,
            initial=submission.initial,
            on_disk=submission.on_disk,
            notes=submission.notes,
        )

    async def _submit(self, local_id: str, body: dict[str, Any]) -> TaskSnapshot:
        try:
            submitted = await self._client.submit(body)
        except SubmitOutcomeUnknownError as exc:
            await self._journal.fail_submission(local_id, message=str(exc), outcome_unknown=True)
            raise
        except GravitexError as exc:  # refused (an API error), or never sent
            await self._journal.fail_submission(local_id, message=str(exc), outcome_unknown=False)
            raise
        except BaseException as exc:
            # Not an answer (a bug, the server stopping): the POST may have gone out.
            # Recording it ends the submit's lease, so its key is not held forever.
            try:
                with anyio.CancelScope(shield=True):
                    await self._journal.fail_submission(
                        local_id,
                        message=f"The submit ended without an answer ({type(exc).__name__}); "
                        "a task may exist upstream.",
                        outcome_unknown=True,
                    )
            except JournalError:  # the lease is ended all the same; exc is what matters
                logger.exception("could not record the submit's end in the journal")
            raise
        try:
            await self._journal.complete_submission(
                local_id, task_id=submitted.task_id, status=submitted.status
            )
        except JournalError:
            # The task exists and is paid for: its id must reach the agent even if
            # the journal cannot record it.
            logger.exception("could not record task %s in the journal", submitted.task_id)
        return submitted
