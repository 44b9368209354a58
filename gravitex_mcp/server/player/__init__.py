"""The in-chat video player: an MCP Apps (``io.modelcontextprotocol/ui``) resource.

``ui://gravitex/player.html`` is one self-contained HTML file built from
``player/`` at the repository root (``npm run build``) and shipped in the
package, so installing needs no Node. It is offered through the SDK's
:class:`~mcp.server.apps.Apps` extension, which also advertises the extension
to clients; the three video tools name it in ``_meta.ui.resourceUri``.

The tools are stamped here rather than registered with ``@apps.tool``: they are
built as :class:`~mcp.server.mcpserver.tools.Tool` objects (``generate_video``'s
input schema comes from its pydantic model), which ``Apps.tool`` cannot take.
The stamp is the same ``{"ui": {"resourceUri": ...}}`` that decorator writes.

The resource's ``_meta.ui.csp.resourceDomains`` must admit the origin of the
media links, which over stdio is known only once the loopback media server has
its port: :meth:`Player.admit_media_origins` sets it then.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from importlib import resources
from typing import Any

from mcp.server.apps import APP_MIME_TYPE, Apps
from mcp.server.mcpserver.resources import TextResource
from mcp.server.mcpserver.tools import Tool

PLAYER_URI = "ui://gravitex/player.html"
#: The tools whose results the player shows.
PLAYER_TOOLS = ("generate_video", "check_video_task", "download_video")
HTML_FILE = "player.html"


def player_html() -> str:
    """The built player page shipped with the package."""
    return resources.files(__package__).joinpath(HTML_FILE).read_text(encoding="utf-8")


def tool_meta() -> dict[str, Any]:
    """The ``_meta`` binding a tool to the player (what ``Apps.tool`` stamps)."""
    return {"ui": {"resourceUri": PLAYER_URI}}


def _resource_meta(origins: Iterable[str]) -> dict[str, Any]:
    domains = sorted(set(origins))
    ui: dict[str, Any] = {"prefersBorder": True}
    if domains:
        ui["csp"] = {"resourceDomains": domains}
    return {"ui": ui}


class Player:
    """The Apps extension carrying the player resource, and the binding of its tools."""

    def __init__(self, *, html: str | None = None, media_origins: Sequence[str] = ()) -> None:
        self.resource = TextResource(
            uri=PLAYER_URI,
            name="player",
            title="Video player",
            description=(
                "Shows a video task's progress, then plays the saved video from its media link."
            ),
            mime_type=APP_MIME_TYPE,
            text=player_html() if html is None else html,
            meta=_resource_meta(media_origins),
        )
        self.apps = Apps()
        self.apps.add_resource(self.resource)

    def admit_media_origins(self, origins: Iterable[str]) -> None:
        """Let the player load media from ``origins`` (its CSP ``resourceDomains``)."""
        self.resource.meta = _resource_meta(origins)

    @staticmethod
    def bind(tools: Sequence[Tool]) -> None:
        """Name the player in the ``_meta.ui.resourceUri`` of the video tools."""
        for tool in tools:
            if tool.name in PLAYER_TOOLS:
                tool.meta = {**(tool.meta or {}), **tool_meta()}


__all__ = ["PLAYER_TOOLS", "PLAYER_URI", "Player", "player_html", "tool_meta"]
