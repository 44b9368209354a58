"""Where a task's video comes from (its model's delivery), for tasks known or not."""

from __future__ import annotations

from ..catalog import models as catalog
from ..domain import Delivery, Family
from ..errors import GravitexError
from ..store.records import TaskRecord
from ..upstream.answers import TaskSnapshot


def delivery_of(record: TaskRecord | None) -> Delivery | None:
    """Where a journalled task's video comes from: its model's (or else family's) entry."""
    if record is None:
        return None
    try:
        return catalog.get_model(record.model).delivery
    except GravitexError:
        try:
            family = Family(record.family)
        except ValueError:
            return None
        return next((m.delivery for m in catalog.models(family)), None)


def delivery_from_answer(snapshot: TaskSnapshot) -> Delivery:
    """For a task the journal does not know: the model its query answer names, if known;
    else its video URL, and without one the download endpoint (the only other source)."""
    model = snapshot.raw.get("model")
    if isinstance(model, str):
        try:
            return catalog.get_model(model.strip()).delivery
        except GravitexError:
            pass
    return Delivery.TASK_URL if snapshot.url else Delivery.DOWNLOAD_ENDPOINT
