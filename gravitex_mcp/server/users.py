"""Who a tool call is for, whose key pays, and the checks before spending.

- :func:`caller_of`: the one place a tool learns its :class:`~.callers.Caller` and
  the upstream key that pays for what the call causes: the request's
  ``X-Gravitex-Api-Key`` header (only with ``GRAVITEX_USER_KEYS=1``), else the user's
  ``upstream_key`` from the tokens file, else None (the server's ``GRAVITEX_API_KEY``).
  The service gets both as arguments (``VideoService.acting_for``); nothing in
  service/ reads the request.
- :func:`ask_to_spend`: the SDK resolver (``Resolve``) behind
  ``GRAVITEX_CONFIRM_OVER_SECONDS``: a submission of more seconds than that asks the
  person (``Elicit``) unless the call says ``confirm: true``; :meth:`Spending.admit`
  turns the answer into go-ahead or a refusal before anything is sent, and takes the
  submits from ``GRAVITEX_SUBMITS_PER_MINUTE`` in the task store
  (``TaskStore.take_submits``: one count per user, shared by every replica).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from mcp.server.elicitation import (
    AcceptedElicitation,
    CancelledElicitation,
    DeclinedElicitation,
    ElicitationResult,
)
from mcp.server.mcpserver import Context, Elicit, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from ..catalog import models as catalog
from ..settings import Settings
from ..store.seam import TaskStore
from .callers import Caller, CallerVerifier, current_caller

#: The request header that carries a caller's own Gravitex key (GRAVITEX_USER_KEYS=1).
KEY_HEADER = "x-gravitex-api-key"


def caller_of(
    ctx: Context, verifier: CallerVerifier | None, settings: Settings
) -> tuple[Caller, str | None]:
    """The caller of the tool call ``ctx`` and the key that pays for it (None: the
    server's key)."""
    caller = current_caller(verifier)
    headers = ctx.headers or {}
    if settings.user_keys:
        given = next((v for k, v in headers.items() if k.lower() == KEY_HEADER), None)
        if given is not None and given.strip():
            return caller, given.strip()
    if caller.upstream_key is not None:
        return caller, caller.upstream_key.get_secret_value()
    return caller, None


class Approval(BaseModel):
    """What the person is asked before a large submission."""

    approve: bool = Field(description="Submit (and pay for) this video generation.")


#: What the resolver answers when the client cannot be asked (no elicitation).
@dataclass(frozen=True)
class CannotAsk:
    seconds: float


@dataclass(frozen=True)
class NoNeed:
    """Nothing to ask: under the limit, a dry run, or ``confirm: true`` given."""


def _job_seconds(job: Mapping[str, Any]) -> float:
    return catalog.job_seconds(job.get("model"), job.get("duration"))


def submission_seconds(arguments: Mapping[str, Any]) -> float:
    """Seconds of video a generate_video / generate_videos call asks for: every job
    counted; the duration given, else the model's default (its shortest) from the
    catalog."""
    jobs = arguments.get("jobs")
    if isinstance(jobs, list):
        return sum(_job_seconds(j) for j in jobs if isinstance(j, Mapping))
    return _job_seconds(arguments)


def _jobs(arguments: Mapping[str, Any]) -> int:
    jobs = arguments.get("jobs")
    return len(jobs) if isinstance(jobs, list) else 1


@dataclass
class Spending:
    """The checks before a submission (from the settings): confirmation and rate."""

    confirm_over_seconds: int | None = None
    submits_per_minute: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Spending:
        return cls(settings.confirm_over_seconds, settings.submits_per_minute)

    async def admit(
        self, tasks: TaskStore, arguments: Mapping[str, Any], approval: ElicitationResult[Any]
    ) -> None:
        """Raise a :class:`ToolError` (nothing sent) unless the submission may go."""
        if arguments.get("dry_run") is True:
            return
        if isinstance(approval, DeclinedElicitation | CancelledElicitation):
            how = "declined" if isinstance(approval, DeclinedElicitation) else "cancelled"
            raise ToolError(f"The person {how} this submission; nothing was sent.")
        data = approval.data if isinstance(approval, AcceptedElicitation) else None
        if isinstance(data, CannotAsk):
            raise ToolError(
                f"This asks for {data.seconds:g} seconds of video, more than the "
                f"{self.confirm_over_seconds} this server submits without approval, and this "
                "client cannot ask the person. Nothing was sent. Check with the person, then "
                "call again with confirm: true."
            )
        if isinstance(data, Approval) and not data.approve:
            raise ToolError("The person did not approve this submission; nothing was sent.")
        if self.submits_per_minute is not None:
            limit = self.submits_per_minute
            refused = await tasks.take_submits(_jobs(arguments), per_minute=limit)
            if refused is not None:
                seconds = max(1, math.ceil(refused.retry_after))
                raise ToolError(
                    f"Too many submissions: this server allows {limit} per minute per user. "
                    f"Nothing was sent. Retry in {seconds} s."
                )


def _arguments(ctx: Context) -> Mapping[str, Any]:
    params = ctx.request_context.params or {}
    arguments = params.get("arguments")
    return arguments if isinstance(arguments, Mapping) else {}


async def check_spending(
    ctx: Context, tasks: TaskStore, arguments: Mapping[str, Any], approval: ElicitationResult[Any]
) -> None:
    """Before a submitting tool sends anything: :meth:`Spending.admit` for its call
    (``tasks``: the caller's task store)."""
    spending = _spending(ctx)
    if spending is not None:
        await spending.admit(tasks, arguments, approval)


def _spending(ctx: Context) -> Spending | None:
    spending = getattr(ctx.request_context.lifespan_context, "spending", None)
    return spending if isinstance(spending, Spending) else None


async def ask_to_spend(ctx: Context) -> Approval | NoNeed | CannotAsk | Elicit[Approval]:
    """The SDK resolver of a submitting tool's approval (see the module notes)."""
    spending = _spending(ctx)
    arguments = _arguments(ctx)
    limit = spending.confirm_over_seconds if spending is not None else None
    if limit is None or arguments.get("dry_run") is True or arguments.get("confirm") is True:
        return NoNeed()
    seconds = submission_seconds(arguments)
    if seconds <= limit:
        return NoNeed()
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    if elicitation is None or (elicitation.form is None and elicitation.url is not None):
        return CannotAsk(seconds)
    jobs = _jobs(arguments)
    what = f"{jobs} videos, " if jobs > 1 else ""
    return Elicit(
        f"Generate {what}{seconds:g} seconds of video in all? This server asks before "
        f"submitting more than {limit} seconds, which your Gravitex key pays for.",
        Approval,
    )


#: The parameter a submitting tool takes for its approval (filled by the SDK).
ApprovalParameter = Annotated[ElicitationResult[Approval], Resolve(ask_to_spend)]
