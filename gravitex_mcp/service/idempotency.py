"""Never paying twice: idempotency keys and notes about repeated submissions.

A generation is paid and slow, and agents repeat themselves (a client that timed
out retries; an agent that lost track submits the same prompt again).

* With an ``idempotency_key`` the key is claimed in the journal in the same
  transaction that writes the ``submitting`` row, *before* anything is sent, so
  two calls (or two server processes sharing one state dir) with one key submit
  once. A repeat with the same arguments gets the first call's task back; a
  repeat with other arguments is refused, naming the key.
* Without a key, a submission whose arguments match one of the last
  :data:`RECENT_WINDOW` still goes out (a second take is legitimate), and the
  result notes the earlier task id.

"The same arguments" means the same exact upstream body for the same model
(:func:`arguments_digest`), so two spellings of one setting count as one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from ..domain import JournalStatus
from ..errors import FIND_LOST_SUBMIT, GravitexError, InvalidArgumentsError
from ..request.prepare import PreparedRequest
from ..store.records import TaskRecord
from ..store.seam import TaskStore, patiently
from ..upstream.waiting import Clock

#: A repeat of the same arguments within this window is pointed out in ``notes``.
RECENT_WINDOW: Final = timedelta(minutes=10)
#: How long a call waits for another call holding its key to get its task id.
KEY_WAIT_SECONDS: Final = 10.0
_KEY_POLL_SECONDS: Final = 0.25


@dataclass(frozen=True, slots=True)
class _Submitting:
    """The key's holder has not got its task id yet."""

    holder: TaskRecord


class IdempotencyKeyBusyError(GravitexError):
    """Another call holding the key is still submitting; its outcome is not known yet."""


class IdempotencyKeyUnknownOutcomeError(GravitexError):
    """The key's submission may or may not have created a task; nothing is resubmitted."""


def arguments_digest(prepared: PreparedRequest) -> str:
    """SHA-256 of the model and the exact upstream body, canonically encoded."""
    canonical = json.dumps(
        {"model": prepared.spec.id, "body": prepared.body},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


async def claim_or_find(
    journal: TaskStore, key: str, prepared: PreparedRequest, *, digest: str, clock: Clock
) -> str | TaskRecord:
    """Claim ``key`` for a new submission of ``prepared`` (its local id) or find its task.

    Returns the new submission's local id (the caller submits), or the record of
    the earlier submission with this key and these arguments (nothing is to be
    sent). Raises :class:`~gravitex_mcp.errors.InvalidArgumentsError` when the key
    was used with other arguments, :class:`IdempotencyKeyBusyError` when another
    call is still submitting after :data:`KEY_WAIT_SECONDS`, and
    :class:`IdempotencyKeyUnknownOutcomeError` when the key's submit may have
    created a task whose id never arrived.
    """

    async def attempt() -> str | TaskRecord | _Submitting:
        claim = await journal.claim_key(
            key,
            arguments_hash=digest,
            model=prepared.spec.id,
            family=prepared.spec.family.value,
            arguments=prepared.journal_arguments,
        )
        if claim.local_id is not None:
            return claim.local_id
        holder = claim.holder
        assert holder is not None  # claim_key sets one of the two
        if claim.arguments_hash != digest:
            first = holder.task_id or holder.local_id
            raise InvalidArgumentsError.about(
                "idempotency_key",
                f"{key!r} was already used for task {first} ({holder.model}) with "
                "other arguments; repeat that call's arguments exactly to get its "
                "task back, or use a new key for new arguments",
            )
        if holder.task_id is not None:
            return holder
        if holder.status is JournalStatus.SUBMIT_UNKNOWN:
            # Also what a key held by a server that died mid-submit becomes (the
            # journal sees its lease gone), so nobody waits on it.
            raise IdempotencyKeyUnknownOutcomeError(
                f"The earlier submit with idempotency_key {key!r} (started "
                f"{holder.created_at:%Y-%m-%d %H:%M:%S} UTC) never got its answer: the "
                "server sending it stopped, or the answer was lost. Its outcome is unknown "
                "and a paid task may exist upstream, so nothing was submitted again. "
                f"{FIND_LOST_SUBMIT} or on the Gravitex dashboard; to submit again anyway, "
                "call with a new idempotency_key (a second paid task if the first one exists)."
            )
        return _Submitting(holder)

    def stuck(busy: _Submitting) -> IdempotencyKeyBusyError:
        return IdempotencyKeyBusyError(
            f"Another call with idempotency_key {key!r} is submitting these arguments "
            f"right now (started {busy.holder.created_at:%H:%M:%S} UTC); nothing was sent "
            "twice. Call again with the same key in a few seconds to get its task."
        )

    return await patiently(
        attempt,
        _Submitting,
        clock=clock,
        patience=KEY_WAIT_SECONDS,
        every=_KEY_POLL_SECONDS,
        stuck=stuck,
    )


async def repeat_notes(journal: TaskStore, digest: str) -> list[str]:
    """One note naming the submissions of the same arguments within :data:`RECENT_WINDOW`
    (one note per earlier take piled up as takes went on)."""
    minutes = int(RECENT_WINDOW.total_seconds() // 60)
    earlier = [
        f"{record.task_id} ({record.status.value})"
        for record in await journal.recent_with_arguments(digest, within=RECENT_WINDOW)
        if record.task_id is not None
    ]
    if not earlier:
        return []
    tasks = "task " + earlier[0] if len(earlier) == 1 else "tasks " + ", ".join(earlier)
    return [
        f"The same arguments were submitted in the last {minutes} minutes as {tasks}; "
        "this call submitted a new task (another take). To make retries safe, pass "
        "idempotency_key."
    ]


def replay_note(key: str, record: TaskRecord) -> str:
    """What a repeat with the same key is told."""
    return (
        f"idempotency_key {key!r} was already used with these arguments: this is task "
        f"{record.task_id}, submitted at {record.created_at:%Y-%m-%d %H:%M:%S} UTC; "
        "nothing new was submitted (no new charge)."
    )
