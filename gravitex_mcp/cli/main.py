"""The ``gravitex-mcp`` command: serve (default), demo, simulator, schemas.

A bad flag, a missing key or an unwritable folder ends with one line on
stderr naming the fix and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import anyio

from .. import __version__
from ..catalog import models as catalog
from ..errors import ConfigurationError, JournalError, first_failure
from ..logs import configure_logging
from ..settings import ENVIRONMENT_VARIABLES, LOG_LEVELS, Settings, is_loopback, load_settings

logger = logging.getLogger(__name__)

PROG = "gravitex-mcp"


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag on one line, naming the flag."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {PROG} --help)\n")

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._refuse_unknown_flags(sys.argv[1:] if args is None else list(args))
        return super().parse_known_args(args, namespace)

    def _refuse_unknown_flags(self, args: list[str]) -> None:
        # argparse would take the value after a mistyped flag for the command name
        # ("invalid choice: 'x'"); name the flag instead, with the nearest real one.
        known = [s for a in self._actions for s in a.option_strings if s.startswith("--")]
        commands: set[str] = set()
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                commands.update(action.choices)
        for word in args:
            if word == "--" or word in commands:
                return  # the rest belongs to a command's own parser
            if not word.startswith("--"):
                continue
            flag = word.split("=", 1)[0]
            if any(k.startswith(flag) for k in known):  # argparse also takes unique prefixes
                continue
            import difflib  # only a mistyped flag needs it

            near = difflib.get_close_matches(flag, known, n=1)
            hint = f"; did you mean {near[0]}?" if near else ""
            self.error(f"unrecognized option {flag}{hint}")


COMMANDS = ("serve", "demo", "simulator", "schemas")


class _InputDirs(argparse._ExtendAction):
    """``--input-dir A B``: several folders after one flag (the bundle passes a list).

    It takes every word up to the next flag, so a command name there is a mistake.
    """

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        for value in values or ():
            if value in COMMANDS:
                parser.error(
                    f"--input-dir took the command {value!r} for a folder: it takes every word "
                    f"up to the next flag, so put it after the command (./{value} names a folder)"
                )
        super().__call__(parser, namespace, values, option_string)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: a whole number from 1 to 65535")
    return value


def _default(value: object, top: bool) -> object:
    # On a subcommand, an option not given must not overwrite the one given before
    # the subcommand name (gravitex-mcp --output-dir X demo).
    return value if top else argparse.SUPPRESS


def _add_common(p: argparse.ArgumentParser, *, top: bool) -> None:
    p.add_argument(
        "--output-dir",
        default=_default(None, top),
        help="where videos are saved (GRAVITEX_OUTPUT_DIR)",
    )
    p.add_argument(
        "--state-dir",
        default=_default(None, top),
        help="where the task journal lives (GRAVITEX_STATE_DIR)",
    )
    p.add_argument(
        "--log-level", choices=LOG_LEVELS, default=_default(None, top), help="log level on stderr"
    )


def _add_serve_options(p: argparse.ArgumentParser, *, top: bool) -> None:
    p.add_argument(
        "--transport",
        choices=("stdio", "sse", "streamable-http"),
        default=_default("stdio", top),
        help="stdio (default), sse (/sse) or streamable-http (/mcp)",
    )
    p.add_argument(
        "--host", default=_default("127.0.0.1", top), help="HTTP bind host (default 127.0.0.1)"
    )
    p.add_argument(
        "--port", type=_port, default=_default(8000, top), help="HTTP port (default 8000)"
    )
    p.add_argument(
        "--allowed-host",
        action="append",
        default=_default([], top),
        metavar="HOST[:PORT]",
        help="extra Host header value to accept on HTTP (repeatable)",
    )
    p.add_argument(
        "--stateless",
        action="store_true",
        default=_default(None, top),
        help="stateless streamable HTTP: any request may reach any replica (GRAVITEX_STATELESS=1)",
    )
    p.add_argument(
        "--simulate",
        action="store_true",
        default=_default(None, top),
        help="use the built-in simulator instead of the real API (GRAVITEX_SIMULATE=1)",
    )
    p.add_argument(
        "--base-url", default=_default(None, top), help="upstream base URL (GRAVITEX_BASE_URL)"
    )
    p.add_argument(
        "--input-dir",
        nargs="*",
        action=_InputDirs,
        default=_default(None, top),
        metavar="DIR",
        help="folders local images may be read from (GRAVITEX_INPUT_DIRS; repeatable)",
    )


def _epilog() -> str:
    width = max(len(name) for name, _ in ENVIRONMENT_VARIABLES) + 2
    lines = [f"  {name.ljust(width)}{text}" for name, text in ENVIRONMENT_VARIABLES]
    return "\n".join(
        [
            "environment variables (a flag, where there is one, wins):",
            *lines,
            "",
            "where files go:",
            "  videos       GRAVITEX_OUTPUT_DIR or --output-dir (default ~/gravitex-videos)",
            "  task journal GRAVITEX_STATE_DIR or --state-dir "
            "(default ~/.local/state/gravitex-mcp,",
            "               or $XDG_STATE_HOME/gravitex-mcp); --simulate keeps its tasks there",
            "  logs         stderr only (stdout carries MCP messages)",
        ]
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description=(
            "MCP server for the Gravitex video API (Sora 2, Veo, Wan, Doubao Seedance). "
            "With no command it serves MCP over stdio."
        ),
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    _add_serve_options(parser, top=True)
    _add_common(parser, top=True)
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")

    serve = sub.add_parser("serve", help="serve MCP (the default when no command is given)")
    _add_serve_options(serve, top=False)
    _add_common(serve, top=False)

    demo = sub.add_parser("demo", help="run list/generate/wait/download on the simulator")
    _add_common(demo, top=False)
    demo.add_argument(
        "--model",
        default="veo-3.1-fast-generate-preview",
        choices=catalog.MODEL_IDS,
        metavar="MODEL",
        help="model to use: any id list_models shows (default veo-3.1-fast-generate-preview)",
    )

    sim = sub.add_parser("simulator", help="serve the simulated Gravitex API on loopback")
    sim.add_argument(
        "--host", dest="sim_host", default="127.0.0.1", help="bind host (default 127.0.0.1)"
    )
    sim.add_argument(
        "--port", dest="sim_port", type=_port, default=8787, help="port (default 8787)"
    )

    schemas = sub.add_parser("schemas", help="regenerate tool_schemas/ (or --check them)")
    schemas.add_argument("--check", action="store_true", help="exit 1 if the files are stale")
    schemas.add_argument("--dir", help="the tool_schemas directory (default: the repo's)")
    return parser


def _check_writable(path: Path, what: str, variable: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ConfigurationError(
            f"{what} {path} is not writable ({exc.strerror or exc}); set {variable} "
            "to a folder you can write."
        ) from exc


def _settings(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    return load_settings(
        env,
        simulate=getattr(args, "simulate", None),
        base_url=getattr(args, "base_url", None),
        output_dir=args.output_dir,
        state_dir=args.state_dir,
        log_level=args.log_level,
        input_dirs=getattr(args, "input_dir", None),
        stateless=getattr(args, "stateless", None),
    )


def _issuer_fetch(settings: Settings) -> Any:
    """What fetches the OAuth issuer's metadata and keys (only with an issuer)."""
    if settings.oauth_issuer is None:
        return None
    from ..upstream.http import issuer_fetcher

    return issuer_fetcher()


