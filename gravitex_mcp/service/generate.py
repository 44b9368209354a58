"""Generating a video: validate, translate, journal and submit, then follow."""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from ..catalog.models import ModelSpec, job_seconds
from ..errors import GravitexError, JournalError, SubmitOutcomeUnknownError
from ..request.arguments import GenerateVideoInput
from ..results import GenerateVideoResult
from ..settings import Settings
from ..store.records import OverBudget, TaskRecord
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


class OverBudgetError(GravitexError):
    """A submission would take the user past their daily budget; nothing was sent."""


def prepared_seconds(prepared: PreparedRequest) -> float:
    """Seconds of video one checked job asks for (as confirmation counts them)."""
    return job_seconds(prepared.spec.id, prepared.journal_arguments.get("duration"))


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
        #: the folder of the caller's saved files, the one readable as input besides
        #: GRAVITEX_INPUT_DIRS (the output folder for the local user)
        self._saved_dir: Path = settings.output_dir
        #: the caller's seconds of video per UTC day (None: no cap)
        self._budget: float | None = settings.budget_seconds_per_day

    def for_user(
        self,
        journal: TaskStore,
        saves: Saves,
        follower: Follow,
        *,
        saved_dir: Path,
        budget: float | None,
    ) -> Generate:
        """Generating for one user: their stores, their folder, their budget."""
        view = copy.copy(self)
        view._journal, view._saves, view._follower = journal, saves, follower
        view._saved_dir, view._budget = saved_dir, budget
        return view

    @property
    def budget(self) -> float | None:
        """The caller's seconds of video per UTC day (None: no cap)."""
        return self._budget

    async def reserve(self, jobs: Sequence[PreparedRequest]) -> tuple[int, ...]:
        """Reserve every job's seconds against the caller's budget for today, all or
        none, before anything is sent; one reservation id per job (given back by
        :meth:`submit` when its job sends nothing). Raises :class:`OverBudgetError`."""
        seconds = [prepared_seconds(p) for p in jobs]
        got = await self._journal.reserve_seconds(seconds, budget=self._budget)
        if isinstance(got, OverBudget):
            asked = sum(seconds)
            what = f"{len(jobs)} videos, " if len(jobs) > 1 else ""
            raise OverBudgetError(
                f"Over your daily budget: this asks for {what}{asked:g} seconds of video, "
                f"and you have used {got.used:g} of your {got.budget:g} seconds today "
                f"(UTC), so {got.left:g} are left. Nothing was sent. Ask for "
                f"{got.left:g} seconds or fewer, or wait for 00:00 UTC (get_usage shows "
                "what is used)."
            )
        return got.ids

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
        submission = await self.submit(
            prepared, idempotency_key=request.idempotency_key, budgeted=True
        )
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
                saved_dir=self._saved_dir,
                saved_objects=self._saves.output,
            )
        )
        return request, prepared

    async def submit(
        self,
        prepared: PreparedRequest,
        *,
        idempotency_key: str | None = None,
        reservation: int | None = None,
        budgeted: bool = False,
    ) -> Submission:
        """Journal and send ``prepared``; with a key already used, find its task instead.

        Its seconds count against the caller's budget: ``reservation`` made beforehand
        (:meth:`reserve`, a batch's), or with ``budgeted`` reserved here just before the
        send (after a key is claimed: a key that finds its task costs nothing, even over
        the budget). They are given back when nothing is sent: a key found again, or a
        submit the API refused (one whose outcome is unknown keeps them)."""
        held = [] if reservation is None else [reservation]
        try:
            return await self._submit_reserved(prepared, idempotency_key, held, budgeted)
        except GravitexError as exc:
            # Refused, or never sent: nothing to pay for. An unknown outcome (or anything
            # not an answer) may have created a task: its seconds stay counted.
            if held and not isinstance(exc, SubmitOutcomeUnknownError):
                await self._give_back(held.pop())
            raise

    async def _give_back(self, reservation: int) -> None:
        try:
            with anyio.CancelScope(shield=True):
                await self._journal.release_seconds(reservation)
        except JournalError:
            logger.exception("could not give back reserved seconds")

    async def _submit_reserved(
        self,
        prepared: PreparedRequest,
        idempotency_key: str | None,
        held: list[int],
        budgeted: bool,
    ) -> Submission:
        from .idempotency import arguments_digest, claim_or_find, repeat_notes, replay_note

        # The body may hold ~27 MB of inline images: hash it off the event loop.
        digest = await anyio.to_thread.run_sync(arguments_digest, prepared)
        notes = list(prepared.notes)
        if idempotency_key is not None:
            found = await claim_or_find(
                self._journal, idempotency_key, prepared, digest=digest, clock=self._clock
            )
            if isinstance(found, TaskRecord) and found.task_id is not None:
                if held:  # nothing new is sent
                    await self._give_back(held.pop())
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
            if budgeted:
                try:
                    held.extend(await self.reserve([prepared]))
                except GravitexError as exc:  # over budget: the key's claim ends unsent
                    await self._journal.fail_submission(
                        local_id, message=str(exc), outcome_unknown=False
                    )
                    raise
        else:
            if budgeted:
                held.extend(await self.reserve([prepared]))
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
