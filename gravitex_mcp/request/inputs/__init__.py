"""Caller-supplied media -> what travels upstream.

Holds ``resolve`` (https URLs checked and never fetched, data URLs decoded and
bounded, local files read only from the allowed folders; ``locate_media`` then
``resolve_media``) and ``audio`` (audio types by magic bytes). Image types and
sizes come from the shared ``images`` module.

May import: the shared modules only.
"""