#: What a tool call loads at its first use, so that a stdio server (started by a client
#: that waits for it) starts without them. A server over HTTP loads them before it
#: serves instead: the first burst of calls does not stall the event loop on imports
#: (20-30 ms each under the 200-job load), and what they make is frozen with the rest
#: of the start-up heap (:func:`settle_heap`).
CALL_PATH = (
    "gravitex_mcp.request.validation",
    "gravitex_mcp.request.prepare",
    "gravitex_mcp.request.translate",
    "gravitex_mcp.service.idempotency",
    "gravitex_mcp.service.looks",
    "gravitex_mcp.service.joins",
    "gravitex_mcp.upstream.downloads",
    "gravitex_mcp.video.seeing",
    "gravitex_mcp.video.join",
    "gravitex_mcp.server.storyboard",
    "httpcore2",  # the network transport (the simulator's is in-process)
    "av",  # FFmpeg's libraries, loaded by the first saved video's look
)

#: A full collection (generation 2) happens after this many collections of
#: generation 1, instead of Python's 10 (see :func:`settle_heap`).
FULL_COLLECTION_AFTER = 100


def load_call_path() -> None:
    """Imports :data:`CALL_PATH` (a server over HTTP, before it serves)."""
    for name in CALL_PATH:
        importlib.import_module(name)


