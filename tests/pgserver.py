"""A throwaway PostgreSQL cluster from the machine's own binaries, for tests and benchmarks.

``ThrowawayCluster`` finds ``initdb`` and ``pg_ctl``, runs them as the ``postgres`` system user
(through ``runuser``) when run as root, since PostgreSQL refuses to run as root, makes a new
cluster in a temporary directory (trust authentication, no locale, UTF8) on first ``start``,
starts it on one address and port (a free loopback port unless given; a port taken before the
server binds it is retried with another), and crashes it (``pg_ctl -m immediate``), restarts
it on the same port and data directory, and deletes it on request.  ``unavailable_reason``
tells why none can be started here.

What to do when it cannot run is the caller's: tests skip or fail, the benchmark reports a
``BenchError``; every failure here is a ``ClusterError`` with PostgreSQL's own message.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = ["ClusterError", "ThrowawayCluster", "unavailable_reason"]

_INITDB_FLAGS = ("--no-locale", "-E", "UTF8", "--no-sync")
_TIMEOUT = 120.0  # seconds for any one initdb or pg_ctl command (pg_ctl itself waits 60)
_START_ATTEMPTS = 3  # with a free port each: another process may take it first
_LOG_TAIL = 2000
_OWNER = "postgres"  # the system user the server runs as when this process is root


class ClusterError(RuntimeError):
    """A throwaway cluster cannot be made, started or stopped (the reason is the message)."""


def _binaries() -> tuple[str, str] | None:
    """``initdb`` and ``pg_ctl`` of one installation, or None."""
    folders = [os.path.dirname(p) for p in (shutil.which("pg_ctl"), shutil.which("initdb")) if p]
    folders += ["/usr/local/bin", *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    folders += ["/usr/local/pgsql/bin"]
    for folder in folders:
        initdb, pg_ctl = Path(folder, "initdb"), Path(folder, "pg_ctl")
        if initdb.is_file() and pg_ctl.is_file():
            return str(initdb), str(pg_ctl)
    return None


def _runuser() -> str | None:
    return shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")


def unavailable_reason() -> str | None:
    """Why a throwaway cluster cannot be started here (None: it can)."""
    if _binaries() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not found"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(_OWNER)
        except KeyError:
            return f"running as root and there is no '{_OWNER}' system user to run PostgreSQL as"
        if _runuser() is None:
            return f"running as root and runuser (to run PostgreSQL as {_OWNER}) is missing"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class ThrowawayCluster:
    """One PostgreSQL cluster of its own: a temporary directory, trust authentication for the
    ``postgres`` role, one address and port.

    ``port``: None for a free loopback port (chosen at the first ``start``, kept afterwards).
    ``settings``: server options besides the address, port and socket directory (``fsync``:
    ``off``, ...).  ``prefix``: prepended to every server command (``ip netns exec NS`` to run it
    inside a network namespace).  ``hba``: rewrites the ``pg_hba.conf`` that ``initdb`` wrote
    (its text in, the new text out), to add rules.

    Construct, then ``start``; ``remove`` (always, even after a failure) stops it and deletes
    the directory.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        settings: Mapping[str, str] | None = None,
        prefix: Sequence[str] = (),
        hba: Callable[[str], str] | None = None,
        name: str = "image-transfer-pg-",
    ) -> None:
        reason = unavailable_reason()
        if reason is not None:
            raise ClusterError(reason)
        binaries = _binaries()
        assert binaries is not None  # unavailable_reason said so
        self.initdb, self.pg_ctl = binaries
        self.host = host
        self.port = port or 0
        self.settings = dict(settings or {})
        self.prefix = list(prefix)
        self._hba = hba
        self.run_as: list[str] = []
        self._owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            runuser = _runuser()
            assert runuser is not None  # unavailable_reason said so
            self._owner = pwd.getpwnam(_OWNER)
            self.run_as = [runuser, "-u", _OWNER, "--"]
        self.root = Path(tempfile.mkdtemp(prefix=name))
        self.data = self.root / "data"
        self.log = self.root / "server.log"

    def url(self, database: str = "postgres") -> str:
        """A ``postgresql://`` URL of ``database`` as the ``postgres`` role (trusted)."""
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    def log_tail(self, chars: int = _LOG_TAIL) -> str:
        """The end of the server's log ("" when there is none)."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return text if len(text) <= chars else "..." + text[-chars:]

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [*self.prefix, *self.run_as, *args]
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise ClusterError(f"{Path(args[0]).name} did not finish in {_TIMEOUT:g}s") from None

    def _initdb(self) -> None:
        if self._owner is not None:
            os.chown(self.root, self._owner.pw_uid, self._owner.pw_gid)
        setup = self._run(
            self.initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", *_INITDB_FLAGS
        )
        if setup.returncode != 0:
            raise ClusterError(f"initdb failed: {setup.stderr.strip()[-_LOG_TAIL:]}")
        if self._hba is not None:
            hba = self.data / "pg_hba.conf"
            hba.write_text(self._hba(hba.read_text()))

    def _configure(self) -> None:
        """The settings, in ``postgresql.auto.conf``: read at every start, so a restart has
        them too."""
        settings = {
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": str(self.root),
            **self.settings,
        }
        lines = ["# written by tests.pgserver at every start\n"]
        lines += [f"{key} = {_quoted(value)}\n" for key, value in settings.items()]
        (self.data / "postgresql.auto.conf").write_text("".join(lines))

    def start(self) -> None:
        """initdb on first use, then start (waiting until it accepts connections)."""
        if not self.data.exists():
            self._initdb()
        keep = bool(self.port)  # fixed, or chosen by an earlier start: a restart keeps it
        last = ""
        for _ in range(1 if keep else _START_ATTEMPTS):
            if not keep:
                self.port = _free_port()
            self._configure()
            started = self._run(
                self.pg_ctl, "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.log)
            )
            if started.returncode == 0:
                return
            last = started.stderr.strip()
        if not keep:
            self.port = 0  # the next start looks for a free port again
        raise ClusterError(f"pg_ctl start failed: {last}\n{self.log_tail()}")

    @property
    def running(self) -> bool:
        """Whether a server may be running on the data directory (its pid file is there)."""
        return (self.data / "postmaster.pid").exists()

    def stop(self) -> None:
        """Stop at once (``pg_ctl -m immediate``: no checkpoint, every backend killed)."""
        if not self.data.exists():
            return
        done = self._run(
            self.pg_ctl, "stop", "-w", "-t", "60", "-D", str(self.data), "-m", "immediate"
        )
        if done.returncode != 0 and self.running:
            raise ClusterError(f"pg_ctl stop -m immediate failed: {done.stderr.strip()}")

    def restart_immediate(self, down: float = 0.0) -> None:
        """Crash the server (``stop``), stay down ``down`` seconds, and start it again on the
        same port and data directory."""
        self.stop()
        time.sleep(down)
        self.start()

    def remove(self) -> None:
        """Stop it (if running) and delete its directory; safe after any failure.  Raises
        ``ClusterError`` (once the directory is gone) if it could not be stopped."""
        try:
            if self.running:
                self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
