"""Virtual environments of their own, built once and reused: real OpenStack Glance, and the
ecosystem's clients (``interop/clients.py``).

``ensure_venv`` is the shared machinery: an environment pinned by a requirements file, built
under a lock (concurrent test runs wait for each other) and marked complete (a stamp: the digest
of the requirements and the interpreter) only once everything is in place, so an interrupted
build is redone, never half used.  When the requirements or the interpreter change, the stamp no
longer matches and the environment is rebuilt.

Both live under ``DEFAULT_ROOT``, a cache outside the checkout (``~/.cache/image-transfer/interop``
or ``$IMAGE_TRANSFER_INTEROP_ROOT``), shared by every clone of the project on the machine.

``ensure_glance(root)`` returns a ``GlanceInstall``: the environment under ``root/venv``
(pinned by ``interop/requirements.txt``) and an empty, migrated Glance database to copy for
each server.

A build that fails because the package index cannot be reached raises ``IndexUnreachable``
(the tests skip on it, or fail where every test must run); any other failure raises
``BuildFailed`` with pip's own words.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import venv
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
REQUIREMENTS = HERE / "requirements.txt"


def _default_root() -> Path:
    """Where the side installs live: ``$IMAGE_TRANSFER_INTEROP_ROOT``, else a cache outside the
    checkout (``$XDG_CACHE_HOME/image-transfer/interop``, by default under ``~/.cache``), so a
    fresh clone (CI's) reuses what an earlier one built; the stamp rebuilds it when the pins
    or the interpreter change."""
    chosen = os.environ.get("IMAGE_TRANSFER_INTEROP_ROOT")
    if chosen:
        return Path(chosen)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "image-transfer" / "interop"


DEFAULT_ROOT = _default_root()
GLANCE_VERSION = "33.0.0"

_STAMP = ".complete"
_TEMPLATE_DB = "glance-empty.sqlite"
_PIP_TIMEOUT = 900.0
# What pip says when it cannot reach an index, as opposed to a package that will not install.
_UNREACHABLE = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Temporary failure in name "
    r"resolution|Name or service not known|Network is unreachable|Connection refused|"
    r"ConnectTimeoutError|ProxyError|Max retries exceeded|Could not fetch URL|"
    r"No matching distribution found|from versions: none",
)


class IndexUnreachable(RuntimeError):
    """An environment could not be built because the package index is out of reach."""


class BuildFailed(RuntimeError):
    """An environment could not be built for another reason."""


@dataclass(frozen=True)
class GlanceInstall:
    venv: Path
    template_db: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def bin(self, name: str) -> Path:
        return self.venv / "bin" / name


def ensure_venv(
    venv_dir: Path,
    requirements: Path,
    *,
    what: str,
    lock: Path,
    pip_env: Mapping[str, str] | None = None,
    ready: Callable[[], bool] = lambda: True,
    finish: Callable[[], None] | None = None,
) -> Path:
    """The environment at ``venv_dir``, pinned by ``requirements``: reused when complete
    (stamp matches and ``ready()``), else (re)built, then ``finish()`` (under the lock).

    ``what`` names what is installed in messages (``glance==33.0.0``); ``pip_env`` is pip's
    environment (default: ours, so pip's own configuration applies).
    """
    venv_dir.parent.mkdir(parents=True, exist_ok=True)
    stamp = venv_dir / _STAMP
    python = venv_dir / "bin" / "python"
    # The interpreter is part of what was built: a new Python needs a new environment.
    wanted = hashlib.sha256(requirements.read_bytes() + sys.version.encode()).hexdigest()
    with _locked(lock):
        if _read(stamp) == wanted and python.exists() and ready():
            return venv_dir
        shutil.rmtree(venv_dir, ignore_errors=True)
        _build_venv(venv_dir, requirements, pip_env, what)
        if finish is not None:
            finish()
        stamp.write_text(wanted)
    return venv_dir


def ensure_glance(
    root: Path = DEFAULT_ROOT,
    *,
    requirements: Path = REQUIREMENTS,
    pip_env: Mapping[str, str] | None = None,
) -> GlanceInstall:
    """The Glance environment under ``root``: reused when complete, else (re)built.

    ``pip_env`` is pip's environment (default: ours, so pip's own configuration applies).
    """
    root.mkdir(parents=True, exist_ok=True)
    install = GlanceInstall(venv=root / "venv", template_db=root / _TEMPLATE_DB)

    def finish() -> None:
        install.template_db.unlink(missing_ok=True)
        _migrate_template(install, root)

    ensure_venv(
        install.venv,
        requirements,
        what=f"glance=={GLANCE_VERSION}",
        lock=root / "build.lock",
        pip_env=pip_env,
        ready=install.template_db.exists,
        finish=finish,
    )
    return install


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+b") as fobj:
        fcntl.flock(fobj, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fobj, fcntl.LOCK_UN)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _build_venv(
    venv_dir: Path, requirements: Path, pip_env: Mapping[str, str] | None, what: str
) -> None:
    # The interpreter running us (3.11, like the project's); a venv of a venv would do too,
    # but the base interpreter keeps the two environments independent.
    builder = venv.EnvBuilder(with_pip=True, clear=True, symlinks=True)
    try:
        builder.create(venv_dir)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BuildFailed(f"python -m venv {venv_dir} failed: {exc}") from exc
    cmd = [
        str(venv_dir / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "-r",
        str(requirements),
    ]
    try:
        done = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=_PIP_TIMEOUT,
            stdin=subprocess.DEVNULL,
            env=dict(pip_env) if pip_env is not None else None,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise IndexUnreachable(
            f"pip did not finish installing {what} within {_PIP_TIMEOUT:.0f}s"
        ) from exc
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip()
        tail = "\n".join(said.splitlines()[-15:])
        if _UNREACHABLE.search(said):
            raise IndexUnreachable(
                f"cannot install {what}: the package index is unreachable\n{tail}"
            )
        raise BuildFailed(f"pip install of {what} failed:\n{tail}")


def _migrate_template(install: GlanceInstall, root: Path) -> None:
    """An empty Glance database at the current schema, copied for every server."""
    work = root / "migrate"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    database = work / _TEMPLATE_DB
    conf = work / "glance-api.conf"
    conf.write_text(
        f"[DEFAULT]\nuse_stderr = true\n\n[database]\nconnection = sqlite:///{database}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    done = subprocess.run(
        [str(install.bin("glance-manage")), "--config-file", str(conf), "db_sync"],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        env=env,
        check=False,
    )
    if done.returncode != 0 or not database.exists():
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise BuildFailed(f"glance-manage db_sync failed ({done.returncode}):\n{tail}")
    shutil.move(database, install.template_db)
    shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    """``python -m interop.environment``: build (or check) the environment, print its path."""
    try:
        install = ensure_glance()
    except (IndexUnreachable, BuildFailed) as exc:
        print(f"interop: {exc}", file=sys.stderr)
        return 1
    print(install.venv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