def settle_heap() -> None:
    """Moves every object made so far (modules, the SDK, schemas, the tools) out of the
    garbage collector's reach, just before serving.

    Under load the cyclic collector's full (generation 2) passes ran on the event loop
    thread and walked that whole start-up heap each time: 100-185 ms per pass, the
    slowest quick calls of the load bench (``gc.callbacks`` timings). Frozen, those
    objects are never traversed again (they live as long as the process anyway).

    What the requests make is collected by the two younger generations as before, but
    a full pass still walked every object of the calls in flight (50-80k under that
    load: 25-55 ms each, a few per run); it now comes ten times more rarely
    (:data:`FULL_COLLECTION_AFTER`), and cycles that outlive both younger generations
    wait for it a little longer.
    """
    gc.collect()
    gc.freeze()
    first, second, _ = gc.get_threshold()
    gc.set_threshold(first, second, FULL_COLLECTION_AFTER)


def _serve(args: argparse.Namespace, settings: Settings, env: Mapping[str, str]) -> None:
    if not settings.simulate and not settings.api_key:
        # Start anyway: a server that exits here shows a client only "Failed to
        # connect"; every call that needs the key says what to set and where.
        logger.warning(
            "GRAVITEX_API_KEY is not set: list_models and dry runs work; calls that need "
            "the Gravitex API will say how to set it (or restart with --simulate)."
        )
    _check_writable(settings.output_dir, "Output folder", "GRAVITEX_OUTPUT_DIR")
    _check_writable(settings.state_dir, "State folder", "GRAVITEX_STATE_DIR")
    # Imported after the cheap checks: a refusal should not wait for the MCP SDK.
    from ..server.app import build_server

    over_http = args.transport != "stdio"
    origins: list[str] = []
    verifier = auth = None
    if over_http:  # the HTTP app's module only where it serves
        from ..server.callers import auth_settings, verifier_from_env
        from ..server.http_app import check_bind, media_origins

        verifier = verifier_from_env(env, fetch_json=_issuer_fetch(settings))
        auth = auth_settings(verifier, settings.public_url) if verifier is not None else None
        check_bind(args.host, verifier or settings.http_token)
        origins = media_origins(args.host, args.port, args.allowed_host, settings.public_url)
    elif settings.stateless:
        raise ConfigurationError("--stateless applies to --transport streamable-http only.")
    metrics = None
    if over_http:
        from ..metrics import make_metrics

        metrics = make_metrics()
        if metrics is None:
            logger.info("GET /metrics is off: install gravitex-mcp[team] (prometheus-client)")
    server = build_server(
        settings,
        media_loopback=not over_http,
        media_origins=origins,
        metrics=metrics,
        verifier=verifier,
        auth=auth,
    )
    logger.info(
        "gravitex-mcp %s serving over %s%s",
        __version__,
        args.transport,
        " (simulator)" if settings.simulate else "",
    )
    if args.transport == "stdio":
        from ..server.stdio_guard import serve_stdio

        settle_heap()
        anyio.run(serve_stdio, server)
        return
    from ..server.http_app import build_http_app, serve_http
    from ..store.media_links import MediaLinks, link_key

    app = build_http_app(
        server,
        transport=args.transport,
        host=args.host,
        port=args.port,
        token=settings.http_token,
        extra_allowed_hosts=args.allowed_host,
        media=MediaLinks(
            key=link_key(settings.state_dir, settings.server_secret),
            output_dir=settings.output_dir,
            public_url=settings.public_url,
        )
        if settings.media
        else None,
        ready_checks={
            "journal": _task_store_check(settings),
            **_storage_check(settings),
        },
        metrics=metrics,
        metrics_public=settings.metrics_public,
        stateless=settings.stateless,
        session_idle_seconds=settings.session_idle_seconds,
        verifier=verifier,
    )
    load_call_path()
    settle_heap()
    anyio.run(lambda: serve_http(app, host=args.host, port=args.port, log_level=settings.log_level))


