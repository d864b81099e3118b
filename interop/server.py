"""Running real Glance servers: ``GlanceServer`` (one region: its own folder, database, image
store and gunicorn process on a loopback port) and ``GlanceCloud`` (several regions sharing
tenants and tokens, as one NHN identity service serves every region).

Each server is ``gunicorn glance.wsgi.api:application`` (one worker, several threads) with
``OS_GLANCE_CONFIG_DIR`` pointing at its folder, which holds ``glance-api.conf`` and the paste
ini rendered from ``interop/templates``.  The listening socket is bound here and handed to
gunicorn (``fd://``), so no other process can take the port between choosing and binding it.
Servers start in their own process group and are stopped by it (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import string
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from interop.environment import HERE, GlanceInstall

TEMPLATES = HERE / "templates"
WSGI_DIR = HERE / "wsgi"
_TENANT_NAMESPACE = uuid.UUID("0d7a3c8e-51f4-4c7a-9a43-9c1b6e2f7d15")
_START_TIMEOUT = 90.0
_STOP_TIMEOUT = 10.0


class ServerFailed(RuntimeError):
    """A Glance server did not come up (the message carries the tail of its logs)."""


@dataclass(frozen=True)
class Tenant:
    """One tenant (project) of the interop cloud and the token that acts as it."""

    name: str
    project_id: str
    token: str = field(repr=False)


def make_tenant(name: str) -> Tenant:
    """A tenant with an NHN-shaped id (32 hex characters, fixed per name) and a fresh token."""
    return Tenant(name, uuid.uuid5(_TENANT_NAMESPACE, name).hex, secrets.token_hex(16))


def write_tokens(path: Path, tenants: Sequence[Tenant]) -> None:
    body = {
        t.token: {
            "project_id": t.project_id,
            "user_id": f"{t.name}-user",
            "roles": ["member", "reader"],
        }
        for t in tenants
    }
    # Readable by the servers' user only, from the first byte on.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fobj:
        json.dump(body, fobj, indent=2)


def _render(template: str, target: Path, values: Mapping[str, object]) -> None:
    text = string.Template((TEMPLATES / template).read_text()).substitute(
        {k: str(v) for k, v in values.items()}
    )
    target.write_text(text)


class GlanceServer:
    """One Glance API server (one region) in ``workdir``; ``start()`` returns when it answers."""

    def __init__(
        self, install: GlanceInstall, workdir: Path, tokens_file: Path, *, host: str = "127.0.0.1"
    ) -> None:
        self.install = install
        self.workdir = workdir
        self.tokens_file = tokens_file
        self.host = host
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._url: str | None = None
        self._pid: int | None = None

    @property
    def url(self) -> str:
        """The image endpoint (no ``/v2``), as NHN's catalog gives it."""
        if self._url is None:
            raise RuntimeError("the server is not started")
        return self._url

    @property
    def pid(self) -> int:
        """The gunicorn master's pid (also its process group), kept after it stops."""
        if self._pid is None:
            raise RuntimeError("the server was not spawned")
        return self._pid

    @property
    def log_file(self) -> Path:
        return self.workdir / "glance-api.log"

    @property
    def access_log(self) -> Path:
        return self.workdir / "gunicorn.log"

    def spawn(self) -> None:
        """Write the configuration and start gunicorn; ``wait_ready()`` waits for it."""
        work = self.workdir
        for sub in ("images", "staging", "tasks", "locks"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        database = work / "glance.sqlite"
        shutil.copyfile(self.install.template_db, database)
        _render(
            "glance-api-paste.ini", work / "glance-api-paste.ini", {"tokens_file": self.tokens_file}
        )
        _render(
            "glance-api.conf",
            work / "glance-api.conf",
            {
                "log_file": self.log_file,
                "database": database,
                "images_dir": work / "images",
                "staging_dir": work / "staging",
                "tasks_dir": work / "tasks",
                "paste_ini": work / "glance-api-paste.ini",
                "lock_dir": work / "locks",
            },
        )
        sock = socket.create_server((self.host, 0), backlog=128)
        sock.set_inheritable(True)
        self._sock = sock
        port = sock.getsockname()[1]
        self._url = f"http://{self.host}:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        env.update(OS_GLANCE_CONFIG_DIR=str(work), PYTHONPATH=str(WSGI_DIR))
        cmd = [
            str(self.install.bin("gunicorn")),
            "--config",
            str(WSGI_DIR / "gunicorn_conf.py"),
            "--bind",
            f"fd://{sock.fileno()}",
            "--name",
            f"glance-interop-{port}",
            "glance.wsgi.api:application",
        ]
        with open(self.access_log, "ab") as log:
            self._proc = subprocess.Popen(
                cmd,
                cwd=work,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(sock.fileno(),),
                start_new_session=True,
            )
        self._pid = self._proc.pid

    def wait_ready(self, timeout: float = _START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            proc = self._proc
            if proc is None:
                raise RuntimeError("the server was not spawned")
            if proc.poll() is not None:
                raise ServerFailed(
                    f"Glance at {self.url} exited with {proc.returncode}\n{self.logs_tail()}"
                )
            try:
                with urllib.request.urlopen(self.url + "/versions", timeout=5) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise ServerFailed(
                    f"Glance at {self.url} did not answer within {timeout:.0f}s\n{self.logs_tail()}"
                )
            time.sleep(0.2)

    def start(self) -> None:
        self.spawn()
        self.wait_ready()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """SIGTERM to the server's process group, SIGKILL if it lingers."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                _signal_group(proc, signal.SIGTERM)
                try:
                    proc.wait(_STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    _signal_group(proc, signal.SIGKILL)
                    proc.wait(_STOP_TIMEOUT)
            # The worker may outlive a killed master for a moment: end the group for good.
            _signal_group(proc, signal.SIGKILL)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def logs_tail(self, lines: int = 40) -> str:
        parts = []
        for path in (self.access_log, self.log_file):
            try:
                text = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            parts.append(f"--- {path.name} ---\n" + "\n".join(text))
        return "\n".join(parts)


def _signal_group(proc: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signum)


class GlanceCloud:
    """Several Glance regions sharing tenants and tokens.  ``with GlanceCloud(...) as cloud:``."""

    def __init__(
        self,
        install: GlanceInstall,
        workdir: Path,
        regions: Sequence[str] = ("KR1", "KR2"),
        tenants: Sequence[str] = ("src", "dst", "partner"),
    ) -> None:
        self.workdir = workdir
        self.tenants = {name: make_tenant(name) for name in tenants}
        self.tokens_file = workdir / "tokens.json"
        self.servers = {
            region: GlanceServer(install, workdir / region, self.tokens_file) for region in regions
        }

    def __enter__(self) -> GlanceCloud:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        write_tokens(self.tokens_file, list(self.tenants.values()))
        try:
            # Both load Glance at once: start-up is mostly imports, and there are two cores.
            for server in self.servers.values():
                server.spawn()
            for server in self.servers.values():
                server.wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()

    @property
    def regions(self) -> dict[str, str]:
        """Region -> image endpoint URL."""
        return {name: server.url for name, server in self.servers.items()}

    def tenant(self, name: str) -> Tenant:
        return self.tenants[name]
