"""Caller-supplied media -> what travels upstream.

Holds ``resolve`` (the entry: ``locate_media`` then ``LocatedMedia.resolve``), one
module per form a value takes (``urls``: https URLs checked and never fetched;
``data_urls``: decoded and bounded; ``paths``: local files read only from the allowed
folders), ``media`` (the kinds, the limits, the checked result, the refusal) and
``audio`` (audio types by magic bytes). Image types and sizes come from the shared
``images`` module.

May import: the shared modules only.
"""