def _storage_check(settings: Settings) -> dict[str, Callable[[], object]]:
    """``/readyz``'s check of where videos go: the object storage answers a listing, or
    the output folder takes a file."""
    if settings.storage is not None:
        from ..store.objects import storage_reachable  # the team extra: only when set

        return {"storage": functools.partial(storage_reachable, settings.storage)}
    from ..store.ready import folder_writable

    return {"output": functools.partial(folder_writable, settings.output_dir)}


def _task_store_check(settings: Settings) -> Callable[[], object]:
    """``/readyz``'s check of the task store: the shared database's, or the journal's."""
    if settings.database_url:
        from ..store.pg_ready import database_readable

        return functools.partial(database_readable, settings.database_url)
    from ..store.ready import journal_readable

    return functools.partial(journal_readable, settings.state_dir)


def run(argv: Sequence[str] | None, env: Mapping[str, str]) -> int:
    """Parse ``argv`` and run the command; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "schemas":
        from . import schemas

        extra = ["--check"] if args.check else []
        return schemas.main([*extra, *(["--dir", args.dir] if args.dir else [])])
    if args.command == "simulator":
        from ..simulator import serve
        from ..upstream.choose import simulator_config

        configure_logging("INFO")
        if not is_loopback(args.sim_host):
            raise ConfigurationError("The simulator serves on loopback only; use --host 127.0.0.1.")
        # GRAVITEX_SIMULATOR_SECONDS times generations here as it does under --simulate.
        seconds = load_settings(env).simulator_seconds
        host = f"[{args.sim_host}]" if ":" in args.sim_host else args.sim_host
        base = f"http://{host}:{args.sim_port}"
        # Without this a user sees only uvicorn's line and has to guess how to use it.
        logger.info(
            "simulated Gravitex API on %s (generations take %g s; any key is accepted). "
            "Point gravitex-mcp at it: GRAVITEX_BASE_URL=%s GRAVITEX_API_KEY=sk-test gravitex-mcp",
            base,
            seconds,
            base,
        )
        serve(host=args.sim_host, port=args.sim_port, config=simulator_config(seconds, None))
        return 0
    settings = _settings(args, env)
    configure_logging(
        settings.log_level,
        secrets=(settings.api_key, settings.http_token, settings.server_secret),
    )
    if args.command == "demo":
        from .demo import run_demo

        _check_writable(settings.output_dir, "Output folder", "GRAVITEX_OUTPUT_DIR")
        # Only an explicit --state-dir keeps the demo's journal (not GRAVITEX_STATE_DIR).
        return run_demo(
            settings,
            model=args.model,
            state_dir=settings.state_dir if args.state_dir is not None else None,
        )
    _serve(args, settings, env)
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        code = run(argv, os.environ)
    except ConfigurationError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        code = 2
    except KeyboardInterrupt:
        code = 130
    except (JournalError, BaseExceptionGroup) as exc:
        # The journal could not be opened (a held lock, an unreadable state folder):
        # the server cannot start. Its message names the folder and the fix; a
        # traceback through the SDK's task groups would bury it.
        failure = first_failure(exc)
        if not isinstance(failure, JournalError):
            raise
        sys.stderr.write(f"{PROG}: error: {failure}\n")
        code = 1
    sys.exit(code)
